//! The `stalewalk trace` subcommands, as a clap [`Subcommand`] the
//! `stalewalk` CLI embeds, and [`trace_command`] that runs one.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::KindSet;
use super::export::export_chrome;
use super::grep::{Filter, grep, parse_range};
use super::plot::plot;
use super::qemu::import_qemu;
use super::reader::ReadOptions;
use super::summary::{diff, diff_human, summarize};

/// `stalewalk trace ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TraceCommand {
    /// Counts by type, granularity, IH, PASID and device; stale walks by
    /// class (the first few in full); the busiest address ranges.
    Summary {
        /// The trace file.
        trace: PathBuf,
        /// Print JSON (the summary, plus `counters` shaped like the report).
        #[arg(long)]
        json: bool,
        /// Read a trace without an end record up to its last complete line.
        #[arg(long)]
        allow_truncated: bool,
    },
    /// The summary counters of two traces side by side, with deltas (B - A).
    Diff {
        /// Trace A.
        a: PathBuf,
        /// Trace B.
        b: PathBuf,
        /// Print JSON rows.
        #[arg(long)]
        json: bool,
        /// Read traces without an end record up to their last complete line.
        #[arg(long)]
        allow_truncated: bool,
    },
    /// An SVG timeline: invalidations by type over time, stale walks and
    /// faults as markers, guest serial lines as labels.
    Plot {
        /// The trace file.
        trace: PathBuf,
        /// Output SVG file.
        #[arg(short, long)]
        output: PathBuf,
        /// Read a trace without an end record up to its last complete line.
        #[arg(long)]
        allow_truncated: bool,
    },
    /// Export to the Chrome trace event format (Perfetto UI, chrome://tracing).
    Export {
        /// Chrome trace event format (the only export format).
        #[arg(long, required = true)]
        chrome: bool,
        /// The trace file.
        trace: PathBuf,
        /// Output JSON file.
        #[arg(short, long)]
        output: PathBuf,
        /// Read a trace without an end record up to its last complete line.
        #[arg(long)]
        allow_truncated: bool,
    },
    /// Convert a QEMU intel-iommu trace log (QEMU run with -trace
    /// 'vtd_inv_*' -trace vtd_dmar_fault -trace vtd_frr_new -D LOG) into a
    /// stalewalk trace of its invalidation descriptors and faults, decoded
    /// by the model's own decoder, for `trace diff` against a stalewalk
    /// run of the same guest (docs/QEMU-COMPARE.md).
    ImportQemu {
        /// QEMU's trace log (the -D file).
        log: PathBuf,
        /// The stalewalk trace to write.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print the records (JSON lines) matching every filter given.
    Grep {
        /// The trace file.
        trace: PathBuf,
        /// Only records about this PASID.
        #[arg(long)]
        pasid: Option<u32>,
        /// Only records touching this address or inclusive range
        /// (0xADDR or 0xFIRST-0xLAST; invalidations that are not
        /// page-selective touch every address).
        #[arg(long)]
        addr: Option<String>,
        /// Only these kinds (comma-separated: inv,walk,fault,prq,stale,hint,serial).
        #[arg(long)]
        kind: Option<String>,
        /// Read a trace without an end record up to its last complete line.
        #[arg(long)]
        allow_truncated: bool,
    },
}

fn opts(allow_truncated: bool) -> ReadOptions {
    ReadOptions { allow_truncated }
}

fn warn_truncated(err: &mut dyn Write, what: &std::path::Path, line: Option<usize>) {
    if let Some(line) = line {
        let _ = writeln!(
            err,
            "warning: {}: trace is truncated after line {line} (no end record); results cover lines up to {line}",
            what.display()
        );
    }
}

/// Refuses an output path that names the input file (directly, through a
/// link or another spelling): writing it would destroy the trace before or
/// while it is read.
fn distinct_output(input: &std::path::Path, output: &std::path::Path) -> Result<(), String> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => input == output,
    };
    if same {
        Err(format!(
            "output {} is the input trace; choose another output path",
            output.display()
        ))
    } else {
        Ok(())
    }
}

/// Runs `cmd`, writing results to `out` and problems to `err`; returns the
/// exit status (0 ok, 1 error).
pub fn run(cmd: TraceCommand, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result: Result<(), String> = match cmd {
        TraceCommand::Summary {
            trace,
            json,
            allow_truncated,
        } => summarize(&trace, opts(allow_truncated))
            .map_err(|e| e.to_string())
            .and_then(|s| {
                warn_truncated(err, &trace, s.truncated_after_line);
                let text = if json {
                    let mut v = serde_json::to_value(&s).map_err(|e| e.to_string())?;
                    if let Some(m) = v.as_object_mut() {
                        m.insert("counters".into(), s.counters());
                    }
                    format!("{v:#}\n")
                } else {
                    s.human()
                };
                out.write_all(text.as_bytes()).map_err(|e| e.to_string())
            }),
        TraceCommand::Diff {
            a,
            b,
            json,
            allow_truncated,
        } => (|| {
            let sa = summarize(&a, opts(allow_truncated)).map_err(|e| e.to_string())?;
            let sb = summarize(&b, opts(allow_truncated)).map_err(|e| e.to_string())?;
            warn_truncated(err, &a, sa.truncated_after_line);
            warn_truncated(err, &b, sb.truncated_after_line);
            let rows = diff(&sa, &sb);
            let text = if json {
                format!(
                    "{:#}\n",
                    serde_json::to_value(&rows).map_err(|e| e.to_string())?
                )
            } else {
                diff_human(&rows, &a.display().to_string(), &b.display().to_string())
            };
            out.write_all(text.as_bytes()).map_err(|e| e.to_string())
        })(),
        TraceCommand::Plot {
            trace,
            output,
            allow_truncated,
        } => distinct_output(&trace, &output)
            .and_then(|()| plot(&trace, &output, opts(allow_truncated)).map_err(|e| e.to_string()))
            .map(|tl| {
                warn_truncated(err, &trace, tl.truncated_after);
                let _ = writeln!(out, "wrote {}", output.display());
            }),
        TraceCommand::Export {
            chrome: _,
            trace,
            output,
            allow_truncated,
        } => distinct_output(&trace, &output)
            .and_then(|()| {
                export_chrome(&trace, &output, opts(allow_truncated)).map_err(|e| e.to_string())
            })
            .map(|(n, truncated)| {
                warn_truncated(err, &trace, truncated);
                let _ = writeln!(out, "wrote {} ({n} trace events)", output.display());
            }),
        TraceCommand::ImportQemu { log, output } => distinct_output(&log, &output)
            .and_then(|()| {
                let command = format!(
                    "stalewalk trace import-qemu {} -o {}",
                    log.display(),
                    output.display()
                );
                import_qemu(&log, &output, &command).map_err(|e| e.to_string())
            })
            .map(|s| {
                let _ = writeln!(
                    out,
                    "wrote {}: {} descriptors, {} faults ({} recorded)",
                    output.display(),
                    s.descriptors,
                    s.faults,
                    s.faults_recorded
                );
                if !s.untraced.is_empty() {
                    let _ = writeln!(
                        out,
                        "untraced {}: slots QEMU fetched without a vtd_inv_desc event \
                         (QEMU 10 handles PASID-cache descriptors without one): {:?}",
                        s.untraced.len(),
                        s.untraced
                    );
                }
            }),
        TraceCommand::Grep {
            trace,
            pasid,
            addr,
            kind,
            allow_truncated,
        } => (|| {
            let range = addr
                .as_deref()
                .map(parse_range)
                .transpose()
                .map_err(|e| e.to_string())?;
            let kinds = kind
                .as_deref()
                .map(str::parse::<KindSet>)
                .transpose()
                .map_err(|e| e.to_string())?;
            let filter = Filter {
                pasid: pasid.map(u64::from),
                range,
                kinds,
            };
            let (_, truncated) =
                grep(&trace, &filter, opts(allow_truncated), out).map_err(|e| e.to_string())?;
            warn_truncated(err, &trace, truncated);
            Ok(())
        })(),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "stalewalk trace: {e}");
            1
        }
    }
}

/// Runs `cmd` on stdout and stderr (for the `stalewalk trace` CLI).
pub fn trace_command(cmd: TraceCommand) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(run(cmd, &mut stdout.lock(), &mut stderr.lock()))
}
