//! Runs every worked example in `tests/scenarios/`: `*.sw` must exit 0,
//! `*.fail.sw` 1 and `*.bad.sw` 2, through the same entry point as
//! `stalewalk replay`.

use std::path::{Path, PathBuf};

use stalewalk_tools::replay::replay_to;

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios")
}

fn expected_status(path: &Path) -> u8 {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".fail.sw") {
        1
    } else if name.ends_with(".bad.sw") {
        2
    } else {
        0
    }
}

fn replay(path: &Path, json: bool) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = replay_to(path, json, &mut out, &mut err);
    (
        status,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn every_scenario_exits_as_its_name_says() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sw"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "worked examples missing: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let (status, out, err) = replay(file, true);
        let want = expected_status(file);
        if status != want {
            failures.push(format!(
                "{}: exit {status}, want {want}\nstdout:\n{out}\nstderr:\n{err}",
                file.display()
            ));
            continue;
        }
        match status {
            0 => {
                let report: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert!(report["translations"].is_u64(), "{}", file.display());
                assert!(err.is_empty(), "{}: {err}", file.display());
            }
            1 => {
                assert!(err.contains("expected"), "{}: {err}", file.display());
                assert!(err.contains("actual"), "{}: {err}", file.display());
            }
            _ => {
                assert!(err.contains("line "), "{}: {err}", file.display());
                assert!(out.is_empty(), "{}: {out}", file.display());
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn seed_story_reports_a_reused_stale_walk() {
    let (status, out, _) = replay(&scenario_dir().join("seed-story.sw"), true);
    assert_eq!(status, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["stale_walks"]["reused"], 1);
    assert_eq!(report["freed_while_cached"], 1);
    let (status, out, _) = replay(&scenario_dir().join("seed-story-flushed.sw"), true);
    assert_eq!(status, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["stale_walks"]["reused"], 0);
    assert_eq!(report["freed_while_cached"], 0);
    assert_eq!(report["kva_invalidations"], 1);
}

#[test]
fn mismatch_names_line_key_and_values() {
    let (status, out, err) = replay(&scenario_dir().join("expect-mismatch.fail.sw"), false);
    assert_eq!(status, 1);
    assert!(
        err.contains("line 10: expect faults: expected 1, actual 0"),
        "{err}"
    );
    assert!(out.contains("translations: 1"), "{out}");
}

#[test]
fn bad_scenarios_name_the_line() {
    let cases = [
        ("unknown-command.bad.sw", "line 4: unknown command `flush`"),
        ("harness-area.bad.sw", "line 4: "),
        ("config-not-first.bad.sw", "line 3: "),
        ("unknown-expect-key.bad.sw", "line 3: "),
    ];
    for (file, message) in cases {
        let (status, _, err) = replay(&scenario_dir().join(file), false);
        assert_eq!(status, 2, "{file}");
        assert!(err.contains(message), "{file}: {err}");
    }
}

#[test]
fn reject_missing_file() {
    let (status, out, err) = replay(Path::new("/nonexistent/scenario.sw"), false);
    assert_eq!(status, 2);
    assert!(out.is_empty());
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn reject_invalid_utf8_with_its_line() {
    let dir = std::env::temp_dir().join(format!("stalewalk-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("latin1.sw");
    std::fs::write(&file, b"# caf\xe9 in a comment is fine\nwait\nw\xe9it\n").unwrap();
    let (status, out, err) = replay(&file, false);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(status, 2);
    assert!(out.is_empty());
    assert!(err.contains("line 3: unknown command"), "{err}");
}
