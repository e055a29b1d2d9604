//! The `run` and `compare` subcommands: configuration, the run(s), and how
//! reports are printed and written.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{CompareArgs, ReplayArgs, ReportFormat, RunArgs};
use crate::config::{SerialMode, VmConfig};
use crate::report::RunReport;
use crate::seccomp::{SeccompMode, ThreadKind};
use crate::vm::{RunHooks, run_with_report};
use stalewalk_tools::trace::KindSet;
use stalewalk_tools::trace::writer::{OnStart, TraceOptions, TraceWriter};

/// Exit status when the VMM fails (as opposed to the guest's own status).
pub const EXIT_VMM_ERROR: u8 = 125;
/// Exit status for a usage error (as clap uses).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when `--timeout` stopped the guest (as timeout(1) uses).
pub const EXIT_TIMEOUT: u8 = 124;

/// The exit status for a run that ended in `e`.
fn error_status(e: &crate::vm::VmError) -> u8 {
    match e {
        crate::vm::VmError::TimedOut { .. } => EXIT_TIMEOUT,
        _ => EXIT_VMM_ERROR,
    }
}
/// The policies a guest understands on `kpgtable_free=`.
pub const POLICIES: [&str; 3] = ["sync", "deferred", "eager"];

fn write_report_file(path: &Path, json: &str) -> Result<(), String> {
    std::fs::write(path, format!("{json}\n"))
        .map_err(|e| format!("cannot write report file {}: {e}", path.display()))
}

/// `stalewalk run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stalewalk: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = crate::vm::install_termination_handlers() {
        eprintln!("stalewalk: warning: {e}");
    }
    let (hooks, trace) = match trace_hooks(args, &cfg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("stalewalk: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let r = run_with_report(&cfg, hooks);
    let _ = std::io::stdout().flush();
    let mut status = finish_trace(trace);
    status = status.max(match &r.result {
        Ok(o) => o.exit_status,
        Err(e) => {
            eprintln!("stalewalk: error: {e}");
            error_status(e)
        }
    });
    if let Some(report) = &r.report {
        eprint!("{}", report.to_text());
        let json = report.to_json();
        if args.report_format == Some(ReportFormat::Json) {
            println!("{json}");
        }
        if let Some(p) = &args.report_file {
            if let Err(e) = write_report_file(p, &json) {
                eprintln!("stalewalk: error: {e}");
                status = status.max(1);
            }
        }
    }
    ExitCode::from(status)
}

/// `stalewalk scenarios`: the mini guest's scenario catalog on standard
/// output (exit 1 when it cannot be written).
pub fn scenarios(args: &crate::cli::ScenariosArgs) -> ExitCode {
    let text = if args.json {
        format!("{:#}\n", crate::scenarios::listing_json())
    } else {
        crate::scenarios::listing()
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "stalewalk scenarios: cannot write the list: {e}"
            );
            ExitCode::FAILURE
        }
    }
}

/// `stalewalk replay`: the tools crate's scenario replay, with `--trace`.
pub fn replay(args: &ReplayArgs) -> ExitCode {
    let json = args.report == ReportFormat::Json;
    let writer = match open_trace(
        args.trace.path.as_deref(),
        &args.trace.events,
        TraceOptions::default(),
    ) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("stalewalk: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let sink = writer
        .as_ref()
        .map(|w| Box::new(w.sink()) as Box<dyn viommu::EventSink>);
    let options = stalewalk_tools::replay::ReplayOptions {
        report_json: json,
        outcomes: args.outcomes,
    };
    let status = stalewalk_tools::replay::replay_to_with_options(
        &args.file,
        options,
        sink,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(status.max(finish_trace(writer)))
}

/// Opens the trace writer for `--trace PATH --trace-events KINDS` (none
/// without a path), on top of `base` options; errors name the flag.
fn open_trace(
    path: Option<&Path>,
    events: &str,
    base: TraceOptions,
) -> Result<Option<TraceWriter>, String> {
    let Some(path) = path else { return Ok(None) };
    let kinds: KindSet = events
        .parse()
        .map_err(|e| format!("--trace-events {events:?}: {e}"))?;
    let options = TraceOptions {
        kinds,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..base
    };
    TraceWriter::create(path, options)
        .map(Some)
        .map_err(|e| format!("--trace {}: {e}", path.display()))
}

/// Starts the trace writer for `--trace` and the hooks that feed it.
fn trace_hooks(args: &RunArgs, cfg: &VmConfig) -> Result<(RunHooks, Option<TraceWriter>), String> {
    let kernel_half_start = cfg
        .platform
        .viommu
        .as_ref()
        .map_or(viommu::Levels::Four, |v| v.levels)
        .kernel_half_start();
    let base = TraceOptions {
        kernel_half_start,
        on_start: Some(seccomp_on_start(cfg.seccomp)),
        ..TraceOptions::default()
    };
    let Some(writer) = open_trace(args.trace.path.as_deref(), &args.trace.events, base)? else {
        return Ok((RunHooks::default(), None));
    };
    let sink = writer.sink();
    let markers = writer.sink();
    let hooks = RunHooks {
        events: Some(Box::new(sink)),
        serial_line: Some(Box::new(move |line: &str| markers.marker(line))),
    };
    Ok((hooks, Some(writer)))
}

/// Installs the trace-writer seccomp filter in the writer thread; a
/// filter that cannot be installed stops the VMM rather than run without.
fn seccomp_on_start(mode: SeccompMode) -> OnStart {
    OnStart(std::sync::Arc::new(move || {
        if let Err(e) = crate::seccomp::install(ThreadKind::TraceWriter, mode) {
            eprintln!("stalewalk: error: {e}");
            std::process::exit(i32::from(EXIT_VMM_ERROR));
        }
    }))
}

/// Finishes the trace (end record, flush); 0 on success, 1 with a message
/// otherwise.
fn finish_trace(trace: Option<TraceWriter>) -> u8 {
    let Some(w) = trace else { return 0 };
    match w.finish() {
        Ok(totals) => {
            if totals.dropped_total() > 0 {
                eprintln!(
                    "stalewalk: trace: {} events dropped (queue full); the trace records the count",
                    totals.dropped_total()
                );
            }
            0
        }
        Err(e) => {
            eprintln!("stalewalk: error: trace: {e}");
            1
        }
    }
}

/// The configuration of one policy's run in `compare`.
pub fn policy_config(base: &VmConfig, policy: &str) -> VmConfig {
    let mut cfg = base.clone();
    if !cfg.cmdline.is_empty() {
        cfg.cmdline.push(' ');
    }
    cfg.cmdline.push_str("kpgtable_free=");
    cfg.cmdline.push_str(policy);
    cfg
}

/// Rows of the side-by-side table: (label, JSON pointer into the report).
const COMPARE_ROWS: &[(&str, &str)] = &[
    ("guest verdict", "/guest/values/verdict"),
    ("guest secret_leaked", "/guest/values/secret_leaked"),
    ("exit status", "/exit_status"),
    ("translations", "/translations"),
    ("faults", "/faults"),
    ("stale walks: reused", "/stale_walks/reused"),
    ("stale walks: unlinked", "/stale_walks/unlinked"),
    ("stale walks: leaf", "/stale_walks/leaf"),
    ("freed_while_cached", "/freed_while_cached"),
    ("page-table free hints", "/free_hints"),
    ("kva_invalidations", "/kva_invalidations"),
    ("inv: piotlb", "/invalidations/piotlb"),
    ("inv: pdevtlb", "/invalidations/pdevtlb"),
    ("inv: pasid_cache", "/invalidations/pasid_cache"),
    ("inv: context", "/invalidations/context"),
    ("inv: iotlb", "/invalidations/iotlb"),
    ("inv: wait", "/invalidations/wait"),
    ("pde cache hits", "/cache/pde/hits"),
    ("iotlb hits", "/cache/iotlb/hits"),
    ("rejected guest actions", "/vmm/rejected_guest_actions"),
    ("run time (ms)", "/elapsed_ms"),
];

fn cell(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// The side-by-side table for `compare`: one column per policy, rows that
/// differ between policies marked with `*`.
pub fn compare_table(policies: &[String], reports: &[serde_json::Value]) -> String {
    let mut out = String::new();
    let width = 24;
    let col = policies.iter().map(|p| p.len()).max().unwrap_or(8).max(10);
    out.push_str(&format!("  {:<width$}", "policy"));
    for p in policies {
        out.push_str(&format!(" {p:>col$}"));
    }
    out.push('\n');
    for (label, ptr) in COMPARE_ROWS {
        let cells: Vec<String> = reports.iter().map(|r| cell(r.pointer(ptr))).collect();
        let differs = *ptr != "/elapsed_ms" && cells.iter().any(|c| c != &cells[0]);
        out.push_str(if differs { "* " } else { "  " });
        out.push_str(&format!("{label:<width$}"));
        for c in &cells {
            out.push_str(&format!(" {c:>col$}"));
        }
        out.push('\n');
    }
    out.push_str("(* = differs between policies)\n");
    out
}

/// `--trace PATH` for one policy of `compare`: the policy goes before the
/// extension (`run.trace` -> `run.sync.trace`).
pub fn policy_path(path: &Path, policy: &str) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{policy}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{policy}"),
    };
    path.with_file_name(name)
}

/// `stalewalk compare`.
pub fn compare(args: &CompareArgs) -> ExitCode {
    if args.run.scenario.is_none() {
        eprintln!("stalewalk: error: compare needs --scenario NAME (e.g. --scenario exploit)");
        return ExitCode::from(EXIT_USAGE);
    }
    if args.policies.is_empty() {
        eprintln!("stalewalk: error: --policies is empty: give e.g. sync,deferred,eager");
        return ExitCode::from(EXIT_USAGE);
    }
    for p in &args.policies {
        if !POLICIES.contains(&p.as_str()) {
            eprintln!(
                "stalewalk: error: --policies: unknown policy {p:?} (known: sync, deferred, eager)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let mut base = match args.run.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stalewalk: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !args.show_serial {
        base.serial = SerialMode::Off;
    }
    // The comparison scenarios need a device that does DMA; give them one
    // unless the user chose how many.
    if base.platform.sva_devices == 0 {
        base.platform.sva_devices = 1;
    }
    let mut reports: Vec<RunReport> = Vec::new();
    let mut status = 0u8;
    for p in &args.policies {
        let cfg = policy_config(&base, p);
        eprintln!("stalewalk: compare: running policy {p} ...");
        let mut policy_args = args.run.clone();
        policy_args.trace.path = args.run.trace.path.as_deref().map(|t| policy_path(t, p));
        let (hooks, trace) = match trace_hooks(&policy_args, &cfg) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("stalewalk: error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let r = run_with_report(&cfg, hooks);
        status = status.max(finish_trace(trace));
        if let Some(t) = &policy_args.trace.path {
            eprintln!("stalewalk: compare: policy {p}: trace in {}", t.display());
        }
        match &r.result {
            Ok(o) if o.exit_status != 0 => {
                eprintln!(
                    "stalewalk: compare: policy {p}: the guest's scenario failed (exit status {})",
                    o.exit_status
                );
                status = status.max(1);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("stalewalk: compare: policy {p}: error: {e}");
                status = status.max(error_status(e));
            }
        }
        match r.report {
            Some(rep) => reports.push(rep),
            None => return ExitCode::from(EXIT_VMM_ERROR),
        }
    }
    let values: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or(serde_json::Value::Null))
        .collect();
    eprintln!(
        "== stalewalk compare: scenario {} ==",
        args.run.scenario.as_deref().unwrap_or("-")
    );
    eprint!("{}", compare_table(&args.policies, &values));
    let mut all = serde_json::Map::new();
    for (p, v) in args.policies.iter().zip(values) {
        all.insert(p.clone(), v);
    }
    let json = serde_json::to_string_pretty(&serde_json::Value::Object(all)).unwrap_or_default();
    if args.run.report_format == Some(ReportFormat::Json) {
        println!("{json}");
    }
    if let Some(path) = &args.run.report_file {
        if let Err(e) = write_report_file(path, &json) {
            eprintln!("stalewalk: error: {e}");
            status = status.max(1);
        }
    }
    ExitCode::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_is_appended_to_the_command_line() {
        let base = VmConfig {
            cmdline: "scenario=exploit".into(),
            ..VmConfig::default()
        };
        assert_eq!(
            policy_config(&base, "sync").cmdline,
            "scenario=exploit kpgtable_free=sync"
        );
    }

    #[test]
    fn compare_traces_get_the_policy_in_their_name() {
        assert_eq!(
            policy_path(Path::new("/tmp/run.trace"), "sync"),
            Path::new("/tmp/run.sync.trace")
        );
        assert_eq!(policy_path(Path::new("t"), "eager"), Path::new("t.eager"));
    }

    #[test]
    fn table_marks_differences() {
        let a = json!({"stale_walks": {"reused": 2}, "kva_invalidations": 0, "elapsed_ms": 1.0});
        let b = json!({"stale_walks": {"reused": 0}, "kva_invalidations": 0, "elapsed_ms": 2.0});
        let t = compare_table(&["sync".into(), "deferred".into()], &[a, b]);
        let reused = t.lines().find(|l| l.contains("reused")).unwrap();
        assert!(reused.starts_with("* "), "{reused}");
        let kva = t.lines().find(|l| l.contains("kva_invalidations")).unwrap();
        assert!(kva.starts_with("  "), "{kva}");
        let time = t.lines().find(|l| l.contains("run time")).unwrap();
        assert!(time.starts_with("  "), "{time}");
    }
}
