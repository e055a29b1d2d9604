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
    // With --report json, standard output holds the JSON alone and the
    // table goes to standard error.
    assert!(stderr.contains("* stale walks: reused"), "{stderr}");
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
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

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT each stop the guest within 100 ms
/// (plus slack for a loaded machine), keep the report and the trace whole,
/// and exit 128 + N.
#[test]
fn termination_signals_stop_the_guest_and_keep_report_and_trace() {
    if !require_kvm("termination_signals_stop_the_guest_and_keep_report_and_trace") {
        return;
    }
    let dir = scratch("signals");
    for (sig, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
    ] {
        let trace = dir.join(format!("{name}.trace"));
        let report = dir.join(format!("{name}.json"));
        let mut child = Command::new(bin())
            .args(["run", "--scenario", "spin", "--trace"])
            .arg(&trace)
            .arg("--report-file")
            .arg(&report)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_for_line(
            &mut child,
            "spinning=1",
            Duration::from_secs(30)
        ));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), sig) };
        let start = Instant::now();
        let status = child.wait().unwrap();
        let took = start.elapsed();
        eprintln!("{name}: signal to exit {took:?}");
        assert!(took < Duration::from_secs(1), "{name}: {took:?}");
        assert_eq!(status.code(), Some(128 + sig), "{name}");
        check_stopped_spin(&report, &trace, &format!("signal {sig} ({name})"));
    }
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

/// Runs the binary with `args`, its standard output and error as given.
fn run_with(args: &[&str], stdout: Stdio, stderr: Stdio) -> std::process::ExitStatus {
    Command::new(bin())
        .args(args)
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .unwrap()
}

fn dev_full() -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    )
}

/// A failing standard output or error (full, or a pipe closed early as
/// `| head -c 10` does) neither panics nor loses the report file: the file
/// is written first, and the exit status says an output failed (3).
#[test]
fn report_file_survives_a_full_or_closed_stdout_and_stderr() {
    if !require_kvm("report_file_survives_a_full_or_closed_stdout_and_stderr") {
        return;
    }
    let dir = scratch("full");
    let report = dir.join("r.json");
    let r = report.to_str().unwrap();
    let args = [
        "run",
        "--scenario",
        "smoke",
        "--report",
        "json",
        "--report-file",
        r,
    ];
    for (what, out, err) in [
        ("stdout full", dev_full(), Stdio::null()),
        ("stderr full", Stdio::null(), dev_full()),
    ] {
        let _ = std::fs::remove_file(&report);
        let status = run_with(&args, out, err);
        assert_eq!(status.code(), Some(3), "{what}");
        let v: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(v["exit_status"], 0, "{what}");
    }
    // A reader that closes at once (EPIPE rather than a full disk).
    let _ = std::fs::remove_file(&report);
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    let v: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["exit_status"], 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// `--report json` has standard output to itself (the guest console goes
/// to standard error unless `--serial` says otherwise), so it parses whole.
#[test]
fn report_json_alone_on_stdout() {
    if !require_kvm("report_json_alone_on_stdout") {
        return;
    }
    for extra in [&[][..], &["--serial", "off"][..]] {
        let mut args = vec!["run", "--scenario", "smoke", "--report", "json"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{args:?}");
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(v["exit_status"], 0);
    }
    let out = run(&["run", "--scenario", "smoke", "--report", "json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("scenario=smoke"));
}

/// `--serial file=/dev/full`: the write failure is reported, the report
/// file is written (with the error and the bytes lost), exit status 3.
#[test]
fn serial_write_failure_is_reported() {
    if !require_kvm("serial_write_failure_is_reported") {
        return;
    }
    let dir = scratch("serialfull");
    let report = dir.join("r.json");
    let out = run(&[
        "run",
        "--scenario",
        "smoke",
        "--serial",
        "file=/dev/full",
        "--report-file",
        report.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("writing the guest console output (/dev/full)"),
        "{stderr}"
    );
    // The text report (on standard error) says it too.
    assert!(
        stderr.contains("serial: ")
            && stderr.contains("bytes of guest console output lost (write error:"),
        "{stderr}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(
        v["vmm"]["serial_dropped_bytes"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(
        v["vmm"]["serial_error"]
            .as_str()
            .unwrap()
            .contains("No space"),
        "{v}"
    );
    // A serial file that cannot be created is refused before the guest
    // starts, as an output (3), with the path named.
    let out = run(&[
        "run",
        "--scenario",
        "smoke",
        "--serial",
        "file=/nonexistent/dir/s.txt",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/s.txt"));
    let _ = std::fs::remove_dir_all(dir);
}

/// An output that names an input or another output is a usage error, found
/// before anything runs (no KVM needed).
#[test]
fn reject_an_output_that_names_an_input_or_another_output() {
    let dir = scratch("clash");
    let kernel = dir.join("vmlinux");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let x = dir.join("x");
    let k = kernel.to_str().unwrap();
    let x = x.to_str().unwrap();
    let serial = format!("file={k}");
    for (args, needle) in [
        (
            vec!["run", "--trace", x, "--report-file", x],
            "--report-file",
        ),
        (vec!["run", "--kernel", k, "--report-file", k], "--kernel"),
        (vec!["run", "--kernel", k, "--serial", &serial], "--kernel"),
        (vec!["run", "--disk", k, "--trace", k], "--disk"),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle) && stderr.contains("same file"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(std::fs::read(&kernel).unwrap(), b"not a kernel");
    // A report file in a directory that does not exist: refused before
    // the guest starts (exit 3, an output), with the flag named.
    let out = run(&["run", "--report-file", "/nonexistent/dir/r.json"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--report-file /nonexistent/dir/r.json"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A run that fails before the guest starts leaves an earlier trace and
/// report as they were (both are written under temporary names and
/// renamed when complete).
#[test]
fn failed_boot_keeps_an_earlier_trace() {
    let dir = scratch("failedboot");
    let trace = dir.join("t.trace");
    let report = dir.join("r.json");
    std::fs::write(&trace, b"earlier trace").unwrap();
    std::fs::write(&report, b"earlier report").unwrap();
    let bad = dir.join("bad-kernel");
    std::fs::write(&bad, b"neither ELF nor bzImage").unwrap();
    let out = run(&[
        "run",
        "--kernel",
        bad.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--report-file",
        report.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_eq!(std::fs::read(&trace).unwrap(), b"earlier trace");
    assert_eq!(std::fs::read(&report).unwrap(), b"earlier report");
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// Two writable runs may not share a disk image: the second is refused
/// with a clear error (exit 125) while the first holds it.
#[test]
fn reject_a_second_writer_on_a_disk() {
    if !require_kvm("reject_a_second_writer_on_a_disk") {
        return;
    }
    use std::os::fd::AsRawFd;
    let dir = scratch("disklock");
    let img = dir.join("disk.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    // Another writer: hold the same kind of lock the VMM takes.
    let holder = std::fs::File::open(&img).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = run(&[
        "run",
        "--scenario",
        "virtio-blk",
        "--disk",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another run has it open"), "{stderr}");
    drop(holder);
    let out = run(&[
        "run",
        "--scenario",
        "virtio-blk",
        "--disk",
        img.to_str().unwrap(),
        "--serial",
        "off",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `replay` to a full standard output exits 3, not 0.
#[test]
fn replay_to_a_full_stdout_fails() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/seed-story.sw");
    let s = scenario.to_str().unwrap();
    assert_eq!(
        run_with(&["replay", s], Stdio::null(), Stdio::null()).code(),
        Some(0)
    );
    assert_eq!(
        run_with(&["replay", s], dev_full(), Stdio::null()).code(),
        Some(3)
    );
}

/// The exit status says pass or fail; the guest's own status is in the
/// report: `fault-ud` exits 3 in the guest, 1 from the VMM.
#[test]
fn guest_status_is_in_the_report_and_the_exit_status_says_fail() {
    if !require_kvm("guest_status_is_in_the_report_and_the_exit_status_says_fail") {
        return;
    }
    let out = run(&["run", "--scenario", "fault-ud", "--report", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_status"], 3, "{v}");
    let help = run(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("128+N signal N"));
}

/// `compare > out.txt` holds the table; SIGTERM during `compare` still
/// writes the reports of the policies already done and exits 143.
#[test]
fn compare_table_on_stdout_and_sigterm_keeps_finished_policies() {
    if !require_kvm("compare_table_on_stdout_and_sigterm_keeps_finished_policies") {
        return;
    }
    let out = run(&[
        "compare",
        "--scenario",
        "exploit",
        "--policies",
        "sync,deferred",
    ]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("* stale walks: reused"), "{table}");
    let dir = scratch("comparesig");
    let report = dir.join("all.json");
    let trace = dir.join("t.trace");
    let mut child = Command::new(bin())
        .args([
            "compare",
            "--scenario",
            "spin",
            "--policies",
            "sync,deferred,eager",
            "--timeout",
            "2",
        ])
        .arg("--report-file")
        .arg(&report)
        .arg("--trace")
        .arg(&trace)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first policy's trace appears (renamed) when its run is done.
    let first = dir.join("t.sync.trace");
    let start = Instant::now();
    while !first.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(first.exists());
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let v: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(
        v["sync"]["ended_by"]
            .as_str()
            .unwrap()
            .contains("--timeout"),
        "{v}"
    );
    assert!(v.get("eager").is_none(), "{v}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `--report junit` is well-formed JUnit XML with one test case per
/// verdict and per expectation, for every policy of `compare`.
#[test]
fn compare_report_junit_parses() {
    if !require_kvm("compare_report_junit_parses") {
        return;
    }
    let out = run(&[
        "compare",
        "--scenario",
        "exploit",
        "--policies",
        "sync,deferred",
        "--report",
        "junit",
    ]);
    assert!(out.status.success());
    let xml = String::from_utf8(out.stdout).unwrap();
    let all = junit_cases(&xml);
    let suites = xml.matches("<testsuite ").count();
    let failures = all.iter().filter(|c| c.1 != "pass").count();
    let cases: Vec<String> = all.into_iter().map(|c| c.0).collect();
    assert_eq!(suites, 2, "{xml}");
    assert_eq!(failures, 0, "{xml}");
    for want in ["exit status", "verdict"] {
        assert_eq!(
            cases.iter().filter(|c| *c == want).count(),
            2,
            "{want}: {xml}"
        );
    }
    assert_eq!(
        cases
            .iter()
            .filter(|c| c.starts_with("expectation: "))
            .count(),
        2,
        "{xml}"
    );
}

/// Every file under `dir`, relative to it, with its contents.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The checked-in man pages and completion scripts (docs/generated) are
/// what the clap definitions generate now: regenerate with
/// `cargo run --bin stalewalk -- gen-docs docs/generated`.
#[test]
fn generated_man_pages_and_completions_are_current() {
    let dir = scratch("gendocs");
    let out = run(&["gen-docs", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let fresh = tree(&dir);
    let checked_in = tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/generated"));
    assert!(fresh.keys().any(|p| p.ends_with("stalewalk-run.1")));
    assert!(fresh.keys().any(|p| p.ends_with("stalewalk.bash")));
    let names =
        |t: &std::collections::BTreeMap<PathBuf, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&fresh),
        names(&checked_in),
        "docs/generated is stale: run `cargo run --bin stalewalk -- gen-docs docs/generated`"
    );
    for (p, bytes) in &fresh {
        assert!(
            checked_in.get(p) == Some(bytes),
            "docs/generated/{} is stale: run `cargo run --bin stalewalk -- gen-docs docs/generated`",
            p.display()
        );
    }
    // `completions SHELL` prints the same script.
    let out = run(&["completions", "bash"]);
    assert_eq!(
        Some(&out.stdout),
        fresh.get(Path::new("completions/stalewalk.bash"))
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Two runs on one `--trace` path at once both succeed and leave one whole
/// trace (each writes a temporary file and renames it into place).
#[test]
fn two_runs_on_one_trace_path_leave_a_whole_trace() {
    if !require_kvm("two_runs_on_one_trace_path_leave_a_whole_trace") {
        return;
    }
    let dir = scratch("sharedtrace");
    let trace = dir.join("t.trace");
    let spawn = || {
        Command::new(bin())
            .args([
                "run",
                "--scenario",
                "sva-ops",
                "--sva-dev",
                "--serial",
                "off",
                "--trace",
            ])
            .arg(&trace)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let out = run(&["trace", "summary", trace.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// The test cases of a JUnit document: (name, "pass" | "failure" |
/// "skipped"), checking it is well-formed.
fn junit_cases(xml: &str) -> Vec<(String, &'static str)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut cases: Vec<(String, &'static str)> = Vec::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                match e.name().as_ref() {
                    b"testcase" => cases.push((
                        e.try_get_attribute("name")
                            .unwrap()
                            .unwrap()
                            .unescape_value()
                            .unwrap()
                            .into_owned(),
                        "pass",
                    )),
                    b"failure" => cases.last_mut().unwrap().1 = "failure",
                    b"skipped" => cases.last_mut().unwrap().1 = "skipped",
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(e) => panic!("not well-formed: {e}: {xml}"),
        }
    }
    cases
}

/// `replay --report junit`: a case per `expect` line (held, failed with the
/// keys that differed, or skipped after the failure), the XML alone on
/// standard output, the exit status of the text form; a scenario that does
/// not parse is one failed case and status 2.
#[test]
fn replay_report_junit_has_a_case_per_expect() {
    let dir = scratch("replayjunit");
    let ok =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/grown-then-unlinked.sw");
    let out = run(&["replay", ok.to_str().unwrap(), "--report", "junit"]);
    assert_eq!(out.status.code(), Some(0));
    let xml = String::from_utf8(out.stdout).unwrap();
    let cases = junit_cases(&xml);
    assert_eq!(cases.len(), 3, "{xml}");
    assert!(
        cases
            .iter()
            .all(|(n, s)| n.contains(": expect ") && *s == "pass"),
        "{xml}"
    );

    let failing = dir.join("f.sw");
    std::fs::write(
        &failing,
        "expect faults=0\nexpect faults=1 translations=0\nexpect translations=0\n",
    )
    .unwrap();
    let out = run(&["replay", failing.to_str().unwrap(), "--report", "junit"]);
    assert_eq!(out.status.code(), Some(1));
    let xml = String::from_utf8(out.stdout).unwrap();
    let cases = junit_cases(&xml);
    let states: Vec<&str> = cases.iter().map(|c| c.1).collect();
    assert_eq!(states, ["pass", "failure", "skipped"], "{xml}");
    assert_eq!(
        cases[1].0, "line 2: expect faults=1 translations=0",
        "{xml}"
    );
    assert!(xml.contains("faults: expected 1, actual 0"), "{xml}");
    assert!(
        xml.contains("not run: the replay stopped at line 2"),
        "{xml}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2: expect faults"));

    // A command that cannot be carried out (a `bind` when the harness area
    // is full): the expects before it held, it failed, the ones after it
    // did not run.
    let cmd = dir.join("c.sw");
    let mut text = String::from("expect faults=0\n");
    for bus in 0..200 {
        for dev in 0..4 {
            text.push_str(&format!(
                "bind pasid={} pgd=0x100000 rid={bus:02x}:{dev:02x}.0\n",
                dev + 1
            ));
        }
    }
    text.push_str("expect faults=0\n");
    std::fs::write(&cmd, text).unwrap();
    let out = run(&["replay", cmd.to_str().unwrap(), "--report", "junit"]);
    assert_eq!(out.status.code(), Some(2));
    let xml = String::from_utf8(out.stdout).unwrap();
    let cases = junit_cases(&xml);
    let got: Vec<(&str, &str)> = cases.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    assert_eq!(
        got,
        [
            ("line 1: expect faults=0", "pass"),
            ("line 113: command", "failure"),
            ("line 802: expect faults=0", "skipped"),
        ],
        "{xml}"
    );

    let bad = dir.join("b.sw");
    std::fs::write(&bad, "bogus\nexpect faults=0\n").unwrap();
    let out = run(&["replay", bad.to_str().unwrap(), "--report", "junit"]);
    assert_eq!(out.status.code(), Some(2));
    let xml = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        junit_cases(&xml),
        [("scenario".to_string(), "failure")],
        "{xml}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
