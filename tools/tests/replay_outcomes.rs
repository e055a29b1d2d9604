//! `stalewalk replay --report json --outcomes`: every `dma` and `walk` line's
//! outcome (output address, page size, rights, fault reason), so an outside
//! model can be compared on each access, and the same in the summary.

use std::path::{Path, PathBuf};

use serde_json::Value;
use stalewalk_tools::replay::{ReplayOptions, replay_to_with_options};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/scenarios")
        .join(name)
}

fn replay(path: &Path, report_json: bool, outcomes: bool) -> (u8, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let options = ReplayOptions {
        report_json,
        outcomes,
    };
    let status = replay_to_with_options(path, options, None, &mut out, &mut err);
    (status, String::from_utf8(out).unwrap())
}

#[test]
fn outcomes_list_every_dma_and_walk_line() {
    let (status, out) = replay(&scenario("interrupt-range.sw"), true, true);
    assert_eq!(status, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    let list = json["outcomes"].as_array().unwrap();
    // The five dma lines of the scenario, in order.
    let lines: Vec<u64> = list.iter().map(|o| o["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![17, 18, 20, 23, 25]);
    assert!(list.iter().all(|o| o["command"] == "dma"));
    assert_eq!(list[0]["outcome"], "fault");
    assert_eq!(list[0]["reason"], 0x87);
    assert!(
        list[0]["reason_text"]
            .as_str()
            .unwrap()
            .contains("interrupt address range")
    );
    assert_eq!(list[2]["outcome"], "ok");
    assert_eq!(list[2]["output"], "0xfef00000");
    assert_eq!(list[2]["page_size"], 4096);
    assert_eq!(list[2]["pass_through"], false);
    assert_eq!(
        list[2]["rights"],
        serde_json::json!({"write": true, "execute": true, "user": true})
    );
    // The 2 MiB leaf overlapping the window is handed out in 4 KiB pieces.
    assert_eq!(list[3]["output"], "0xfef00000");
    assert_eq!(list[3]["page_size"], 4096);
    assert_eq!(list[4]["reason"], 0x87);
    // The counters are unchanged beside the list.
    assert_eq!(json["translations"], 5);
}

#[test]
fn walk_outcomes_and_rights() {
    let (status, out) = replay(&scenario("psi-range-exact.sw"), true, true);
    assert_eq!(status, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    let list = json["outcomes"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|o| o["command"] == "walk"));
    // A supervisor-only page: the walk reaches it; not user, writable.
    assert_eq!(list[0]["outcome"], "ok");
    assert_eq!(list[0]["output"], "0x300000");
    assert_eq!(list[0]["rights"]["user"], false);
    assert_eq!(list[0]["rights"]["write"], true);
    // Through the stale PDE into the unlinked (intact) page, then after the
    // flush the 2 MiB leaf.
    assert_eq!(list[1]["output"], "0x300000");
    assert_eq!(list[2]["output"], "0x600000");
    assert_eq!(list[2]["page_size"], 0x20_0000);
}

#[test]
fn outcomes_only_when_asked_and_in_the_summary() {
    let path = scenario("supervisor-execute.sw");
    let (_, out) = replay(&path, true, false);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert!(json.get("outcomes").is_none());
    let (status, text) = replay(&path, false, true);
    assert_eq!(status, 0);
    // A supervisor request to a supervisor page: writable and, as a
    // supervisor may not execute user pages only, executable here.
    assert!(
        text.contains("line 16 dma: ok 0x200000 size 4096 rights wx-"),
        "{text}"
    );
    assert!(
        text.contains("line 17 dma: ok 0x201000 size 4096 rights wxu"),
        "{text}"
    );
    assert!(text.contains("line 19 dma: fault 0x86 "), "{text}");
    assert!(text.contains("line 20 dma: fault 0x81 "), "{text}");
    assert!(text.contains("line 21 dma: fault 0x84 "), "{text}");
}

/// On a failing `expect` the report printed so far carries the outcomes
/// so far.
#[test]
fn outcomes_with_a_failing_expect() {
    let (status, out) = replay(&scenario("expect-mismatch.fail.sw"), true, true);
    assert_eq!(status, 1);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert!(json["outcomes"].is_array());
}

/// A `--trace` sink changes nothing the replay reports: every worked
/// example gives the same report and the same outcomes with the trace
/// writer installed as without a sink.
#[test]
fn trace_sink_changes_no_report_or_outcome() {
    use stalewalk_tools::replay::{ReplayError, Scenario, run, run_with_sink};
    use stalewalk_tools::trace::{TraceOptions, TraceWriter};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".sw") || name.ends_with(".bad.sw") {
            continue;
        }
        let scenario = Scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let writer = TraceWriter::to_writer(
            Box::new(std::io::sink()),
            "sink".into(),
            TraceOptions::default(),
        )
        .unwrap();
        let traced = run_with_sink(&scenario, Some(Box::new(writer.sink())));
        writer.finish().unwrap();
        let plain = run(&scenario);
        let view = |r: Result<_, ReplayError>| match r {
            Ok(o) => {
                let o: stalewalk_tools::replay::Outcome = o;
                (o.report.to_json_string(), o.outcomes)
            }
            Err(ReplayError::Expect(f)) => (f.report.to_json_string(), f.outcomes),
            Err(e) => panic!("{name}: {e}"),
        };
        assert_eq!(view(traced), view(plain), "{name}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} scenarios");
}
