//! The mini guest's scenarios and the command-line knobs each reads, from
//! the one list both sides use (guest/mini/scenarios/catalog.def, turned
//! into Rust by build.rs): what `stalewalk scenarios` prints, and what
//! `run --scenario NAME` reads to add the devices NAME needs. The guest
//! rejects a `key=` the catalog does not list for the scenario it runs.

use std::fmt::Write as _;

/// What a scenario needs besides the mini guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing.
    Nothing,
    /// An SVA DMA test device (`--sva-dev`).
    Sva,
    /// A virtio-blk disk (`--disk PATH`).
    Disk,
}

impl Needs {
    /// The word `stalewalk scenarios` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Needs::Nothing => "-",
            Needs::Sva => "sva-dev",
            Needs::Disk => "disk",
        }
    }
}

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Its `scenario=` name.
    pub name: &'static str,
    /// The device it needs.
    pub needs: Needs,
    /// What it shows, one line.
    pub what: &'static str,
}

/// One command-line knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    /// The scenario that reads it, `*` for every scenario.
    pub scenario: &'static str,
    /// The key (`key=value`).
    pub key: &'static str,
    /// Its default (empty: none).
    pub default: &'static str,
    /// What it sets.
    pub what: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// The knobs `scenario` accepts: its own, then those of every scenario.
pub fn knobs_of(scenario: &str) -> impl Iterator<Item = &'static Knob> + '_ {
    KNOBS
        .iter()
        .filter(move |k| k.scenario == scenario)
        .chain(KNOBS.iter().filter(|k| k.scenario == "*"))
}

/// The listing `stalewalk scenarios` prints: one line per scenario (name,
/// what it needs, what it shows), then its knobs indented; the knobs every
/// scenario takes at the end.
pub fn listing() -> String {
    let width = SCENARIOS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in SCENARIOS {
        let _ = writeln!(
            out,
            "{:width$}  needs {:7}  {}",
            s.name,
            s.needs.as_str(),
            s.what
        );
        for k in KNOBS.iter().filter(|k| k.scenario == s.name) {
            let _ = writeln!(out, "{:width$}    {}={}  {}", "", k.key, k.default, k.what);
        }
    }
    out.push_str("\nevery scenario:\n");
    for k in KNOBS.iter().filter(|k| k.scenario == "*") {
        let default = if k.default.is_empty() { "" } else { k.default };
        let _ = writeln!(out, "    {}={default}  {}", k.key, k.what);
    }
    out.push_str(
        "\nrun --scenario NAME adds one SVA device when NAME needs it and no --sva-dev or \
         --device is given; a scenario that needs a disk needs --disk PATH.\n",
    );
    out
}

/// The same as JSON: `{"scenarios": [{"name", "needs", "what", "knobs":
/// [{"key", "default", "what"}]}], "common_knobs": [...]}`.
pub fn listing_json() -> serde_json::Value {
    let knob = |k: &Knob| serde_json::json!({"key": k.key, "default": k.default, "what": k.what});
    serde_json::json!({
        "scenarios": SCENARIOS.iter().map(|s| serde_json::json!({
            "name": s.name,
            "needs": match s.needs {
                Needs::Nothing => serde_json::Value::Null,
                Needs::Sva => "sva-dev".into(),
                Needs::Disk => "disk".into(),
            },
            "what": s.what,
            "knobs": KNOBS.iter().filter(|k| k.scenario == s.name).map(knob).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "common_knobs": KNOBS.iter().filter(|k| k.scenario == "*").map(knob).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        assert!(SCENARIOS.len() >= 15, "{SCENARIOS:?}");
        for (i, s) in SCENARIOS.iter().enumerate() {
            assert!(
                SCENARIOS[..i].iter().all(|o| o.name != s.name),
                "{} twice",
                s.name
            );
        }
        for k in KNOBS {
            assert!(
                k.scenario == "*" || find(k.scenario).is_some(),
                "knob {} of unknown scenario {}",
                k.key,
                k.scenario
            );
        }
    }

    #[test]
    fn needs_match_the_devices_the_scenarios_use() {
        assert_eq!(find("exploit").map(|s| s.needs), Some(Needs::Sva));
        assert_eq!(find("vtd-blk").map(|s| s.needs), Some(Needs::Disk));
        assert_eq!(find("smoke").map(|s| s.needs), Some(Needs::Nothing));
        assert!(find("no-such").is_none());
    }

    #[test]
    fn knobs_include_the_common_ones() {
        let keys: Vec<_> = knobs_of("chaos").map(|k| k.key).collect();
        assert_eq!(keys, ["chaos_iters", "seed", "scenario", "kpgtable_free"]);
        let text = listing();
        assert!(text.contains("exploit_level=pmd"), "{text}");
        let v = listing_json();
        assert_eq!(v["scenarios"][0]["name"], "smoke");
    }
}
