//! End-to-end tests of the `stalewalk` binary as users run it: `compare`
//! on the exploit scenario, reports and traces agreeing, SIGTERM handling,
//! the trace plot rendered by a real browser, and usage errors.
//!
//! Tests that need `/dev/kvm` (or chromium) print one `SKIPPED:` line on
//! standard error and return when it is missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use stalewalk_integration::{require_kvm, skip};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stalewalk")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stalewalk-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn json_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in: {text}"));
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn compare_exploit_shows_the_vulnerability_and_the_fix() {
    if !require_kvm("compare_exploit_shows_the_vulnerability_and_the_fix") {
        return;
    }
    let out = run(&["compare", "--scenario", "exploit", "--report", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("* stale walks: reused"), "{stderr}");
    let all = json_of(&out);
    let sync = &all["sync"];
    assert_eq!(sync["guest"]["values"]["secret_leaked"], "1", "{sync}");
    assert!(sync["stale_walks"]["reused"].as_u64().unwrap() >= 1);
    assert!(sync["freed_while_cached"].as_u64().unwrap() >= 1);
    for p in ["deferred", "eager"] {
        let r = &all[p];
        assert_eq!(r["guest"]["values"]["secret_leaked"], "0", "{p}: {r}");
        assert_eq!(r["stale_walks"]["reused"], 0, "{p}");
        assert_eq!(r["freed_while_cached"], 0, "{p}");
        assert!(r["kva_invalidations"].as_u64().unwrap() >= 1, "{p}");
    }
}

#[test]
fn exploit_is_caught_with_an_lru_cache_and_unseen_with_the_checker_off() {
    if !require_kvm("exploit_is_caught_with_an_lru_cache_and_unseen_with_the_checker_off") {
        return;
    }
    let base = ["run", "--sva-dev", "--scenario", "exploit", "--cmdline"];
    let out = Command::new(bin())
        .args(base)
        .args([
            "kpgtable_free=sync",
            "--viommu-cache",
            "lru:64",
            "--report",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = json_of(&out);
    assert!(r["stale_walks"]["reused"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["cache_policy"], "lru:64");

    let out = Command::new(bin())
        .args(base)
        .args([
            "kpgtable_free=sync",
            "--viommu-check",
            "off",
            "--report",
            "json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r = json_of(&out);
    assert_eq!(r["checker"], "off");
    assert_eq!(r["stale_walks"]["reused"], 0);
    assert_eq!(r["stale_walks"]["unlinked"], 0);
    assert_eq!(r["stale_walks"]["leaf"], 0);
    assert!(stderr.contains("checker was off"), "{stderr}");
}

/// Every number in `trace` equals the one at the same place in `report`
/// (the trace carries a subset of the report's counters: cache statistics
/// and a few page-request counters are not in the event stream).
fn assert_subset(trace: &Value, report: &Value, what: &str) {
    match trace {
        Value::Object(m) => {
            for (k, v) in m {
                assert_subset(v, &report[k], &format!("{what}.{k}"));
            }
        }
        other => assert_eq!(other, report, "{what}"),
    }
}

/// The counters a trace gives back equal the run's report.
#[test]
fn trace_round_trips_to_the_report() {
    if !require_kvm("trace_round_trips_to_the_report") {
        return;
    }
    let dir = scratch("roundtrip");
    for policy in ["sync", "deferred"] {
        let trace = dir.join(format!("{policy}.trace"));
        let report = dir.join(format!("{policy}.json"));
        let out = run(&[
            "run",
            "--sva-dev",
            "--scenario",
            "exploit",
            "--serial",
            "off",
            "--cmdline",
            &format!("kpgtable_free={policy}"),
            "--trace",
            trace.to_str().unwrap(),
            "--report-file",
            report.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let out = run(&["trace", "summary", "--json", trace.to_str().unwrap()]);
        assert!(out.status.success());
        let summary = json_of(&out);
        let counters = summary["counters"].as_object().unwrap();
        assert!(counters.len() > 10);
        for (k, v) in counters {
            assert_subset(v, &report[k], &format!("{policy}: counter {k}"));
        }
    }
    let out = run(&[
        "trace",
        "diff",
        dir.join("sync.trace").to_str().unwrap(),
        dir.join("deferred.trace").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

fn wait_for_line(child: &mut std::process::Child, needle: &str, limit: Duration) -> bool {
    let Some(stdout) = child.stdout.take() else {
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&needle) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(limit).is_ok()
}

#[test]
fn sigterm_stops_the_guest_and_keeps_report_and_trace() {
    if !require_kvm("sigterm_stops_the_guest_and_keeps_report_and_trace") {
        return;
    }
    let dir = scratch("sigterm");
    let trace = dir.join("spin.trace");
    let report = dir.join("spin.json");
    let mut child = Command::new(bin())
        .args(["run", "--scenario", "spin", "--trace"])
        .arg(&trace)
        .arg("--report-file")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_line(
        &mut child,
        "spinning=1",
        Duration::from_secs(30)
    ));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(125));
    check_stopped_spin(&report, &trace, "signal 15");
    let _ = std::fs::remove_dir_all(dir);
}

/// A `spin` run the VMM stopped: the report says why (`ended_by` contains
/// `why`) and has the guest's last values; the trace is complete.
fn check_stopped_spin(report: &Path, trace: &Path, why: &str) {
    let r: Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    assert!(r["ended_by"].as_str().unwrap().contains(why), "{r}");
    assert!(r["exit_status"].is_null(), "{r}");
    assert_eq!(r["guest"]["values"]["spinning"], "1");
    let out = run(&["trace", "summary", trace.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--timeout` stops a guest that never ends: exit status 124, the report
/// says why, and the trace is complete.
#[test]
fn timeout_stops_the_guest_and_keeps_report_and_trace() {
    if !require_kvm("timeout_stops_the_guest_and_keeps_report_and_trace") {
        return;
    }
    let dir = scratch("timeout");
    let trace = dir.join("spin.trace");
    let report = dir.join("spin.json");
    let start = Instant::now();
    let out = Command::new(bin())
        .args(["run", "--scenario", "spin", "--timeout", "2", "--trace"])
        .arg(&trace)
        .arg("--report-file")
        .arg(&report)
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--timeout 2s"), "{stderr}");
    check_stopped_spin(&report, &trace, "--timeout 2s");
    // A bad value is a usage error.
    let out = run(&["run", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout \"soon\""));
    let _ = std::fs::remove_dir_all(dir);
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// The plot of a real exploit run, rendered by headless Chromium, is not a
/// blank page.
#[test]
fn trace_plot_renders_in_headless_chromium() {
    if !require_kvm("trace_plot_renders_in_headless_chromium") {
        return;
    }
    let Some(browser) = chromium() else {
        skip(
            "trace_plot_renders_in_headless_chromium",
            "chromium not installed",
            "apt-get install chromium",
        );
        return;
    };
    let dir = scratch("plot");
    let trace = dir.join("exploit.trace");
    let svg = dir.join("exploit.svg");
    let png = dir.join("exploit.png");
    let out = run(&[
        "run",
        "--sva-dev",
        "--scenario",
        "exploit",
        "--serial",
        "off",
        "--cmdline",
        "kpgtable_free=sync",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = run(&[
        "trace",
        "plot",
        trace.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let profile = dir.join("profile");
    let shot = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // A blank 1200x800 white page compresses to a few KiB; a plot with
    // axes, series, markers and labels is far larger.
    assert!(
        bytes.len() > 20_000,
        "screenshot looks blank ({} bytes)",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reject_usage_errors_with_exit_2() {
    for (args, needle) in [
        (vec!["run", "--viommu-cache", "lru:0"], "--viommu-cache"),
        (vec!["run", "--viommu-levels", "6"], "--viommu-levels"),
        (vec!["run", "--device", "gpu"], "unknown device"),
        (vec!["run", "--memory", "lots"], "--memory"),
        (vec!["compare", "--policies", "sync"], "--scenario"),
        (
            vec!["compare", "--scenario", "exploit", "--policies", "lazy"],
            "unknown policy",
        ),
        (
            vec!["run", "--trace-events", "inv,bogus", "--trace", "/tmp/x"],
            "--trace-events",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn scenarios_lists_each_scenario_its_needs_and_knobs() {
    let out = run(&["scenarios"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let exploit = text
        .lines()
        .find(|l| l.starts_with("exploit "))
        .unwrap_or_else(|| panic!("no exploit line: {text}"));
    assert!(exploit.contains("needs sva-dev"), "{exploit}");
    assert!(text.contains("exploit_level=pmd"), "{text}");
    assert!(text.contains("kpgtable_free=sync"), "{text}");
    let out = run(&["scenarios", "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("scenarios --json is JSON");
    let vtd = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "vtd-blk")
        .expect("vtd-blk listed");
    assert_eq!(vtd["needs"], "disk");
}

#[test]
fn reject_disk_scenario_without_a_disk_before_booting() {
    let out = run(&["run", "--scenario", "vtd-blk"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenario vtd-blk needs a virtio-blk disk: add --disk PATH"),
        "{err}"
    );
}

#[test]
fn run_scenario_exploit_adds_the_sva_device_it_needs() {
    if !require_kvm("run_scenario_exploit_adds_the_sva_device_it_needs") {
        return;
    }
    let out = run(&[
        "run",
        "--scenario",
        "exploit",
        "--cmdline",
        "kpgtable_free=deferred",
        "--serial",
        "off",
        "--report",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_of(&out);
    assert_eq!(r["guest"]["values"]["sva_devices"], "1", "{r}");
    assert_eq!(r["guest"]["values"]["verdict"], "pass", "{r}");
}

#[test]
fn reject_misspelt_guest_key_naming_it() {
    if !require_kvm("reject_misspelt_guest_key_naming_it") {
        return;
    }
    // Once: the default policy ran and the scenario passed.
    let out = run(&[
        "run",
        "--scenario",
        "exploit",
        "--cmdline",
        "kpgtable_fre=deferred",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("error=unknown_key key=kpgtable_fre scenario=exploit"),
        "{all}"
    );
    assert!(all.contains("knob_available=kpgtable_free"), "{all}");
    // A value that is not a number is an error too, not the default.
    let out = run(&[
        "run",
        "--scenario",
        "churn",
        "--cmdline",
        "churn_rounds=many",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        all.contains("error=bad_value key=churn_rounds value=many"),
        "{all}"
    );
}
