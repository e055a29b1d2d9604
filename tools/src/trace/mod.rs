//! Invalidation traces: what the vIOMMU saw, in order.
//!
//! A trace is a JSON Lines file (`docs/TRACE-FORMAT.md`, format version
//! [`FORMAT_VERSION`]): one header line, then one record per line (every
//! event of the `viommu` model's event stream, guest serial lines as
//! markers, `dropped` records when the writer's queue overflowed) and a final
//! `end` record with the totals. [`writer`] produces it from the vCPU threads
//! without blocking them; [`reader`] reads it back and rejects newer major
//! versions, truncated and corrupted files with the line number; the
//! `stalewalk trace` subcommands ([`TraceCommand`]) summarise, compare, plot,
//! export and filter traces, and [`qemu`] imports QEMU's VT-d trace log
//! as one.

pub mod cli;
pub mod export;
pub mod grep;
pub mod plot;
pub mod qemu;
pub mod reader;
pub mod summary;
pub mod writer;

use std::fmt;
use std::str::FromStr;

pub use cli::{TraceCommand, trace_command};
pub use reader::{Body, ReadError, ReadOptions, Record, TraceReader};
pub use summary::{Summary, summary_counters};
pub use writer::{TraceOptions, TraceSink, TraceWriter, finish_all};

/// The `format` value of every trace header.
pub const FORMAT_NAME: &str = "stalewalk-trace";
/// Major version this crate writes and the newest major it reads.
pub const VERSION_MAJOR: u32 = 1;
/// Minor version this crate writes (readers accept any minor of their major:
/// minor versions only add fields and record kinds).
pub const VERSION_MINOR: u32 = 0;
/// `"MAJOR.MINOR"` as written in the header.
pub const FORMAT_VERSION: &str = "1.0";

/// The kind of one record. The first seven can be filtered
/// (`--trace-events`); `dropped` and `end` are always written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Invalidation descriptors (queued or register-based) and queue errors.
    Inv,
    /// Translations and speculative walks (`viommu` `Translation` events).
    Walk,
    /// Translation faults.
    Fault,
    /// Page requests and page group responses delivered to devices.
    Prq,
    /// Stale walks found by the checker.
    Stale,
    /// Guest "page-table page freed" hints.
    Hint,
    /// Guest serial lines (markers).
    Serial,
    /// Events the writer could not queue.
    Dropped,
    /// The final record.
    End,
}

impl Kind {
    /// The kinds a writer can be told to record, in `--trace-events` order.
    pub const FILTERABLE: [Kind; 7] = [
        Kind::Inv,
        Kind::Walk,
        Kind::Fault,
        Kind::Prq,
        Kind::Stale,
        Kind::Hint,
        Kind::Serial,
    ];

    /// The name used in traces and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Inv => "inv",
            Kind::Walk => "walk",
            Kind::Fault => "fault",
            Kind::Prq => "prq",
            Kind::Stale => "stale",
            Kind::Hint => "hint",
            Kind::Serial => "serial",
            Kind::Dropped => "dropped",
            Kind::End => "end",
        }
    }

    /// Position in [`Kind::FILTERABLE`], `None` for `dropped` and `end`.
    pub fn index(self) -> Option<usize> {
        Kind::FILTERABLE.iter().position(|k| *k == self)
    }

    /// The record kind of a `viommu` event.
    pub fn of_event(event: &viommu::Event) -> Kind {
        use viommu::Event;
        match event {
            Event::Invalidation { .. } | Event::QueueError { .. } => Kind::Inv,
            Event::Translation { .. } => Kind::Walk,
            Event::Fault { .. } => Kind::Fault,
            Event::PageRequest { .. } | Event::PageResponse(_) => Kind::Prq,
            Event::StaleWalk(_) => Kind::Stale,
            Event::Hint { .. } => Kind::Hint,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown record kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// Not one of the kind names.
    #[error("unknown event kind `{name}` (known: inv, walk, fault, prq, stale, hint, serial)")]
    Unknown {
        /// What was given.
        name: String,
    },
}

impl FromStr for Kind {
    type Err = KindError;
    fn from_str(s: &str) -> Result<Kind, KindError> {
        Ok(match s {
            "inv" => Kind::Inv,
            "walk" => Kind::Walk,
            "fault" => Kind::Fault,
            "prq" => Kind::Prq,
            "stale" => Kind::Stale,
            "hint" => Kind::Hint,
            "serial" => Kind::Serial,
            "dropped" => Kind::Dropped,
            "end" => Kind::End,
            _ => {
                return Err(KindError::Unknown {
                    name: s.to_string(),
                });
            }
        })
    }
}

/// A set of filterable kinds (`--trace-events inv,walk,...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSet(u8);

impl KindSet {
    /// Every filterable kind.
    pub const ALL: KindSet = KindSet(0x7f);
    /// No kind.
    pub const NONE: KindSet = KindSet(0);

    /// True if `kind` is in the set (`dropped` and `end` always are).
    pub fn contains(self, kind: Kind) -> bool {
        match kind.index() {
            Some(i) => self.0 & (1 << i) != 0,
            None => true,
        }
    }

    /// The set with `kind` added.
    pub fn with(self, kind: Kind) -> KindSet {
        match kind.index() {
            Some(i) => KindSet(self.0 | (1 << i)),
            None => self,
        }
    }

    /// The kinds in the set, in [`Kind::FILTERABLE`] order.
    pub fn kinds(self) -> Vec<Kind> {
        Kind::FILTERABLE
            .into_iter()
            .filter(|k| self.contains(*k))
            .collect()
    }
}

impl Default for KindSet {
    fn default() -> Self {
        KindSet::ALL
    }
}

impl FromStr for KindSet {
    type Err = KindError;
    /// A comma-separated list of kind names; `all` for every kind.
    fn from_str(s: &str) -> Result<KindSet, KindError> {
        let mut set = KindSet::NONE;
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                return Ok(KindSet::ALL);
            }
            let kind: Kind = name.parse()?;
            if kind.index().is_none() {
                return Err(KindError::Unknown {
                    name: name.to_string(),
                });
            }
            set = set.with(kind);
        }
        Ok(set)
    }
}

/// `value` as `0x...`, the way traces and reports print addresses.
pub(crate) fn hex(value: u64) -> String {
    format!("{value:#x}")
}

/// A PCI requester id as `bus:dev.fn`.
pub(crate) fn bdf(rid: u64) -> String {
    format!(
        "{:02x}:{:02x}.{}",
        (rid >> 8) & 0xff,
        (rid >> 3) & 0x1f,
        rid & 7
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::FILTERABLE
            .into_iter()
            .chain([Kind::Dropped, Kind::End])
        {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
        }
    }

    #[test]
    fn kind_set_parses_lists() {
        let s: KindSet = "inv, stale".parse().unwrap();
        assert!(s.contains(Kind::Inv) && s.contains(Kind::Stale));
        assert!(!s.contains(Kind::Walk));
        assert!(s.contains(Kind::End), "end is always recorded");
        assert_eq!(s.kinds(), vec![Kind::Inv, Kind::Stale]);
        assert_eq!("all".parse::<KindSet>().unwrap(), KindSet::ALL);
    }

    #[test]
    fn reject_unknown_kind_names() {
        assert!("inv,bogus".parse::<KindSet>().is_err());
        assert!("end".parse::<KindSet>().is_err(), "end cannot be filtered");
    }

    #[test]
    fn bdf_formats_requester_ids() {
        assert_eq!(bdf(0x0020), "00:04.0");
        assert_eq!(hex(0x1000), "0x1000");
    }
}
