//! `--report junit`: the end-of-run report(s) as JUnit XML, so any CI
//! engine can show a run as tests. One `<testsuite>` per run (per policy
//! under `compare`); in it one `<testcase>` per verdict (the guest's exit
//! status; its `verdict=` when it printed one) and per expectation (its
//! `expected=` against its `observed=`). A failed case carries a
//! `<failure>` whose message says what was seen. `replay --report junit`:
//! one suite for the scenario file, a case per `expect` line ([`Suite`]).
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
    /// Why it did not run (`<skipped>`), when it did not.
    pub skipped: Option<String>,
}

impl Case {
    /// A case that ran: passed when `failure` is `None`.
    pub fn ran(name: String, failure: Option<String>) -> Self {
        Case {
            name,
            failure,
            skipped: None,
        }
    }

    /// Skipped: it did not run (and so did not fail).
    fn is_skipped(&self) -> bool {
        self.failure.is_none() && self.skipped.is_some()
    }
}

/// One test suite: a run, or a replayed scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// Its name.
    pub name: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Its cases.
    pub cases: Vec<Case>,
}

impl Suite {
    /// Its (failed, skipped) case counts.
    fn counts(&self) -> (usize, usize) {
        let failed = self.cases.iter().filter(|c| c.failure.is_some()).count();
        let skipped = self.cases.iter().filter(|c| c.is_skipped()).count();
        (failed, skipped)
    }
}

/// The test cases of one run's report.
pub fn cases(report: &Outcome<'_>) -> Vec<Case> {
    let mut v = vec![Case::ran(
        "exit status".to_string(),
        match report.exit_status {
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
    )];
    let values = report.values;
    if let Some(verdict) = values.get("verdict") {
        v.push(Case::ran(
            "verdict".to_string(),
            (verdict != "pass").then(|| format!("the guest's verdict is {verdict:?}")),
        ));
    }
    if let (Some(expected), Some(observed)) = (values.get("expected"), values.get("observed")) {
        v.push(Case::ran(
            format!("expectation: {expected}"),
            (expected != observed).then(|| format!("expected {expected:?}, observed {observed:?}")),
        ));
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
    let suites: Vec<Suite> = runs
        .iter()
        .map(|(name, r)| Suite {
            name: name.clone(),
            seconds: r.elapsed_ms / 1e3,
            cases: cases(r),
        })
        .collect();
    suites_to_junit(&suites)
}

/// The JUnit XML for `suites`.
pub fn suites_to_junit(suites: &[Suite]) -> String {
    let mut out = Vec::new();
    match write_junit(&mut out, suites) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        // Writing to a Vec cannot fail; keep the text well-formed anyway.
        Err(e) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"stalewalk\" errors=\"1\"><!-- {} --></testsuites>\n",
            xml_text(&e.to_string()).replace("--", "- -")
        ),
    }
}

fn write_junit(out: &mut Vec<u8>, suites: &[Suite]) -> std::io::Result<()> {
    let total: usize = suites.iter().map(|s| s.cases.len()).sum();
    let (failed, skipped) = suites
        .iter()
        .map(Suite::counts)
        .fold((0, 0), |(f, k), (a, b)| (f + a, k + b));
    let mut w = Writer::new_with_indent(&mut *out, b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let mut top = BytesStart::new("testsuites");
    top.push_attribute(("name", "stalewalk"));
    top.push_attribute(("tests", total.to_string().as_str()));
    top.push_attribute(("failures", failed.to_string().as_str()));
    top.push_attribute(("skipped", skipped.to_string().as_str()));
    w.write_event(Event::Start(top))?;
    for s in suites {
        let (name, cases) = (xml_text(&s.name), &s.cases);
        let secs = format!("{:.3}", s.seconds);
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", name.as_str()));
        suite.push_attribute(("tests", cases.len().to_string().as_str()));
        let (f, k) = s.counts();
        suite.push_attribute(("failures", f.to_string().as_str()));
        suite.push_attribute(("skipped", k.to_string().as_str()));
        suite.push_attribute(("time", secs.as_str()));
        w.write_event(Event::Start(suite))?;
        for c in cases {
            let mut tc = BytesStart::new("testcase");
            let case_name = xml_text(&c.name);
            tc.push_attribute(("classname", name.as_str()));
            tc.push_attribute(("name", case_name.as_str()));
            match (&c.failure, &c.skipped) {
                (None, None) => w.write_event(Event::Empty(tc))?,
                (None, Some(why)) => {
                    w.write_event(Event::Start(tc))?;
                    let why = xml_text(why);
                    let mut skip = BytesStart::new("skipped");
                    skip.push_attribute(("message", why.as_str()));
                    w.write_event(Event::Empty(skip))?;
                    w.write_event(Event::End(BytesEnd::new("testcase")))?;
                }
                (Some(msg), _) => {
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
