//! Everything the model counts, serialized as the report JSON: translations,
//! faults, stale walks per class, pages freed while cached, every invalidation
//! descriptor by type, granularity and IH, KVA invalidations, cache activity
//! per cache and level, page requests, and the checker mode.

use serde::Serialize;

use crate::config::CheckMode;

/// Stale walks per class (see the checker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StaleWalks {
    /// The cached entry points at a page no longer linked there, unchanged.
    pub unlinked: u64,
    /// The page the cached entry points at changed since it was cached.
    pub reused: u64,
    /// A cached leaf translation differs from memory.
    pub leaf: u64,
}

impl StaleWalks {
    /// Sum over classes.
    pub fn total(&self) -> u64 {
        self.unlinked + self.reused + self.leaf
    }
}

/// Invalidation descriptors processed, per type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Invalidations {
    /// Context-cache invalidations (type 1, and CCMD register writes).
    pub context: u64,
    /// IOTLB invalidations (type 2, and IOTLB register writes).
    pub iotlb: u64,
    /// Device-TLB invalidations (type 3).
    pub devtlb: u64,
    /// Interrupt-entry-cache invalidations (type 4).
    pub iec: u64,
    /// Invalidation-wait descriptors (type 5).
    pub wait: u64,
    /// PASID-based IOTLB invalidations (type 6).
    pub piotlb: u64,
    /// PASID-cache invalidations (type 7).
    pub pasid_cache: u64,
    /// PASID-based device-TLB invalidations (type 8).
    pub pdevtlb: u64,
    /// Page group responses (type 9).
    pub page_response: u64,
}

/// Invalidations per granularity and IH.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Granularity {
    /// Context cache, global.
    pub context_global: u64,
    /// Context cache, domain-selective.
    pub context_domain: u64,
    /// Context cache, device-selective.
    pub context_device: u64,
    /// IOTLB, global.
    pub iotlb_global: u64,
    /// IOTLB, domain-selective.
    pub iotlb_domain: u64,
    /// IOTLB, page-selective.
    pub iotlb_page: u64,
    /// PASID-based IOTLB, PASID-selective.
    pub piotlb_pasid: u64,
    /// PASID-based IOTLB, page-selective within PASID.
    pub piotlb_page: u64,
    /// PASID cache, domain-selective.
    pub pasid_cache_domain: u64,
    /// PASID cache, PASID-selective.
    pub pasid_cache_pasid: u64,
    /// PASID cache, global.
    pub pasid_cache_global: u64,
    /// Device-TLB invalidations covering everything.
    pub devtlb_all: u64,
    /// Page-selective IOTLB / PASID-based IOTLB invalidations with IH=0.
    pub ih0: u64,
    /// ... with IH=1 (paging-structure caches kept).
    pub ih1: u64,
    /// Wait descriptors with status write.
    pub wait_sw: u64,
    /// Wait descriptors with interrupt.
    pub wait_if: u64,
    /// Wait descriptors with fence.
    pub wait_fn: u64,
    /// Wait descriptors with page-request drain.
    pub wait_pd: u64,
}

// The caches' statistics live with the caches (cache.rs counts them);
// the unit's counters carry them as they are.
pub use crate::cache::{CacheCounters, CacheStats};

/// Page-request activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PageRequestCounters {
    /// Requests written to the page-request queue.
    pub queued: u64,
    /// Requests dropped because the queue was full (PRO).
    pub overflows: u64,
    /// Requests refused (no queue, too many outstanding groups).
    pub refused: u64,
    /// Responses matched to an outstanding group and delivered.
    pub responses: u64,
    /// Responses that matched no outstanding group.
    pub unmatched_responses: u64,
}

/// All counters; serializes to the report JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Checker mode the run used.
    pub checker: Option<CheckMode>,
    /// Device translations (not speculative walks).
    pub translations: u64,
    /// Translations that faulted.
    pub faults: u64,
    /// Faults written to fault recording registers.
    pub faults_recorded: u64,
    /// Speculative walks.
    pub speculative_walks: u64,
    /// Translations (or walks) the checker re-walked.
    pub checked: u64,
    /// Stale walks per class.
    pub stale_walks: StaleWalks,
    /// Page-table pages freed (guest hint) while a cache pointed at them.
    pub freed_while_cached: u64,
    /// Page-table-freed hints received.
    pub free_hints: u64,
    /// Invalidation descriptors by type.
    pub invalidations: Invalidations,
    /// Page-selective PASID-based IOTLB invalidations touching the kernel half.
    pub kva_invalidations: u64,
    /// Invalidations by granularity and IH.
    pub granularity: Granularity,
    /// Invalidation-queue errors (IQE/ITE/ICE).
    pub queue_errors: u64,
    /// Cache activity.
    pub cache: CacheCounters,
    /// Page requests.
    pub page_requests: PageRequestCounters,
    /// MSIs raised.
    pub msis: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_report_keys() {
        let c = Counters {
            checker: Some(CheckMode::All),
            ..Counters::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        for k in [
            "translations",
            "faults",
            "freed_while_cached",
            "kva_invalidations",
            "page_requests",
            "cache",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        for k in ["unlinked", "reused", "leaf"] {
            assert_eq!(v["stale_walks"][k], 0);
        }
        for k in [
            "context",
            "iotlb",
            "devtlb",
            "iec",
            "wait",
            "piotlb",
            "pasid_cache",
            "pdevtlb",
            "page_response",
        ] {
            assert_eq!(v["invalidations"][k], 0, "{k}");
        }
        assert_eq!(v["checker"], "all");
        assert_eq!(v["cache"]["pde"]["hits"], 0);
        assert_eq!(v["granularity"]["ih0"], 0);
    }
}
