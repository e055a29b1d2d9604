//! The replay report: the model's counters as JSON (the `--report json`
//! output, also what `expect` lines read), and a short human-readable form.
//!
//! The JSON is exactly the serialization of `viommu`'s `Counters`; `expect`
//! keys are dotted paths into it (`stale_walks.reused`,
//! `invalidations.piotlb`, `cache.pde.hits`) and must name a number.

use serde_json::{Map, Value};
use thiserror::Error;
use viommu::Counters;

use super::{AccessOutcome, LineOutcome};

/// Keys every report has (the contract in `docs/SCENARIOS.md`); the tests
/// check that the model's counters serialize with all of them.
pub const CONTRACT_KEYS: &[&str] = &[
    "translations",
    "faults",
    "stale_walks.unlinked",
    "stale_walks.reused",
    "stale_walks.leaf",
    "freed_while_cached",
    "invalidations.context",
    "invalidations.iotlb",
    "invalidations.devtlb",
    "invalidations.iec",
    "invalidations.wait",
    "invalidations.piotlb",
    "invalidations.pasid_cache",
    "invalidations.pdevtlb",
    "invalidations.page_response",
    "kva_invalidations",
];

/// Most dotted-key segments looked up: report nesting is shallow, and the
/// bound keeps a hostile key from costing more than a few map lookups.
const MAX_KEY_DEPTH: usize = 8;

/// Why no report could be built.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The counters did not serialize to a JSON object.
    #[error("the model's counters did not serialize to a JSON object: {0}")]
    NotAnObject(String),
    /// serde_json failed.
    #[error("serializing the model's counters failed: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A snapshot of the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    json: Map<String, Value>,
}

impl Report {
    /// The report for `counters`.
    pub fn from_counters(counters: &Counters) -> Result<Report, ReportError> {
        Report::from_json(serde_json::to_value(counters)?)
    }

    /// The report for an already serialized counter object.
    pub fn from_json(value: Value) -> Result<Report, ReportError> {
        match value {
            Value::Object(json) => Ok(Report { json }),
            other => Err(ReportError::NotAnObject(other.to_string())),
        }
    }

    /// The counter at a dotted key, if it names an unsigned number.
    pub fn get(&self, key: &str) -> Option<u64> {
        let mut parts = key.split('.');
        let first = parts.next()?;
        let mut value = self.json.get(first)?;
        for (depth, part) in parts.enumerate() {
            if depth >= MAX_KEY_DEPTH {
                return None;
            }
            value = value.as_object()?.get(part)?;
        }
        value.as_u64()
    }

    /// The JSON object.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }

    /// Pretty-printed JSON, as `--report json` prints it.
    pub fn to_json_string(&self) -> String {
        self.to_json_string_with(None)
    }

    /// Pretty-printed JSON with, when given, the `outcomes` array
    /// (`--report json --outcomes`).
    pub fn to_json_string_with(&self, outcomes: Option<&[LineOutcome]>) -> String {
        let mut json = self.json.clone();
        if let Some(list) = outcomes {
            // Plain data (strings, numbers, booleans) always serializes.
            let value = serde_json::to_value(list).unwrap_or(Value::Array(Vec::new()));
            json.insert("outcomes".to_string(), value);
        }
        // A map of JSON values always serializes.
        serde_json::to_string_pretty(&json).unwrap_or_else(|_| String::from("{}"))
    }

    /// Every dotted key that names a number, in serialization order.
    pub fn keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_keys(&self.json, "", 0, &mut out);
        out
    }

    /// A short human-readable summary.
    pub fn human(&self) -> String {
        let n = |key: &str| self.get(key).unwrap_or(0);
        let mut out = String::new();
        out.push_str(&format!(
            "translations: {}  faults: {}\n",
            n("translations"),
            n("faults")
        ));
        out.push_str(&format!(
            "stale walks: unlinked {}  reused {}  leaf {}\n",
            n("stale_walks.unlinked"),
            n("stale_walks.reused"),
            n("stale_walks.leaf")
        ));
        out.push_str(&format!(
            "freed while cached: {}\n",
            n("freed_while_cached")
        ));
        let invalidations: Vec<String> = match self.json.get("invalidations") {
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| Some(format!("{k} {}", v.as_u64()?)))
                .collect(),
            _ => Vec::new(),
        };
        out.push_str(&format!("invalidations: {}\n", invalidations.join("  ")));
        out.push_str(&format!("kva invalidations: {}\n", n("kva_invalidations")));
        out
    }
}

/// One `--outcomes` line of the summary: `line N dma: ok 0x... size 4096
/// rights w-u` (w/x/u or `-`), or `line N walk: fault 0x71 (...)`.
pub fn human_outcome(o: &LineOutcome) -> String {
    match &o.outcome {
        AccessOutcome::Ok {
            output,
            page_size,
            rights,
            pass_through,
        } => format!(
            "line {} {}: ok {output} size {page_size} rights {}{}{}{}",
            o.line,
            o.command,
            if rights.write { 'w' } else { '-' },
            if rights.execute { 'x' } else { '-' },
            if rights.user { 'u' } else { '-' },
            if *pass_through { " pass-through" } else { "" },
        ),
        AccessOutcome::Fault {
            reason,
            reason_text,
        } => format!(
            "line {} {}: fault {reason:#04x} ({reason_text})",
            o.line, o.command
        ),
    }
}

fn collect_keys(map: &Map<String, Value>, prefix: &str, depth: usize, out: &mut Vec<String>) {
    for (key, value) in map {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if depth < MAX_KEY_DEPTH => {
                collect_keys(inner, &full, depth.saturating_add(1), out)
            }
            v if v.is_u64() => out.push(full),
            _ => {}
        }
    }
}

/// Whether `key` names a number in the report (checked against fresh
/// counters; the shape never depends on the values).
pub fn is_report_key(key: &str) -> bool {
    Report::from_counters(&Counters::default())
        .map(|report| report.get(key).is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Report {
        Report::from_counters(&Counters::default()).unwrap()
    }

    #[test]
    fn counters_have_every_contract_key() {
        let report = fresh();
        for key in CONTRACT_KEYS {
            assert_eq!(report.get(key), Some(0), "{key}");
            assert!(is_report_key(key), "{key}");
        }
    }

    #[test]
    fn dotted_lookup() {
        let report = Report::from_json(serde_json::json!({
            "a": 1, "b": {"c": 2, "d": {"e": 3}}, "s": "text", "neg": -1
        }))
        .unwrap();
        assert_eq!(report.get("a"), Some(1));
        assert_eq!(report.get("b.c"), Some(2));
        assert_eq!(report.get("b.d.e"), Some(3));
        assert_eq!(report.keys(), vec!["a", "b.c", "b.d.e"]);
    }

    #[test]
    fn reject_non_number_keys() {
        let report = fresh();
        for key in [
            "",
            ".",
            "stale_walks",
            "stale_walks.",
            "stale_walks.reused.x",
            "nope",
            "invalidations.nope",
            "checker",
            "translations.",
            ".translations",
        ] {
            assert_eq!(report.get(key), None, "{key}");
            assert!(!is_report_key(key), "{key}");
        }
        let deep = vec!["a"; 100].join(".");
        assert_eq!(report.get(&deep), None);
    }

    #[test]
    fn reject_non_object_json() {
        assert!(Report::from_json(serde_json::json!([1, 2])).is_err());
    }

    #[test]
    fn json_and_human_forms() {
        let mut counters = Counters {
            translations: 3,
            ..Counters::default()
        };
        counters.stale_walks.reused = 1;
        counters.invalidations.piotlb = 2;
        let report = Report::from_counters(&counters).unwrap();
        let parsed: Value = serde_json::from_str(&report.to_json_string()).unwrap();
        assert_eq!(parsed["translations"], 3);
        assert_eq!(parsed["stale_walks"]["reused"], 1);
        let human = report.human();
        assert!(human.contains("translations: 3"), "{human}");
        assert!(human.contains("reused 1"), "{human}");
        assert!(human.contains("piotlb 2"), "{human}");
    }
}
