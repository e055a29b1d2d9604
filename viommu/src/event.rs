//! The typed event stream: every invalidation (decoded), translation (with the
//! cache levels that hit), fault, page request and response, stale walk and
//! guest hint, delivered in order to an optional [`EventSink`]. The trace
//! writer serializes these; the model never formats them itself.

use serde::Serialize;

use crate::checker::StaleWalk;
use crate::descriptor::Descriptor;
use crate::prq::{PageRequest, PageResponse};
use crate::walk::Access;

/// Which caches a translation hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HitLevels {
    /// Context cache.
    pub context: bool,
    /// PASID cache.
    pub pasid: bool,
    /// IOTLB.
    pub iotlb: bool,
    /// Deepest paging-structure cache level that hit (5..2), if any.
    pub psc_level: Option<u8>,
}

impl HitLevels {
    /// True when a leaf or paging-structure entry came from a cache (what the
    /// checker re-walks).
    pub fn used_walk_cache(&self) -> bool {
        self.iotlb || self.psc_level.is_some()
    }
}

/// Outcome of a translation, for the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TranslationOutcome {
    /// Translated.
    Ok {
        /// Output address.
        output: u64,
        /// Page size.
        size: u64,
        /// Pass-through (no translation).
        pass_through: bool,
    },
    /// Faulted with this VT-d reason code.
    Fault {
        /// Reason code.
        reason: u8,
    },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An invalidation descriptor (or register-based invalidation) processed.
    Invalidation {
        /// Queue slot (descriptor index); `None` for register-based ones.
        slot: Option<u32>,
        /// The decoded descriptor.
        descriptor: Descriptor,
        /// Cache entries it removed (all caches).
        removed: u64,
    },
    /// A translation or speculative walk.
    Translation {
        /// Requester id.
        rid: u16,
        /// PASID, if any.
        pasid: Option<u32>,
        /// Input address.
        addr: u64,
        /// Access kind.
        access: Access,
        /// Supervisor request.
        privileged: bool,
        /// Speculative walk (no access).
        speculative: bool,
        /// Outcome.
        result: TranslationOutcome,
        /// Cache levels that hit.
        hits: HitLevels,
    },
    /// A fault (recorded or not).
    Fault {
        /// Requester id.
        rid: u16,
        /// PASID, if any.
        pasid: Option<u32>,
        /// Input address.
        addr: u64,
        /// VT-d reason code.
        reason: u8,
        /// Whether it went to a fault recording register.
        recorded: bool,
    },
    /// A page request queued (or refused).
    PageRequest {
        /// The request.
        request: PageRequest,
        /// Whether it reached the queue.
        queued: bool,
    },
    /// A page group response delivered to a device.
    PageResponse(PageResponse),
    /// A stale walk found by the checker.
    StaleWalk(StaleWalk),
    /// The guest said a page-table page was freed.
    Hint {
        /// Page address.
        gpa: u64,
        /// Whether a cache still pointed at it.
        cached: bool,
    },
    /// The invalidation queue stopped on an error.
    QueueError {
        /// FSTS bit name: "iqe", "ite" or "ice".
        kind: &'static str,
        /// Head index of the offending descriptor.
        head: u32,
        /// IQER value written.
        iqer: u64,
    },
}

/// Receives events in order.
pub trait EventSink: Send {
    /// One event.
    fn event(&mut self, event: &Event);
}

/// A sink that keeps every event (tests, small tools). Bounded by
/// [`VecSink::MAX_EVENTS`]; later events are counted in `dropped`.
#[derive(Debug, Default, Clone)]
pub struct VecSink {
    /// Events kept.
    pub events: Vec<Event>,
    /// Events not kept because the bound was reached.
    pub dropped: u64,
}

impl VecSink {
    /// Most events kept, so a long run cannot exhaust memory.
    pub const MAX_EVENTS: usize = 1 << 20;
}

impl EventSink for VecSink {
    fn event(&mut self, event: &Event) {
        if self.events.len() < Self::MAX_EVENTS {
            self.events.push(event.clone());
        } else {
            self.dropped += 1;
        }
    }
}

/// A sink that forwards to a shared [`VecSink`], so a test can read events
/// after handing the sink to the unit.
#[derive(Debug, Default, Clone)]
pub struct SharedSink(pub std::sync::Arc<std::sync::Mutex<VecSink>>);

impl EventSink for SharedSink {
    fn event(&mut self, event: &Event) {
        if let Ok(mut s) = self.0.lock() {
            s.event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_tags() {
        let e = Event::Hint {
            gpa: 0x1000,
            cached: true,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "hint");
        assert_eq!(v["gpa"], 0x1000);
        let mut s = VecSink::default();
        s.event(&e);
        assert_eq!(s.events.len(), 1);
        let t = Event::Translation {
            rid: 0x20,
            pasid: Some(1),
            addr: 0x1000,
            access: Access::Write,
            privileged: false,
            speculative: false,
            result: TranslationOutcome::Fault { reason: 0x81 },
            hits: HitLevels {
                psc_level: Some(2),
                ..HitLevels::default()
            },
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["result"]["outcome"], "fault");
        assert_eq!(v["access"], "write");
        assert_eq!(v["hits"]["psc_level"], 2);
    }
}
