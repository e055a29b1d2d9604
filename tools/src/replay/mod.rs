//! Scenario replay: a line-based language that drives the `viommu` model
//! through its real register and invalidation-queue interfaces, without a
//! guest. The language and the report are specified in `docs/SCENARIOS.md`.
//!
//! - [`parser`]: text to a checked [`Scenario`];
//! - [`tables`]: the harness area and the root/context/PASID tables;
//! - [`descriptors`]: invalidation descriptors as written into the queue;
//! - [`harness`]: guest memory, the unit, and the commands run against it;
//! - [`report`]: the counters as JSON and as a summary.
//!
//! This file holds the entry points: [`run`] for the library and
//! [`replay_command`] for `stalewalk replay FILE [--report json]`.

pub mod descriptors;
pub mod harness;
pub mod parser;
pub mod report;
pub mod tables;

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use thiserror::Error;

pub use harness::{AccessOutcome, HarnessError, Mismatch};
pub use parser::{ParseError, Scenario};
pub use report::Report;

impl Scenario {
    /// Parses and checks a scenario; `expect` keys are checked against the
    /// model's report keys.
    pub fn parse(text: &str) -> Result<Scenario, ParseError> {
        parser::parse_with(text, &report::is_report_key)
    }
}

/// Exit status: every line ran and every expectation held.
pub const EXIT_OK: u8 = 0;
/// Exit status: an `expect` line did not hold.
pub const EXIT_EXPECT_FAILED: u8 = 1;
/// Exit status: malformed scenario, unreadable file or harness failure.
pub const EXIT_BAD_SCENARIO: u8 = 2;

/// The outcome of one `dma` or `walk` line, as `--outcomes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineOutcome {
    /// 1-based line number.
    pub line: usize,
    /// `dma` or `walk`.
    pub command: &'static str,
    /// What the model answered.
    #[serde(flatten)]
    pub outcome: AccessOutcome,
}

/// What `stalewalk replay` prints besides diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// The report as JSON (`--report json`), else the summary.
    pub report_json: bool,
    /// List every `dma`/`walk` line's outcome (`--outcomes`).
    pub outcomes: bool,
}

/// A scenario that ran to its end with every expectation holding.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The counters at the end.
    pub report: Report,
    /// Every `dma` and `walk` line's outcome, in order.
    pub outcomes: Vec<LineOutcome>,
    /// Commands run.
    pub commands: usize,
    /// `expect` lines checked.
    pub expectations: usize,
}

/// An `expect` line that did not hold.
#[derive(Debug, Clone)]
pub struct ExpectFailure {
    /// 1-based line number.
    pub line: usize,
    /// Every key of the line that differed.
    pub mismatches: Vec<Mismatch>,
    /// The counters at that line.
    pub report: Report,
    /// The `dma` and `walk` outcomes up to that line.
    pub outcomes: Vec<LineOutcome>,
}

/// Why a replay did not succeed.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The scenario file could not be read.
    #[error("line 0: cannot read {path}: {reason}")]
    Read {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// The scenario is malformed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Setting up memory or the unit failed.
    #[error("line 0: cannot set up the harness: {0}")]
    Setup(HarnessError),
    /// A command could not be carried out.
    #[error("line {line}: {source}")]
    Command {
        /// 1-based line number.
        line: usize,
        /// What failed.
        source: HarnessError,
    },
    /// An expectation did not hold.
    #[error("line {}: expectation failed", .0.line)]
    Expect(Box<ExpectFailure>),
}

impl ReplayError {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            ReplayError::Expect(_) => EXIT_EXPECT_FAILED,
            _ => EXIT_BAD_SCENARIO,
        }
    }
}

/// Runs a parsed scenario on a fresh unit and guest memory.
pub fn run(scenario: &Scenario) -> Result<Outcome, ReplayError> {
    run_with_sink(scenario, None)
}

/// Like [`run`], with the unit's events sent to `sink` (a trace writer).
pub fn run_with_sink(
    scenario: &Scenario,
    sink: Option<Box<dyn viommu::EventSink>>,
) -> Result<Outcome, ReplayError> {
    let mut harness = harness::Harness::new(scenario).map_err(ReplayError::Setup)?;
    harness.set_event_sink(sink);
    let mut expectations = 0usize;
    let mut outcomes = Vec::new();
    for line in &scenario.lines {
        let step = harness
            .execute(&line.command)
            .map_err(|source| ReplayError::Command {
                line: line.number,
                source,
            })?;
        if let parser::Command::Expect(_) = line.command {
            expectations = expectations.saturating_add(1);
        }
        if let harness::Step::Translated(outcome) = step {
            let command = match line.command {
                parser::Command::Walk { .. } => "walk",
                _ => "dma",
            };
            outcomes.push(LineOutcome {
                line: line.number,
                command,
                outcome,
            });
        } else if let harness::Step::ExpectFailed(mismatches) = step {
            let report = harness.report().map_err(|source| ReplayError::Command {
                line: line.number,
                source,
            })?;
            return Err(ReplayError::Expect(Box::new(ExpectFailure {
                line: line.number,
                mismatches,
                report,
                outcomes,
            })));
        }
    }
    let report = harness.report().map_err(ReplayError::Setup)?;
    Ok(Outcome {
        report,
        outcomes,
        commands: scenario.lines.len(),
        expectations,
    })
}

/// Reads at most [`parser::MAX_SCENARIO_BYTES`] (+1, to detect larger files)
/// of a scenario file.
fn read_scenario(file: &Path) -> Result<String, ReplayError> {
    let read_error = |reason: String| ReplayError::Read {
        path: file.display().to_string(),
        reason,
    };
    let handle = std::fs::File::open(file).map_err(|e| read_error(e.to_string()))?;
    let limit = u64::try_from(parser::MAX_SCENARIO_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut bytes = Vec::new();
    handle
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(e.to_string()))?;
    // Invalid UTF-8 becomes U+FFFD: harmless in a comment, and otherwise a
    // parse error that names the line.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Replays `file`, printing the report to `out` and diagnostics to `err`;
/// returns the exit status (0, 1 or 2, see `docs/SCENARIOS.md`).
pub fn replay_to(file: &Path, report_json: bool, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    replay_to_with_sink(file, report_json, None, out, err)
}

/// Like [`replay_to`], with the unit's events sent to `sink`.
pub fn replay_to_with_sink(
    file: &Path,
    report_json: bool,
    sink: Option<Box<dyn viommu::EventSink>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let options = ReplayOptions {
        report_json,
        outcomes: false,
    };
    replay_to_with_options(file, options, sink, out, err)
}

/// A replay of a file: the scenario (when it parsed) and how the run went.
#[derive(Debug)]
pub struct ReplayRun {
    /// The parsed scenario; `None` when reading or parsing failed.
    pub scenario: Option<Scenario>,
    /// The outcome.
    pub result: Result<Outcome, ReplayError>,
}

/// Reads, parses and runs `file`, with the unit's events sent to `sink`.
pub fn replay_file(file: &Path, sink: Option<Box<dyn viommu::EventSink>>) -> ReplayRun {
    match read_scenario(file).and_then(|text| Scenario::parse(&text).map_err(ReplayError::from)) {
        Ok(scenario) => {
            let result = run_with_sink(&scenario, sink);
            ReplayRun {
                scenario: Some(scenario),
                result,
            }
        }
        Err(e) => ReplayRun {
            scenario: None,
            result: Err(e),
        },
    }
}

/// What became of one `expect` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectStatus {
    /// Every key held.
    Held,
    /// These keys differed.
    Failed(Vec<Mismatch>),
    /// The replay stopped before the line (at the given line).
    NotRun {
        /// The line the replay stopped at.
        stopped_at: usize,
    },
}

/// One `expect` line of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectResult {
    /// 1-based line number.
    pub line: usize,
    /// Its `key=value` pairs as written.
    pub pairs: Vec<(String, u64)>,
    /// What became of it.
    pub status: ExpectStatus,
}

/// Every `expect` line of `run`'s scenario with what became of it: all
/// held when the replay ran to its end; before the line the replay stopped
/// at they held, that line failed (an expectation) and the later ones did
/// not run. Empty when the scenario did not parse.
pub fn expect_results(run: &ReplayRun) -> Vec<ExpectResult> {
    let Some(scenario) = &run.scenario else {
        return Vec::new();
    };
    let stopped_at = match &run.result {
        Ok(_) => None,
        Err(ReplayError::Expect(f)) => Some(f.line),
        Err(ReplayError::Command { line, .. }) => Some(*line),
        // Setting up the harness failed: no line ran.
        Err(_) => Some(0),
    };
    scenario
        .lines
        .iter()
        .filter_map(|l| match &l.command {
            parser::Command::Expect(pairs) => Some((l.number, pairs)),
            _ => None,
        })
        .map(|(line, pairs)| {
            let status = match (stopped_at, &run.result) {
                (None, _) => ExpectStatus::Held,
                (Some(at), _) if line < at => ExpectStatus::Held,
                (Some(at), Err(ReplayError::Expect(f))) if line == at => {
                    ExpectStatus::Failed(f.mismatches.clone())
                }
                (Some(at), _) => ExpectStatus::NotRun { stopped_at: at },
            };
            ExpectResult {
                line,
                pairs: pairs.clone(),
                status,
            }
        })
        .collect()
}

/// Replays `file` as `options` ask, with the unit's events sent to `sink`;
/// returns the exit status.
pub fn replay_to_with_options(
    file: &Path,
    options: ReplayOptions,
    sink: Option<Box<dyn viommu::EventSink>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let run = replay_file(file, sink);
    print_replay(file, options, &run, out, err)
}

/// Prints what `run` of `file` found as `options` ask: the report on `out`,
/// diagnostics (failed expectations, errors) on `err`; returns the exit
/// status.
pub fn print_replay(
    file: &Path,
    options: ReplayOptions,
    run: &ReplayRun,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = &run.result;
    let print_report = |out: &mut dyn Write, report: &Report, outcomes: &[LineOutcome]| {
        let outcomes = options.outcomes.then_some(outcomes);
        let text = if options.report_json {
            report.to_json_string_with(outcomes)
        } else {
            let mut text = report.human();
            for o in outcomes.into_iter().flatten() {
                text.push_str(&report::human_outcome(o));
                text.push('\n');
            }
            text
        };
        // A closed stdout is no reason to change the exit status.
        let _ = writeln!(out, "{}", text.trim_end());
    };
    match result {
        Ok(outcome) => {
            print_report(out, &outcome.report, &outcome.outcomes);
            EXIT_OK
        }
        Err(ReplayError::Expect(failure)) => {
            for m in &failure.mismatches {
                let _ = writeln!(err, "{}: line {}: expect {m}", file.display(), failure.line);
            }
            print_report(out, &failure.report, &failure.outcomes);
            EXIT_EXPECT_FAILED
        }
        Err(other) => {
            let _ = writeln!(err, "{}: {other}", file.display());
            other.exit_status()
        }
    }
}

/// `stalewalk replay FILE [--report json]`: replays `file`, prints the report
/// on stdout (JSON with `report_json`) and diagnostics on stderr.
pub fn replay_command(file: &Path, report_json: bool) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let status = replay_to(file, report_json, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Page-table pages random scenarios use (inside the 1 MiB a `mem=2M`
    /// scenario owns).
    fn page() -> impl Strategy<Value = u64> {
        (1u64..16).prop_map(|p| p << 12)
    }

    /// Addresses that hit the random tables often, and anything else.
    fn address() -> impl Strategy<Value = u64> {
        prop_oneof![
            (0u64..0x40_0000).prop_map(|a| a & !0xfff),
            (0u64..16).prop_map(|i| 0xffff_8880_0000_0000 | (i << 21)),
            any::<u64>(),
        ]
    }

    /// Entry values: links to the random pages with random flags, or noise.
    fn entry() -> impl Strategy<Value = u64> {
        prop_oneof![
            (page(), 0u64..0x100).prop_map(|(p, flags)| p | flags),
            any::<u64>(),
            Just(0u64),
        ]
    }

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            (page(), 0u64..512, entry()).prop_map(|(p, i, v)| format!("table {p:#x} {i} {v:#x}")),
            (0u32..4, page(), 0u8..2, 0u8..2).prop_map(|(pasid, p, sre, rid)| format!(
                "bind pasid={pasid} pgd={p:#x} sre={sre} rid=00:0{}.0",
                4 + rid
            )),
            (
                0u32..4,
                address(),
                prop::sample::select(vec!["r", "w", "x"]),
                0u8..2
            )
                .prop_map(|(pasid, a, access, privileged)| format!(
                    "dma pasid={pasid} addr={a:#x} access={access} priv={privileged}"
                )),
            (0u32..4, address()).prop_map(|(pasid, a)| format!("walk pasid={pasid} addr={a:#x}")),
            (0u32..4, address(), 0u8..53, 0u8..2).prop_map(|(pasid, a, am, ih)| format!(
                "inv piotlb pasid={pasid} addr={:#x} am={am} ih={ih}",
                a & !0xfff
            )),
            (0u32..4).prop_map(|pasid| format!("inv piotlb pasid={pasid} all")),
            (0u32..4).prop_map(|pasid| format!("inv pasid-cache pasid={pasid}")),
            Just("inv iotlb global".to_string()),
            Just("inv iotlb did=1".to_string()),
            Just("inv context global".to_string()),
            Just("inv devtlb pasid=1 size=all".to_string()),
            Just("wait".to_string()),
            page().prop_map(|p| format!("free {p:#x}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random well-formed scenarios over random tables run to the end:
        /// the harness never panics and never sees the model misbehave.
        #[test]
        fn random_scenarios_run(
            levels in 4u8..6,
            cache in prop::sample::select(vec!["adversarial", "lru:2", "none"]),
            lines in proptest::collection::vec(line(), 0..40),
        ) {
            let text = format!(
                "config mem=2M levels={levels} cache={cache}\n{}\nexpect translations=0\n",
                lines.join("\n")
            );
            let scenario = Scenario::parse(&text).unwrap();
            let dmas = lines.iter().filter(|l| l.starts_with("dma ")).count() as u64;
            match run(&scenario) {
                Err(ReplayError::Expect(failure)) => {
                    prop_assert_eq!(failure.report.get("translations"), Some(dmas));
                }
                Ok(outcome) => prop_assert_eq!(dmas, 0, "{:?}", outcome),
                Err(other) => prop_assert!(false, "{}", other),
            }
        }

        /// Arbitrary text never panics the parser or the run.
        #[test]
        fn random_text_never_panics(text in "(?s).{0,300}") {
            if let Ok(scenario) = Scenario::parse(&text) {
                let _ = run(&scenario);
            }
        }
    }
}
