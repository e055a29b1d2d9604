//! `--report junit`: the end-of-run report(s) as JUnit XML, so any CI
//! engine can show a run as tests. One `<testsuite>` per run (per policy
//! under `compare`); in it one `<testcase>` per verdict (the guest's exit
//! status; its `verdict=` when it printed one) and per expectation (its
//! `expected=` against its `observed=`). A failed case carries a
//! `<failure>` whose message says what was seen.
//!
//! Not here: what the report holds (`report`).

use std::io::Write;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use std::collections::BTreeMap;

use crate::report::RunReport;

/// What JUnit reads from a run's report.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// The guest's status, when it ended the run.
    pub exit_status: Option<u8>,
    /// What ended the run.
    pub ended_by: &'a str,
    /// Wall time in milliseconds.
    pub elapsed_ms: f64,
    /// The guest's `key=value` results.
    pub values: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a RunReport> for Outcome<'a> {
    fn from(r: &'a RunReport) -> Self {
        Self {
            exit_status: r.exit_status,
            ended_by: &r.ended_by,
            elapsed_ms: r.elapsed_ms,
            values: &r.guest.values,
        }
    }
}

/// One test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Its name.
    pub name: String,
    /// `None` when it passed, else why it failed.
    pub failure: Option<String>,
}

/// The test cases of one run's report.
pub fn cases(report: &Outcome<'_>) -> Vec<Case> {
    let mut v = vec![Case {
        name: "exit status".to_string(),
        failure: match report.exit_status {
            Some(0) => None,
            Some(s) => Some(format!(
                "the guest exited with status {s} ({})",
                report.ended_by
            )),
            None => Some(format!(
                "the guest did not end the run: {}",
                report.ended_by
            )),
        },
    }];
    let values = report.values;
    if let Some(verdict) = values.get("verdict") {
        v.push(Case {
            name: "verdict".to_string(),
            failure: (verdict != "pass").then(|| format!("the guest's verdict is {verdict:?}")),
        });
    }
    if let (Some(expected), Some(observed)) = (values.get("expected"), values.get("observed")) {
        v.push(Case {
            name: format!("expectation: {expected}"),
            failure: (expected != observed)
                .then(|| format!("expected {expected:?}, observed {observed:?}")),
        });
    }
    v
}

/// Keeps what XML 1.0 can carry: control characters other than tab and
/// line ends are replaced (a guest prints what it likes).
fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// The JUnit XML for `runs`: (suite name, report) pairs.
pub fn to_junit(runs: &[(String, Outcome<'_>)]) -> String {
    let mut out = Vec::new();
    match write_junit(&mut out, runs) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        // Writing to a Vec cannot fail; keep the text well-formed anyway.
        Err(e) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"stalewalk\" errors=\"1\"><!-- {} --></testsuites>\n",
            xml_text(&e.to_string()).replace("--", "- -")
        ),
    }
}

fn write_junit(out: &mut Vec<u8>, runs: &[(String, Outcome<'_>)]) -> std::io::Result<()> {
    let all: Vec<(&String, &Outcome<'_>, Vec<Case>)> =
        runs.iter().map(|(n, r)| (n, r, cases(r))).collect();
    let total: usize = all.iter().map(|(_, _, c)| c.len()).sum();
    let failed: usize = all
        .iter()
        .map(|(_, _, c)| c.iter().filter(|c| c.failure.is_some()).count())
        .sum();
    let mut w = Writer::new_with_indent(&mut *out, b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let mut suites = BytesStart::new("testsuites");
    suites.push_attribute(("name", "stalewalk"));
    suites.push_attribute(("tests", total.to_string().as_str()));
    suites.push_attribute(("failures", failed.to_string().as_str()));
    w.write_event(Event::Start(suites))?;
    for (name, report, cases) in &all {
        let name = xml_text(name);
        let secs = format!("{:.3}", report.elapsed_ms / 1e3);
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", name.as_str()));
        suite.push_attribute(("tests", cases.len().to_string().as_str()));
        let f = cases.iter().filter(|c| c.failure.is_some()).count();
        suite.push_attribute(("failures", f.to_string().as_str()));
        suite.push_attribute(("time", secs.as_str()));
        w.write_event(Event::Start(suite))?;
        for c in cases {
            let mut tc = BytesStart::new("testcase");
            let case_name = xml_text(&c.name);
            tc.push_attribute(("classname", name.as_str()));
            tc.push_attribute(("name", case_name.as_str()));
            match &c.failure {
                None => w.write_event(Event::Empty(tc))?,
                Some(msg) => {
                    w.write_event(Event::Start(tc))?;
                    let msg = xml_text(msg);
                    let mut fail = BytesStart::new("failure");
                    fail.push_attribute(("message", msg.as_str()));
                    w.write_event(Event::Start(fail))?;
                    w.write_event(Event::Text(BytesText::new(&msg)))?;
                    w.write_event(Event::End(BytesEnd::new("failure")))?;
                    w.write_event(Event::End(BytesEnd::new("testcase")))?;
                }
            }
        }
        w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    out.write_all(b"\n")
}

/// The suite name of a run: `scenario X policy Y`.
pub fn suite_name(report: &RunReport) -> String {
    format!(
        "stalewalk run scenario {} policy {}",
        report.scenario.as_deref().unwrap_or("-"),
        report.policy.as_deref().unwrap_or("-")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::Reader;

    fn values(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn outcome(exit: Option<u8>, values: &BTreeMap<String, String>) -> Outcome<'_> {
        Outcome {
            exit_status: exit,
            ended_by: "DebugExit(0)",
            elapsed_ms: 12.0,
            values,
        }
    }

    /// Parses `xml`; returns (test cases, failures) and checks the
    /// document is well-formed.
    fn parse(xml: &str) -> (usize, usize) {
        let mut reader = Reader::from_str(xml);
        let (mut cases, mut failures) = (0, 0);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                    match e.name().as_ref() {
                        b"testcase" => cases += 1,
                        b"failure" => failures += 1,
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("not well-formed: {e}: {xml}"),
            }
        }
        (cases, failures)
    }

    #[test]
    fn one_case_per_verdict_and_expectation() {
        let pass = values(&[
            ("verdict", "pass"),
            ("expected", "leak"),
            ("observed", "leak"),
        ]);
        let fail = values(&[
            ("verdict", "fail"),
            ("expected", "leak"),
            ("observed", "none"),
        ]);
        let xml = to_junit(&[
            ("a".into(), outcome(Some(0), &pass)),
            ("b".into(), outcome(Some(1), &fail)),
        ]);
        assert_eq!(parse(&xml), (6, 3), "{xml}");
        assert!(
            xml.contains("expected &quot;leak&quot;, observed &quot;none&quot;"),
            "{xml}"
        );
    }

    #[test]
    fn reject_markup_and_control_characters_from_the_guest() {
        let v = values(&[("verdict", "<b>&\u{1b}[31m\"")]);
        let xml = to_junit(&[("x<y".into(), outcome(None, &v))]);
        assert_eq!(parse(&xml), (2, 2), "{xml}");
        assert!(!xml.contains('\u{1b}'));
    }
}
