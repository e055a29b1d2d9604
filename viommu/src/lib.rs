//! A virtual Intel VT-d IOMMU in scalable mode, built to find stale walks.
//!
//! It models the register block, scalable-mode root/context/PASID tables,
//! first-stage translation (4- and 5-level), queued invalidation, fault
//! recording, page requests, and — the point of it — paging-structure caches
//! that hold entries the way hardware may (adversarially, if asked), a count
//! of every invalidation the guest sends, and a checker that re-walks memory
//! after every cached translation to report walks through stale entries.
//! Pure logic over [`vm_memory::GuestMemory`]: no KVM, no threads, no I/O.
//!
//! The entry point is [`Viommu`]; see `docs/ARCHITECTURE.md` for how the
//! other crates use it.

#![deny(missing_docs)]
// Guest input must never panic the VMM: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "iommu")]
pub mod ats;
pub mod breakdown;
pub mod cache;
pub mod checker;
pub mod config;
pub mod counters;
pub mod descriptor;
pub mod event;
pub mod fault;
#[cfg(any(test, feature = "test-utils"))]
pub mod fixture;
pub mod memory;
pub mod prq;
pub mod qi;
pub mod regs;
pub mod tables;
mod translate;
mod unit;
pub mod walk;

use std::fmt;

use serde::Serialize;

use crate::cache::Caches;
use crate::fault::FaultUnit;
use crate::prq::PageRequestUnit;
use crate::regs::RegisterFile;
use crate::tables::TableError;
use crate::translate::Memo;
use crate::walk::{Geometry, WalkError};

#[cfg(feature = "iommu")]
pub use crate::ats::RequesterIommu;
pub use crate::breakdown::{Breakdown, Breakdowns, MAX_BREAKDOWN_KEYS};
pub use crate::checker::StaleWalk;
pub use crate::config::{CachePolicy, CheckMode, Config, ConfigError, Levels};
pub use crate::counters::Counters;
pub use crate::descriptor::{Descriptor, DevTlbInvalidation};
pub use crate::event::{Event, EventSink, HitLevels};
pub use crate::fault::Msi;
pub use crate::prq::{PageRequest, PageResponse};
pub use crate::regs::REGISTER_BLOCK_SIZE;
pub use crate::walk::Access;

/// Most interrupts kept until [`Viommu::take_msis`]; beyond it new ones are
/// dropped (and counted), as a guest that never lets the VMM drain them must
/// not grow memory.
pub const MAX_PENDING_MSIS: usize = 4096;
/// Most page responses kept until [`Viommu::take_page_responses`].
pub const MAX_PENDING_RESPONSES: usize = 4096;
/// Most device-TLB invalidations kept until
/// [`Viommu::take_devtlb_invalidations`]; when reached, pending ones collapse
/// into one "everything" invalidation per device (at most 65536 devices).
pub const MAX_PENDING_DEVTLB: usize = 1 << 17;

/// A device access to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct DmaRequest {
    /// Requester id (bus << 8 | devfn).
    pub rid: u16,
    /// PASID, if the request carries one.
    pub pasid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// Access kind.
    pub access: Access,
    /// Privileged (supervisor) request; only meaningful with a PASID.
    pub privileged: bool,
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Translation {
    /// Output (guest-physical) address.
    pub addr: u64,
    /// Size of the page (or pass-through window) holding it.
    pub page_size: u64,
    /// Writes allowed.
    pub writable: bool,
    /// Instruction fetches allowed.
    pub executable: bool,
    /// User-accessible page.
    pub user: bool,
    /// Not translated: translation disabled or a pass-through PASID entry.
    pub pass_through: bool,
    /// Caches that supplied entries.
    pub hits: HitLevels,
}

impl Translation {
    /// Bytes from `addr` to the end of its page.
    pub fn remaining_in_page(&self) -> u64 {
        self.page_size - (self.addr & (self.page_size - 1))
    }
}

/// Why a translation faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum FaultReason {
    /// Root, context or PASID table problem.
    #[error(transparent)]
    Table(#[from] TableError),
    /// First-stage walk or rights problem.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The PASID entry asks for 5-level paging, which the unit does not report.
    #[error("PASID entry uses {levels}-level paging, unsupported")]
    Levels {
        /// Levels asked for.
        levels: u8,
    },
    /// A pass-through PASID entry although ECAP.PT is not reported.
    #[error("pass-through PASID entry but ECAP.PT=0")]
    PassThroughUnsupported,
    /// The translation's output lies in the interrupt address range
    /// (0xFEE00000-0xFEEFFFFF), which DMA may never reach (VT-d SGN.8).
    #[error("output address {output:#x} in the interrupt address range")]
    InterruptRange {
        /// The output address.
        output: u64,
    },
}

/// First address of the interrupt address range.
pub const INTERRUPT_RANGE_START: u64 = 0xfee0_0000;
/// Last address of the interrupt address range.
pub const INTERRUPT_RANGE_END: u64 = 0xfeef_ffff;

impl FaultReason {
    /// VT-d fault reason code.
    pub fn code(&self) -> u8 {
        match self {
            FaultReason::Table(t) => t.reason_code(),
            FaultReason::Walk(w) => w.reason_code(),
            FaultReason::Levels { .. } | FaultReason::PassThroughUnsupported => 0x5b,
            FaultReason::InterruptRange { .. } => 0x87,
        }
    }
}

/// A faulting translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("DMA fault: rid {rid:#06x} pasid {pasid:?} addr {addr:#x} {access:?}: {reason}")]
pub struct TranslationFault {
    /// Requester id.
    pub rid: u16,
    /// PASID, if any.
    pub pasid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// Access kind.
    pub access: Access,
    /// Why.
    pub reason: FaultReason,
    /// Whether a fault recording register got it.
    pub recorded: bool,
}

/// The virtual IOMMU.
pub struct Viommu {
    config: Config,
    geo4: Geometry,
    geo5: Geometry,
    pub(crate) regs: RegisterFile,
    pub(crate) caches: Caches,
    faults: FaultUnit,
    pub(crate) prq: PageRequestUnit,
    pub(crate) counters: Counters,
    pub(crate) sink: Option<Box<dyn EventSink>>,
    msis: Vec<Msi>,
    pub(crate) page_responses: Vec<PageResponse>,
    devtlb: Vec<DevTlbInvalidation>,
    /// RTADDR latched by the last SRTP.
    root: u64,
    seq: u64,
    sample: u64,
    pub(crate) memo: Option<Memo>,
    /// Per-device and per-PASID counts for the report (no sink needed).
    pub(crate) breakdowns: Breakdowns,
    /// The current run of translations by one requester and PASID, not yet
    /// in `breakdowns`.
    pub(crate) pending: breakdown::PendingTranslations,
    /// The memo and last-hit fast paths are taken (always, outside tests:
    /// the differential test turns them off to compare with the full path).
    fast_paths: bool,
}

impl fmt::Debug for Viommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Viommu")
            .field("config", &self.config)
            .field("root", &format_args!("{:#x}", self.root))
            .field("translation_enabled", &self.translation_enabled())
            .field("cache_sizes", &self.caches.sizes())
            .field("event_sink", &self.sink.is_some())
            .field("fast_paths", &self.fast_paths)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
