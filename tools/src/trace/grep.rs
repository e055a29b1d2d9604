//! `trace grep`: the records of a trace that match a PASID, an address range
//! and/or a set of kinds, printed as the original JSON lines.

use std::io::Write;
use std::path::Path;

use super::reader::{self, Body, ReadError, ReadOptions, Record};
use super::summary::{address_span, pasid_of};
use super::{Kind, KindError, KindSet};

/// Errors of `trace grep`.
#[derive(Debug, thiserror::Error)]
pub enum GrepError {
    /// `--addr` is not an address or `FIRST-LAST` range.
    #[error("bad address range {text:?}: {reason} (expected 0xADDR or 0xFIRST-0xLAST)")]
    Range {
        /// What was given.
        text: String,
        /// What was wrong.
        reason: String,
    },
    /// `--kind` names an unknown kind.
    #[error(transparent)]
    Kind(#[from] KindError),
    /// Reading the trace failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// What to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    /// Only records about this PASID.
    pub pasid: Option<u64>,
    /// Only records whose address range overlaps this one (inclusive).
    pub range: Option<(u64, u64)>,
    /// Only these kinds (`None`: all).
    pub kinds: Option<KindSet>,
}

fn number(text: &str) -> Result<u64, String> {
    let t = text.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    };
    r.map_err(|e| format!("{text:?}: {e}"))
}

/// Parses `0xADDR` or `0xFIRST-0xLAST` (inclusive; FIRST <= LAST).
pub fn parse_range(text: &str) -> Result<(u64, u64), GrepError> {
    let err = |reason: String| GrepError::Range {
        text: text.to_string(),
        reason,
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (number(a).map_err(err)?, number(b).map_err(err)?),
        None => {
            let a = number(text).map_err(err)?;
            (a, a)
        }
    };
    if lo > hi {
        return Err(err(format!(
            "first address {lo:#x} is above last address {hi:#x}"
        )));
    }
    Ok((lo, hi))
}

impl Filter {
    /// Whether `rec` passes. Records without a PASID or address fail a
    /// PASID or address filter; `end`, `dropped` and unknown records fail a
    /// kind filter.
    pub fn matches(&self, rec: &Record) -> bool {
        let kind = rec.kind();
        if let Some(kinds) = self.kinds {
            match kind {
                Some(Kind::Dropped | Kind::End) | None => return false,
                Some(k) if !kinds.contains(k) => return false,
                Some(_) => {}
            }
        }
        let data = match &rec.body {
            Body::Event { data, .. } => Some(data),
            _ => None,
        };
        if let Some(p) = self.pasid {
            if data.and_then(pasid_of) != Some(p) {
                return false;
            }
        }
        if let Some((lo, hi)) = self.range {
            match data.and_then(address_span) {
                Some((a, b)) if a <= hi && lo <= b => {}
                _ => return false,
            }
        }
        true
    }
}

/// Writes the matching lines of the trace at `path` to `out`; returns how
/// many matched and, for a truncated trace read with `allow_truncated`, its
/// last complete line.
pub fn grep(
    path: &Path,
    filter: &Filter,
    options: ReadOptions,
    out: &mut dyn Write,
) -> Result<(u64, Option<usize>), GrepError> {
    let mut reader = reader::open(path, options)?;
    let mut n = 0u64;
    for rec in reader.by_ref() {
        let rec = rec?;
        if filter.matches(&rec) {
            writeln!(out, "{}", rec.raw)?;
            n += 1;
        }
    }
    Ok((n, reader.truncated_after()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(data: serde_json::Value) -> Record {
        Record {
            line: 2,
            seq: 1,
            t_ns: 0,
            body: Body::Event {
                kind: Kind::Walk,
                data,
            },
            raw: String::new(),
        }
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_range("0x1000").unwrap(), (0x1000, 0x1000));
        assert_eq!(
            parse_range("0xffff888000000000-0xffff888000200000").unwrap(),
            (0xffff_8880_0000_0000, 0xffff_8880_0020_0000)
        );
    }

    #[test]
    fn reject_bad_ranges() {
        assert!(parse_range("0x2000-0x1000").is_err());
        assert!(parse_range("zz").is_err());
        assert!(parse_range("0x1-").is_err());
    }

    #[test]
    fn filters_by_pasid_and_address() {
        let t = rec(json!({"event":"translation","rid":32,"pasid":5,"addr":0x4000}));
        let f = Filter {
            pasid: Some(5),
            range: Some((0x3000, 0x4fff)),
            kinds: None,
        };
        assert!(f.matches(&t));
        assert!(
            !Filter {
                pasid: Some(6),
                ..f
            }
            .matches(&t)
        );
        assert!(
            !Filter {
                range: Some((0x5000, 0x6000)),
                ..f
            }
            .matches(&t)
        );
        let k: KindSet = "inv".parse().unwrap();
        assert!(
            !Filter {
                kinds: Some(k),
                ..f
            }
            .matches(&t)
        );
    }

    #[test]
    fn page_invalidation_covers_its_range() {
        let inv = rec(json!({"event":"invalidation","descriptor":
            {"type":"piotlb","did":1,"pasid":5,"granularity":"page","addr":0x200000,"am":9,"ih":false}}));
        let f = Filter {
            pasid: None,
            range: Some((0x3ff000, 0x3ff000)),
            kinds: None,
        };
        assert!(f.matches(&inv));
        assert!(
            !Filter {
                range: Some((0x400000, 0x400000)),
                ..f
            }
            .matches(&inv)
        );
    }
}
