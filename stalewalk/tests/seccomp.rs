//! End to end: the `stalewalk` binary installs its seccomp filters in the
//! real threads. A hidden environment variable makes one thread kind call
//! `socket(2)` right after its filter is in place; with `--seccomp on` the
//! process must die of `SIGSYS`, with `log` and `off` it must carry on.
//! Also: the default (`on`) run with a trace, a report file and serial to a
//! file, and `compare`, complete with status 0.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use stalewalk::seccomp::SELFTEST_ENV;
use stalewalk_integration::require_kvm;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stalewalk-seccomp-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stalewalk(args: &[&str], selftest: Option<&str>) -> ExitStatus {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stalewalk"));
    c.args(args);
    c.env_remove(SELFTEST_ENV);
    if let Some(kind) = selftest {
        c.env(SELFTEST_ENV, kind);
    }
    c.stdout(std::process::Stdio::null());
    c.stderr(std::process::Stdio::null());
    c.status().unwrap()
}

#[test]
fn reject_socket_in_each_thread_kind() {
    if !require_kvm("reject_socket_in_each_thread_kind") {
        return;
    }
    let dir = scratch("reject");
    let trace = dir.join("t.jsonl");
    let trace = trace.to_str().unwrap();
    let serial = format!("file={}", dir.join("serial.txt").display());
    for kind in ["vcpu", "vm", "trace-writer", "serial-writer"] {
        let s = stalewalk(
            &[
                "run",
                "--scenario",
                "smoke",
                "--serial",
                &serial,
                "--trace",
                trace,
            ],
            Some(kind),
        );
        assert_eq!(s.signal(), Some(libc::SIGSYS), "{kind}: {s:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn log_and_off_let_the_forbidden_syscall_through() {
    if !require_kvm("log_and_off_let_the_forbidden_syscall_through") {
        return;
    }
    for mode in ["log", "off"] {
        for kind in ["vcpu", "vm"] {
            let s = stalewalk(
                &[
                    "run",
                    "--scenario",
                    "smoke",
                    "--serial",
                    "off",
                    "--seccomp",
                    mode,
                ],
                Some(kind),
            );
            assert_eq!(s.code(), Some(0), "--seccomp {mode}, {kind}: {s:?}");
        }
    }
}

#[test]
fn default_filters_allow_trace_report_serial_file_and_compare() {
    if !require_kvm("default_filters_allow_trace_report_serial_file_and_compare") {
        return;
    }
    let dir = scratch("allow");
    let trace = dir.join("t.jsonl");
    let report = dir.join("r.json");
    let serial = dir.join("serial.txt");
    let serial_arg = format!("file={}", serial.display());
    let s = stalewalk(
        &[
            "run",
            "--sva-dev",
            "--scenario",
            "sva-ops",
            "--serial",
            &serial_arg,
            "--trace",
            trace.to_str().unwrap(),
            "--report-file",
            report.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(s.code(), Some(0), "{s:?}");
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(t.lines().last().unwrap().contains("\"kind\":\"end\""));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["exit_status"], 0);
    assert!(
        std::fs::read_to_string(&serial)
            .unwrap()
            .contains("stalewalk-guest:")
    );

    let cmp = dir.join("cmp.json");
    let s = stalewalk(
        &[
            "compare",
            "--scenario",
            "exploit",
            "--report-file",
            cmp.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(s.code(), Some(0), "{s:?}");
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cmp).unwrap()).unwrap();
    for p in ["sync", "deferred", "eager"] {
        assert_eq!(c[p]["exit_status"], 0, "{p}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
