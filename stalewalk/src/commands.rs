//! The `run` and `compare` subcommands: configuration, the run(s), and how
//! reports are printed and written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{CompareArgs, ReplayArgs, ReportFormat, RunArgs};
use crate::config::{SerialMode, VmConfig};
use crate::outputs::{AtomicFile, CheckedWriter, NamedPath, check_paths, to_stderr};
use crate::report::RunReport;
use crate::seccomp::{SeccompMode, ThreadKind};
use crate::vm::{RunHooks, RunResult, run_with_report};
use stalewalk_tools::trace::KindSet;
use stalewalk_tools::trace::writer::{OnStart, TraceOptions, TraceWriter};

pub use crate::exit;

/// The exit status for a run that ended in `e`.
fn error_status(e: &crate::vm::VmError) -> u8 {
    match e {
        crate::vm::VmError::TimedOut { .. } => exit::TIMEOUT,
        crate::vm::VmError::Interrupted { signal } => exit::signal(*signal),
        // `--serial file=` could not be created: an output, like the
        // report file and the trace.
        crate::vm::VmError::SerialFile { .. } => exit::OUTPUT,
        _ => exit::VMM_ERROR,
    }
}

/// The exit status for a run's guest: pass or fail.
fn guest_status(r: &RunResult) -> u8 {
    match &r.result {
        Ok(o) if o.exit_status != 0 => exit::FAILED,
        Ok(_) if r.report.as_ref().and_then(RunReport::guest_verdict) == Some("fail") => {
            exit::FAILED
        }
        Ok(_) => exit::PASS,
        Err(e) => error_status(e),
    }
}

/// The policies a guest understands on `kpgtable_free=`.
pub const POLICIES: [&str; 3] = ["sync", "deferred", "eager"];

/// Prints an error line on standard error (never panics).
fn error(msg: impl std::fmt::Display) {
    to_stderr(&format!("stalewalk: error: {msg}\n"));
}

/// The outputs and inputs a run names, for [`check_paths`]; `traces` are
/// the trace paths (one per policy under `compare`).
fn named_paths(
    args: &RunArgs,
    cfg: &VmConfig,
    traces: &[PathBuf],
) -> (Vec<NamedPath>, Vec<NamedPath>) {
    let mut outputs = Vec::new();
    if let Some(p) = &args.report_file {
        outputs.push(NamedPath::new("--report-file", p));
    }
    for t in traces {
        outputs.push(NamedPath::new("--trace", t));
    }
    if let SerialMode::File(p) = &cfg.serial {
        outputs.push(NamedPath::new("--serial file=", p));
    }
    let mut inputs = Vec::new();
    if let Some(k) = &args.kernel {
        inputs.push(NamedPath::new("--kernel", k));
    }
    if let Some(i) = &args.initrd {
        inputs.push(NamedPath::new("--initrd", i));
    }
    if let Some(d) = &cfg.platform.disk {
        inputs.push(NamedPath::new("--disk", &d.path));
    }
    (outputs, inputs)
}

/// What a command prints at its end, in order, once every file is written;
/// the status says whether printing failed.
struct Printer {
    out: CheckedWriter<std::io::Stdout>,
    err: CheckedWriter<std::io::Stderr>,
}

impl Printer {
    fn new() -> Self {
        Self {
            out: CheckedWriter::new(std::io::stdout()),
            err: CheckedWriter::new(std::io::stderr()),
        }
    }

    /// `exit::OUTPUT` when standard output or error failed, with a line
    /// on standard error when it still works.
    fn status(&mut self) -> u8 {
        let mut status = exit::PASS;
        if let Some(e) = self.out.error() {
            let msg = format!("stalewalk: error: cannot write standard output: {e}\n");
            self.err.put(&msg);
            status = exit::OUTPUT;
        }
        if self.err.error().is_some() {
            status = exit::OUTPUT;
        }
        status
    }
}

/// `stalewalk run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            error(e);
            return ExitCode::from(exit::USAGE);
        }
    };
    if let Err(e) = crate::vm::install_termination_handlers() {
        to_stderr(&format!("stalewalk: warning: {e}\n"));
    }
    let traces: Vec<PathBuf> = args.trace.path.iter().cloned().collect();
    let (outputs, inputs) = named_paths(args, &cfg, &traces);
    if let Err(e) = check_paths(&outputs, &inputs) {
        error(e);
        return ExitCode::from(exit::USAGE);
    }
    // Every output is created (under a temporary name) before the guest
    // starts; the serial file is created by the VM's set-up.
    let report_file = match open_report_file(args.report_file.as_deref()) {
        Ok(f) => f,
        Err(status) => return status,
    };
    let (hooks, trace) = match trace_hooks(args.trace.path.as_deref(), &args.trace.events, &cfg) {
        Ok(v) => v,
        Err((status, e)) => {
            error(e);
            return ExitCode::from(status);
        }
    };
    let mut progress = crate::progress::Progress::run(&cfg.serial);
    let r = run_with_report(&cfg, hooks);
    progress.finish();
    let mut status = guest_status(&r);
    // Files first: whatever happens to standard output or error later,
    // the trace and the report file are complete.
    status = exit::worst(status, finish_trace(trace, r.report.is_some()));
    let json = r.report.as_ref().map(RunReport::to_json);
    if let (Some(f), Some(json)) = (report_file, &json) {
        if let Err(e) = f.write_all_and_commit(format!("{json}\n").as_bytes()) {
            error(e);
            status = exit::worst(status, exit::OUTPUT);
        }
    }
    let mut p = Printer::new();
    if let Err(e) = &r.result {
        p.err.put(&format!("stalewalk: error: {e}\n"));
    }
    if let Some(e) = &r.serial.error {
        p.err.put(&format!(
            "stalewalk: error: writing the guest console output ({}): {e}; {} bytes lost\n",
            serial_target(&cfg.serial),
            r.serial.dropped_bytes
        ));
        status = exit::worst(status, exit::OUTPUT);
    } else if r.serial.dropped_bytes > 0 {
        p.err.put(&format!(
            "stalewalk: warning: {} bytes of guest console output dropped: its reader did not keep up\n",
            r.serial.dropped_bytes
        ));
    }
    if let Some(report) = &r.report {
        p.err.put(&report.to_text());
    }
    match (&r.report, args.report_format) {
        (Some(_), Some(ReportFormat::Json)) => {
            if let Some(json) = &json {
                p.out.put(&format!("{json}\n"));
            }
        }
        (Some(report), Some(ReportFormat::Junit)) => {
            p.out.put(&crate::junit::to_junit(&[(
                crate::junit::suite_name(report),
                report.into(),
            )]));
        }
        _ => {}
    }
    ExitCode::from(exit::worst(status, p.status()))
}

fn serial_target(mode: &SerialMode) -> String {
    match mode {
        SerialMode::Stdio => "standard output".to_string(),
        SerialMode::Stderr => "standard error".to_string(),
        SerialMode::File(p) => p.display().to_string(),
        SerialMode::Off | SerialMode::Capture(_) => "nowhere".to_string(),
    }
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

/// The shells `gen-docs` writes completion scripts for.
pub const COMPLETION_SHELLS: [clap_complete::Shell; 3] = [
    clap_complete::Shell::Bash,
    clap_complete::Shell::Zsh,
    clap_complete::Shell::Fish,
];

/// `stalewalk completions SHELL`: the script on standard output, generated
/// from the clap definitions.
pub fn completions(args: &crate::cli::CompletionsArgs) -> ExitCode {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "stalewalk", &mut script);
    let mut p = Printer::new();
    p.out.put(&String::from_utf8_lossy(&script));
    ExitCode::from(p.status())
}

/// `stalewalk gen-docs DIR`: man pages (`DIR/man1`) and completion scripts
/// (`DIR/completions`) for every shell in [`COMPLETION_SHELLS`], all
/// generated from the clap definitions.
pub fn gen_docs(args: &crate::cli::GenDocsArgs) -> ExitCode {
    use clap::CommandFactory;
    let man = args.dir.join("man1");
    let comp = args.dir.join("completions");
    let result = std::fs::create_dir_all(&man)
        .and_then(|()| std::fs::create_dir_all(&comp))
        .and_then(|()| clap_mangen::generate_to(crate::cli::Cli::command(), &man))
        .and_then(|()| {
            for shell in COMPLETION_SHELLS {
                let mut cmd = crate::cli::Cli::command();
                clap_complete::generate_to(shell, &mut cmd, "stalewalk", &comp)?;
            }
            Ok(())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error(format!("gen-docs {}: {e}", args.dir.display()));
            ExitCode::from(exit::OUTPUT)
        }
    }
}

/// `stalewalk replay`: the tools crate's scenario replay, with `--trace`.
pub fn replay(args: &ReplayArgs) -> ExitCode {
    let json = args.report == ReportFormat::Json;
    let mut named = vec![];
    if let Some(t) = &args.trace.path {
        named.push(NamedPath::new("--trace", t));
    }
    if let Err(e) = check_paths(&named, &[NamedPath::new("scenario", &args.file)]) {
        error(e);
        return ExitCode::from(exit::USAGE);
    }
    let writer = match open_trace(
        args.trace.path.as_deref(),
        &args.trace.events,
        TraceOptions::default(),
    ) {
        Ok(w) => w,
        Err((status, e)) => {
            error(e);
            return ExitCode::from(status);
        }
    };
    let sink = writer
        .as_ref()
        .map(|w| Box::new(w.writer.sink()) as Box<dyn viommu::EventSink>);
    let options = stalewalk_tools::replay::ReplayOptions {
        report_json: json,
        outcomes: args.outcomes,
    };
    let mut p = Printer::new();
    let started = std::time::Instant::now();
    let run = stalewalk_tools::replay::replay_file(&args.file, sink);
    let seconds = started.elapsed().as_secs_f64();
    let status = if args.report == ReportFormat::Junit {
        // Standard output holds the XML alone; the diagnostics still go to
        // standard error, and the exit status is the same.
        let status = stalewalk_tools::replay::print_replay(
            &args.file,
            options,
            &run,
            &mut std::io::sink(),
            &mut p.err,
        );
        let suite = replay_suite(&args.file, &run, seconds);
        p.out.put(&crate::junit::suites_to_junit(&[suite]));
        status
    } else {
        stalewalk_tools::replay::print_replay(&args.file, options, &run, &mut p.out, &mut p.err)
    };
    let status = exit::worst(status, finish_trace(writer, true));
    use std::io::Write as _;
    let _ = p.out.flush();
    ExitCode::from(exit::worst(status, p.status()))
}

/// The JUnit suite of a replay: a case per `expect` line (held, failed with
/// the keys that differed, or skipped after the line the replay stopped
/// at), a failed case for a command that could not be carried out, and one
/// failed case when the scenario could not be read, parsed or set up.
fn replay_suite(
    file: &Path,
    run: &stalewalk_tools::replay::ReplayRun,
    seconds: f64,
) -> crate::junit::Suite {
    use crate::junit::Case;
    use stalewalk_tools::replay::{ExpectStatus, ReplayError, expect_results};
    let mut cases: Vec<Case> = expect_results(run)
        .into_iter()
        .map(|e| {
            let keys: Vec<String> = e.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let name = format!("line {}: expect {}", e.line, keys.join(" "));
            match e.status {
                ExpectStatus::Held => Case::ran(name, None),
                ExpectStatus::Failed(m) => {
                    let each: Vec<String> = m.iter().map(ToString::to_string).collect();
                    Case::ran(name, Some(each.join("; ")))
                }
                ExpectStatus::NotRun { stopped_at } => Case {
                    name,
                    failure: None,
                    skipped: Some(format!("not run: the replay stopped at line {stopped_at}")),
                },
            }
        })
        .collect();
    match &run.result {
        Ok(_) | Err(ReplayError::Expect(_)) => {}
        Err(e @ ReplayError::Command { line, .. }) => {
            // In line order, before the expects that did not run.
            let at = cases
                .iter()
                .position(|c| c.skipped.is_some())
                .unwrap_or(cases.len());
            cases.insert(
                at,
                Case::ran(format!("line {line}: command"), Some(e.to_string())),
            );
        }
        Err(e) => cases.push(Case::ran("scenario".to_string(), Some(e.to_string()))),
    }
    if cases.is_empty() {
        // A scenario without expectations passes when it runs to its end.
        cases.push(Case::ran("replay".to_string(), None));
    }
    crate::junit::Suite {
        name: format!("stalewalk replay {}", file.display()),
        seconds,
        cases,
    }
}

/// A trace being written under a temporary name, renamed over its real
/// name when finished.
struct Trace {
    writer: TraceWriter,
    file: AtomicFile,
}

/// Creates the `--report-file` (under a temporary name, renamed when
/// complete), if one was given; an error is printed and comes back as the
/// exit status (an output that could not be written).
fn open_report_file(path: Option<&Path>) -> Result<Option<AtomicFile>, ExitCode> {
    path.map(|p| AtomicFile::create("--report-file", p))
        .transpose()
        .map_err(|e| {
            error(e);
            ExitCode::from(exit::OUTPUT)
        })
}

/// Opens the trace writer for `--trace PATH --trace-events KINDS` (none
/// without a path), on top of `base` options; errors name the flag and
/// come with their exit status.
fn open_trace(
    path: Option<&Path>,
    events: &str,
    base: TraceOptions,
) -> Result<Option<Trace>, (u8, String)> {
    let Some(path) = path else { return Ok(None) };
    let kinds: KindSet = events
        .parse()
        .map_err(|e| (exit::USAGE, format!("--trace-events {events:?}: {e}")))?;
    let options = TraceOptions {
        kinds,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..base
    };
    let file = AtomicFile::create("--trace", path).map_err(|e| (exit::OUTPUT, e.to_string()))?;
    let writer = TraceWriter::create(file.temp_path(), options)
        .map_err(|e| (exit::OUTPUT, format!("--trace {}: {e}", path.display())))?;
    Ok(Some(Trace { writer, file }))
}

/// Starts the trace writer for `--trace` and the hooks that feed it.
fn trace_hooks(
    path: Option<&Path>,
    events: &str,
    cfg: &VmConfig,
) -> Result<(RunHooks, Option<Trace>), (u8, String)> {
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
    let Some(trace) = open_trace(path, events, base)? else {
        return Ok((RunHooks::default(), None));
    };
    let sink = trace.writer.sink();
    let markers = trace.writer.sink();
    let hooks = RunHooks {
        events: Some(Box::new(sink)),
        serial_line: Some(Box::new(move |line: &str| markers.marker(line))),
    };
    Ok((hooks, Some(trace)))
}

/// Installs the trace-writer seccomp filter in the writer thread; a
/// filter that cannot be installed stops the VMM rather than run without.
fn seccomp_on_start(mode: SeccompMode) -> OnStart {
    OnStart(std::sync::Arc::new(move || {
        if let Err(e) = crate::seccomp::install(ThreadKind::TraceWriter, mode) {
            error(e);
            std::process::exit(i32::from(exit::VMM_ERROR));
        }
    }))
}

/// Finishes the trace (end record, flush) and, when `keep` (the guest
/// ran), renames it over its real name; without `keep` the temporary file
/// is removed and an earlier trace at that path stays as it was. 0 on
/// success, [`exit::OUTPUT`] with a message otherwise.
fn finish_trace(trace: Option<Trace>, keep: bool) -> u8 {
    let Some(Trace { writer, file }) = trace else {
        return exit::PASS;
    };
    match writer.finish() {
        Ok(totals) => {
            if totals.dropped_total() > 0 {
                to_stderr(&format!(
                    "stalewalk: trace: {} events dropped (queue full); the trace records the count\n",
                    totals.dropped_total()
                ));
            }
            drop(writer);
            if !keep {
                return exit::PASS;
            }
            match file.commit() {
                Ok(()) => exit::PASS,
                Err(e) => {
                    error(e);
                    exit::OUTPUT
                }
            }
        }
        Err(e) => {
            error(format!("trace: {e}"));
            exit::OUTPUT
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
        error("compare needs --scenario NAME (e.g. --scenario exploit)");
        return ExitCode::from(exit::USAGE);
    }
    if args.policies.is_empty() {
        error("--policies is empty: give e.g. sync,deferred,eager");
        return ExitCode::from(exit::USAGE);
    }
    for p in &args.policies {
        if !POLICIES.contains(&p.as_str()) {
            error(format!(
                "--policies: unknown policy {p:?} (known: sync, deferred, eager)"
            ));
            return ExitCode::from(exit::USAGE);
        }
    }
    let mut base = match args.run.to_config() {
        Ok(c) => c,
        Err(e) => {
            error(e);
            return ExitCode::from(exit::USAGE);
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
    if let Err(e) = crate::vm::install_termination_handlers() {
        to_stderr(&format!("stalewalk: warning: {e}\n"));
    }
    let traces: Vec<PathBuf> = match &args.run.trace.path {
        Some(t) => args.policies.iter().map(|p| policy_path(t, p)).collect(),
        None => Vec::new(),
    };
    let (outputs, inputs) = named_paths(&args.run, &base, &traces);
    if let Err(e) = check_paths(&outputs, &inputs) {
        error(e);
        return ExitCode::from(exit::USAGE);
    }
    let report_file = match open_report_file(args.run.report_file.as_deref()) {
        Ok(f) => f,
        Err(status) => return status,
    };
    let mut done: Vec<(String, RunReport)> = Vec::new();
    let mut status = exit::PASS;
    let mut progress = crate::progress::Progress::compare(args.policies.len(), &base.serial);
    for (i, p) in args.policies.iter().enumerate() {
        if let Some(sig) = crate::event_loop::termination_signal() {
            // A signal during the previous policy: keep what is done.
            status = exit::worst(status, exit::signal(sig));
            break;
        }
        let cfg = policy_config(&base, p);
        progress.policy(i, p);
        let trace_path = traces.get(i).map(PathBuf::as_path);
        let (hooks, trace) = match trace_hooks(trace_path, &args.run.trace.events, &cfg) {
            Ok(v) => v,
            Err((s, e)) => {
                error(e);
                status = exit::worst(status, s);
                break;
            }
        };
        let r = run_with_report(&cfg, hooks);
        status = exit::worst(status, finish_trace(trace, r.report.is_some()));
        if let Some(t) = trace_path {
            to_stderr(&format!(
                "stalewalk: compare: policy {p}: trace in {}\n",
                t.display()
            ));
        }
        match &r.result {
            Ok(o) if o.exit_status != 0 => to_stderr(&format!(
                "stalewalk: compare: policy {p}: the guest's scenario failed (exit status {})\n",
                o.exit_status
            )),
            Ok(_) => {}
            Err(e) => to_stderr(&format!("stalewalk: compare: policy {p}: error: {e}\n")),
        }
        status = exit::worst(status, guest_status(&r));
        match r.report {
            Some(rep) => done.push((p.clone(), rep)),
            None => break,
        }
    }
    progress.finish();
    let policies: Vec<String> = done.iter().map(|(p, _)| p.clone()).collect();
    let values: Vec<serde_json::Value> = done
        .iter()
        .map(|(_, r)| serde_json::to_value(r).unwrap_or(serde_json::Value::Null))
        .collect();
    let mut all = serde_json::Map::new();
    for (p, v) in policies.iter().zip(&values) {
        all.insert(p.clone(), v.clone());
    }
    let json = serde_json::to_string_pretty(&serde_json::Value::Object(all)).unwrap_or_default();
    // The file first (with every policy that finished), then the prints.
    if let Some(f) = report_file {
        if let Err(e) = f.write_all_and_commit(format!("{json}\n").as_bytes()) {
            error(e);
            status = exit::worst(status, exit::OUTPUT);
        }
    }
    let mut out = Printer::new();
    let table = format!(
        "== stalewalk compare: scenario {} ==\n{}",
        args.run.scenario.as_deref().unwrap_or("-"),
        compare_table(&policies, &values)
    );
    match args.run.report_format {
        // Standard output holds the JSON or XML alone.
        Some(ReportFormat::Json) => {
            out.err.put(&table);
            out.out.put(&format!("{json}\n"));
        }
        Some(ReportFormat::Junit) => {
            out.err.put(&table);
            let runs: Vec<(String, crate::junit::Outcome<'_>)> = done
                .iter()
                .map(|(_, r)| (crate::junit::suite_name(r), r.into()))
                .collect();
            out.out.put(&crate::junit::to_junit(&runs));
        }
        _ => out.out.put(&table),
    }
    ExitCode::from(exit::worst(status, out.status()))
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
