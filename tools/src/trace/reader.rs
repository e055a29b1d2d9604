//! Reading a trace back: the header (format name and version checks), then
//! one [`Record`] per line, validated as it is read (sequence numbers,
//! required fields, the `end` record's totals), with errors that name the
//! line. A trace without an `end` record was cut short (a crash, a full
//! disk): readers refuse it unless told to accept truncation, and then stop
//! at the last complete line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{FORMAT_NAME, Kind, VERSION_MAJOR, VERSION_MINOR};

/// Longest line accepted, in bytes. Real records are a few hundred bytes
/// (markers are cut to 1 KiB by the writer); a corrupted file without line
/// ends must not make the reader buffer it whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Errors reading a trace.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read trace {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{path} is empty, not a stalewalk trace")]
    Empty {
        /// The file.
        path: String,
    },
    /// The first line is not a stalewalk trace header.
    #[error("{path} is not a stalewalk trace (line 1: {reason})")]
    NotATrace {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The trace has a major version this reader does not know.
    #[error(
        "{path}: trace format version {found} is newer than this reader supports ({VERSION_MAJOR}.x); \
         use a newer stalewalk to read it"
    )]
    NewerVersion {
        /// The file.
        path: String,
        /// The version in the header.
        found: String,
    },
    /// The trace ends without an `end` record.
    #[error(
        "{path}: trace is truncated after line {line} (no end record); \
         pass --allow-truncated to read it up to there"
    )]
    Truncated {
        /// The file.
        path: String,
        /// The last complete line.
        line: usize,
    },
    /// A line is not a valid record.
    #[error("{path}: line {line} is corrupted: {reason}")]
    Corrupted {
        /// The file.
        path: String,
        /// The line (1-based).
        line: usize,
        /// What was wrong.
        reason: String,
    },
}

/// How to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Accept a trace without an `end` record (stop at its last complete
    /// line) instead of failing with [`ReadError::Truncated`].
    pub allow_truncated: bool,
}

/// The header line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// `MAJOR.MINOR`.
    pub version: String,
    /// RFC 3339 UTC creation time.
    #[serde(default)]
    pub created: String,
    /// Version of the stalewalk that wrote it.
    #[serde(default)]
    pub tool_version: String,
    /// Command line of the run.
    #[serde(default)]
    pub command: String,
    /// Kinds recorded.
    #[serde(default)]
    pub events: Vec<String>,
    /// Lowest kernel-half address of the unit (KVA invalidations).
    #[serde(default = "default_kernel_half")]
    pub kernel_half_start: u64,
}

fn default_kernel_half() -> u64 {
    viommu::Levels::Four.kernel_half_start()
}

/// The `end` record's totals.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct End {
    /// Records after the header, this one included.
    pub records: u64,
    /// Event records per kind name.
    pub events: std::collections::BTreeMap<String, u64>,
    /// Events dropped in all.
    pub dropped: u64,
    /// Events dropped per kind name.
    #[serde(default)]
    pub dropped_by_kind: std::collections::BTreeMap<String, u64>,
}

/// What a record carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A `viommu` event (`data` is its JSON, tagged by `event`).
    Event {
        /// inv, walk, fault, prq, stale or hint.
        kind: Kind,
        /// The event.
        data: Value,
    },
    /// A guest serial line.
    Serial {
        /// The line.
        text: String,
    },
    /// Events the writer dropped since the previous `dropped` record.
    Dropped {
        /// Dropped since the previous record.
        count: u64,
        /// Dropped since the start.
        total: u64,
    },
    /// The final record.
    End(End),
    /// A kind added by a newer minor version (skipped by the tools).
    Unknown {
        /// Its kind name.
        kind: String,
    },
}

/// One record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Line in the file (1-based; the header is line 1).
    pub line: usize,
    /// Global sequence number (1 for the first record).
    pub seq: u64,
    /// Nanoseconds since the trace started.
    pub t_ns: u64,
    /// The payload.
    pub body: Body,
    /// The line as read (for `grep`).
    pub raw: String,
}

impl Record {
    /// The record's kind, `None` for an unknown kind.
    pub fn kind(&self) -> Option<Kind> {
        match &self.body {
            Body::Event { kind, .. } => Some(*kind),
            Body::Serial { .. } => Some(Kind::Serial),
            Body::Dropped { .. } => Some(Kind::Dropped),
            Body::End(_) => Some(Kind::End),
            Body::Unknown { .. } => None,
        }
    }
}

#[derive(Deserialize)]
struct RawRecord {
    seq: u64,
    t_ns: u64,
    kind: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    total: Option<u64>,
}

/// A trace being read: [`TraceReader::header`], then the records as an
/// iterator. The iterator ends after the `end` record; a problem is one
/// `Err` item, after which it ends.
#[derive(Debug)]
pub struct TraceReader<R> {
    path: String,
    input: R,
    header: Header,
    minor: u32,
    options: ReadOptions,
    line: usize,
    next_seq: u64,
    events: [u64; 7],
    dropped: u64,
    done: bool,
    truncated_after: Option<usize>,
    buf: Vec<u8>,
}

/// Opens the trace at `path` and reads its header.
pub fn open(path: &Path, options: ReadOptions) -> Result<TraceReader<BufReader<File>>, ReadError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: name.clone(),
        source,
    })?;
    TraceReader::new(BufReader::new(file), name, options)
}

/// Reads a whole trace into memory (small traces, tests).
pub fn read_all(path: &Path, options: ReadOptions) -> Result<(Header, Vec<Record>), ReadError> {
    let mut reader = open(path, options)?;
    let records = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok((reader.header.clone(), records))
}

enum Line {
    /// A complete line (without its newline).
    Complete(String),
    /// Bytes without a final newline at the end of the file.
    Partial(String),
    Eof,
}

impl<R: BufRead> TraceReader<R> {
    /// Reads the header from `input`; `path` names it in errors.
    pub fn new(input: R, path: String, options: ReadOptions) -> Result<TraceReader<R>, ReadError> {
        let mut r = TraceReader {
            path,
            input,
            header: Header {
                format: String::new(),
                version: String::new(),
                created: String::new(),
                tool_version: String::new(),
                command: String::new(),
                events: Vec::new(),
                kernel_half_start: default_kernel_half(),
            },
            minor: 0,
            options,
            line: 0,
            next_seq: 1,
            events: [0; 7],
            dropped: 0,
            done: false,
            truncated_after: None,
            buf: Vec::new(),
        };
        let text = match r.read_line()? {
            Line::Eof => return Err(ReadError::Empty { path: r.path }),
            Line::Complete(t) | Line::Partial(t) => t,
        };
        let (header, minor) = r.parse_header(&text)?;
        r.header = header;
        r.minor = minor;
        Ok(r)
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// With `allow_truncated`, the last complete line of a trace that had no
    /// `end` record (known once the iterator has ended).
    pub fn truncated_after(&self) -> Option<usize> {
        self.truncated_after
    }

    fn parse_header(&self, text: &str) -> Result<(Header, u32), ReadError> {
        let not_a_trace = |reason: String| ReadError::NotATrace {
            path: self.path.clone(),
            reason,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| not_a_trace(format!("not JSON: {e}")))?;
        if value.get("format").and_then(Value::as_str) != Some(FORMAT_NAME) {
            return Err(not_a_trace(format!(
                "no \"format\": \"{FORMAT_NAME}\" field"
            )));
        }
        let version = value.get("version").and_then(Value::as_str).unwrap_or("");
        let (major, minor) = version
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .ok_or_else(|| not_a_trace(format!("version {version:?} is not MAJOR.MINOR")))?;
        if major > VERSION_MAJOR {
            return Err(ReadError::NewerVersion {
                path: self.path.clone(),
                found: version.to_string(),
            });
        }
        if major < VERSION_MAJOR {
            return Err(not_a_trace(format!(
                "version {version} predates format 1.0"
            )));
        }
        let header: Header =
            serde_json::from_value(value).map_err(|e| not_a_trace(e.to_string()))?;
        Ok((header, minor))
    }

    fn read_line(&mut self) -> Result<Line, ReadError> {
        self.buf.clear();
        let limit = u64::try_from(MAX_LINE_BYTES)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let n = (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| ReadError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(Line::Eof);
        }
        self.line += 1;
        let complete = self.buf.last() == Some(&b'\n');
        if !complete && self.buf.len() > MAX_LINE_BYTES {
            return Err(self.corrupted(format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        if complete {
            self.buf.pop();
        }
        let text = match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(t) => t,
            Err(_) if !complete => String::new(),
            Err(_) => return Err(self.corrupted("not UTF-8".to_string())),
        };
        Ok(if complete {
            Line::Complete(text)
        } else {
            Line::Partial(text)
        })
    }

    fn corrupted(&self, reason: String) -> ReadError {
        ReadError::Corrupted {
            path: self.path.clone(),
            line: self.line,
            reason,
        }
    }

    fn parse_record(&mut self, text: String) -> Result<Record, ReadError> {
        let raw: RawRecord =
            serde_json::from_str(&text).map_err(|e| self.corrupted(e.to_string()))?;
        if raw.seq != self.next_seq {
            return Err(self.corrupted(format!(
                "sequence number {} where {} was expected (records missing or out of order)",
                raw.seq, self.next_seq
            )));
        }
        let body = match raw.kind.parse::<Kind>() {
            Ok(Kind::Serial) => {
                let text = raw
                    .text
                    .ok_or_else(|| self.corrupted("serial record without \"text\"".into()))?;
                self.events[6] += 1;
                Body::Serial { text }
            }
            Ok(Kind::Dropped) => {
                let (Some(count), Some(total)) = (raw.count, raw.total) else {
                    return Err(
                        self.corrupted("dropped record without \"count\" and \"total\"".into())
                    );
                };
                self.dropped = self.dropped.saturating_add(count);
                if total != self.dropped {
                    return Err(self.corrupted(format!(
                        "dropped total {total} but the dropped records add up to {}",
                        self.dropped
                    )));
                }
                Body::Dropped { count, total }
            }
            Ok(Kind::End) => {
                let end: End = serde_json::from_str(&text)
                    .map_err(|e| self.corrupted(format!("end record: {e}")))?;
                self.check_end(&end, raw.seq)?;
                Body::End(end)
            }
            Ok(kind) => {
                let data = raw.data.filter(Value::is_object).ok_or_else(|| {
                    self.corrupted(format!("{kind} record without a \"data\" object"))
                })?;
                let Some(tag) = data.get("event").and_then(Value::as_str) else {
                    return Err(self.corrupted("event data without an \"event\" tag".into()));
                };
                check_event(kind, tag, &data).map_err(|reason| self.corrupted(reason))?;
                if let Some(i) = kind.index() {
                    self.events[i] += 1;
                }
                Body::Event { kind, data }
            }
            Err(_) if self.minor > VERSION_MINOR => Body::Unknown { kind: raw.kind },
            Err(e) => return Err(self.corrupted(e.to_string())),
        };
        self.next_seq += 1;
        Ok(Record {
            line: self.line,
            seq: raw.seq,
            t_ns: raw.t_ns,
            body,
            raw: text,
        })
    }

    fn check_end(&self, end: &End, seq: u64) -> Result<(), ReadError> {
        if end.records != seq {
            return Err(self.corrupted(format!(
                "end record counts {} records but the trace holds {seq}",
                end.records
            )));
        }
        for (i, kind) in Kind::FILTERABLE.iter().enumerate() {
            let said = end.events.get(kind.as_str()).copied().unwrap_or(0);
            if said != self.events[i] {
                return Err(self.corrupted(format!(
                    "end record counts {said} {kind} events but the trace holds {}",
                    self.events[i]
                )));
            }
        }
        if end.dropped != self.dropped {
            return Err(self.corrupted(format!(
                "end record counts {} dropped events but the dropped records add up to {}",
                end.dropped, self.dropped
            )));
        }
        Ok(())
    }

    fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        let last_complete = self.line;
        match self.read_line()? {
            Line::Eof => {
                self.truncated(last_complete)?;
                Ok(None)
            }
            Line::Partial(text) => {
                // The writer always ends a line; a partial last line is a
                // write cut short, unless it is a whole end record.
                match self.parse_record(text) {
                    Ok(r) if matches!(r.body, Body::End(_)) => Ok(Some(r)),
                    _ => {
                        self.truncated(last_complete)?;
                        Ok(None)
                    }
                }
            }
            Line::Complete(text) => self.parse_record(text).map(Some),
        }
    }

    fn truncated(&mut self, line: usize) -> Result<(), ReadError> {
        if self.options.allow_truncated {
            self.truncated_after = Some(line);
            Ok(())
        } else {
            Err(ReadError::Truncated {
                path: self.path.clone(),
                line,
            })
        }
    }
}

/// The JSON type a field must have.
#[derive(Clone, Copy)]
enum Field {
    /// An unsigned integer.
    U64,
    /// An unsigned integer or `null`.
    OptU64,
    /// `true` or `false`.
    Bool,
    /// An object.
    Object,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

impl Field {
    fn holds(self, v: &Value) -> bool {
        match self {
            Field::U64 => v.is_u64(),
            Field::OptU64 => v.is_u64() || v.is_null(),
            Field::Bool => v.is_boolean(),
            Field::Object => v.is_object(),
            Field::OneOf(names) => v.as_str().is_some_and(|s| names.contains(&s)),
        }
    }

    fn describe(self) -> String {
        match self {
            Field::U64 => "an unsigned integer".into(),
            Field::OptU64 => "an unsigned integer or null".into(),
            Field::Bool => "true or false".into(),
            Field::Object => "an object".into(),
            Field::OneOf(names) => format!("one of {}", names.join(", ")),
        }
    }
}

/// For each event tag: the record kind it belongs to and the fields the
/// tools read from it, with their types. A record that lacks one, or holds
/// the wrong type, is corrupted: the summary must never invent a value (an
/// empty `stale_walk` once counted as a `leaf` stale walk).
fn event_schema(tag: &str) -> Option<(Kind, &'static [(&'static str, Field)])> {
    const STALE_CLASSES: &[&str] = &["unlinked", "reused", "leaf"];
    const ACCESSES: &[&str] = &["read", "write", "execute"];
    Some(match tag {
        "invalidation" => (
            Kind::Inv,
            &[("descriptor", Field::Object), ("removed", Field::U64)],
        ),
        "queue_error" => (
            Kind::Inv,
            &[
                ("kind", Field::OneOf(&["iqe", "ite", "ice"])),
                ("head", Field::U64),
                ("iqer", Field::U64),
            ],
        ),
        "translation" => (
            Kind::Walk,
            &[
                ("rid", Field::U64),
                ("pasid", Field::OptU64),
                ("addr", Field::U64),
                ("access", Field::OneOf(ACCESSES)),
                ("privileged", Field::Bool),
                ("speculative", Field::Bool),
                ("result", Field::Object),
                ("hits", Field::Object),
            ],
        ),
        "fault" => (
            Kind::Fault,
            &[
                ("rid", Field::U64),
                ("pasid", Field::OptU64),
                ("addr", Field::U64),
                ("reason", Field::U64),
                ("recorded", Field::Bool),
            ],
        ),
        "page_request" => (
            Kind::Prq,
            &[("request", Field::Object), ("queued", Field::Bool)],
        ),
        "page_response" => (
            Kind::Prq,
            &[
                ("rid", Field::U64),
                ("pasid", Field::OptU64),
                ("group_index", Field::U64),
                ("code", Field::U64),
            ],
        ),
        "stale_walk" => (
            Kind::Stale,
            &[
                ("class", Field::OneOf(STALE_CLASSES)),
                ("rid", Field::U64),
                ("pasid", Field::U64),
                ("addr", Field::U64),
                ("level", Field::U64),
                ("cached", Field::U64),
                ("memory", Field::U64),
                ("table_page", Field::U64),
            ],
        ),
        "hint" => (Kind::Hint, &[("gpa", Field::U64), ("cached", Field::Bool)]),
        _ => return None,
    })
}

/// Checks an event record's payload against [`event_schema`]: the tag is
/// known, belongs to the record's kind, and every field the tools read is
/// there with its type. Extra fields are allowed (a newer minor version may
/// add some).
fn check_event(kind: Kind, tag: &str, data: &Value) -> Result<(), String> {
    let Some((want_kind, fields)) = event_schema(tag) else {
        return Err(format!("unknown event {tag:?} in a {kind} record"));
    };
    if want_kind != kind {
        return Err(format!(
            "a {tag} event belongs in a {want_kind} record, not a {kind} record"
        ));
    }
    for &(name, field) in fields {
        match data.get(name) {
            None => return Err(format!("{tag} event without \"{name}\"")),
            Some(v) if !field.holds(v) => {
                return Err(format!(
                    "{tag} event field \"{name}\" is {v}, not {}",
                    field.describe()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_record();
        match &item {
            Ok(Some(r)) if matches!(r.body, Body::End(_)) => {
                self.done = true;
                // Anything after the end record is an error.
                match self.read_line() {
                    Ok(Line::Eof) => {}
                    Ok(_) => return Some(Err(self.corrupted("data after the end record".into()))),
                    Err(e) => return Some(Err(e)),
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => self.done = true,
        }
        item.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"format":"stalewalk-trace","version":"1.0","created":"x","tool_version":"0.1.0","command":"t","events":["inv"]}"#;

    fn read(text: &str, allow_truncated: bool) -> Result<Vec<Record>, ReadError> {
        let r = TraceReader::new(text.as_bytes(), "t".into(), ReadOptions { allow_truncated })?;
        r.collect()
    }

    fn end(seq: u64, hint: u64) -> String {
        format!(
            r#"{{"seq":{seq},"t_ns":9,"kind":"end","records":{seq},"events":{{"inv":0,"walk":0,"fault":0,"prq":0,"stale":0,"hint":{hint},"serial":0}},"dropped":0,"dropped_by_kind":{{}}}}"#
        )
    }

    const HINT: &str =
        r#"{"seq":1,"t_ns":5,"kind":"hint","data":{"event":"hint","gpa":4096,"cached":true}}"#;

    fn one_event(kind: &str, data: &str) -> Result<Vec<Record>, ReadError> {
        let rec = format!(r#"{{"seq":1,"t_ns":5,"kind":"{kind}","data":{data}}}"#);
        let text = format!("{HEADER}\n{rec}\n{}\n", end(2, 0));
        read(&text, false)
    }

    fn corrupted_reason(r: Result<Vec<Record>, ReadError>) -> (usize, String) {
        match r {
            Err(ReadError::Corrupted { line, reason, .. }) => (line, reason),
            other => panic!("expected a corrupted-line error, got {other:?}"),
        }
    }

    #[test]
    fn reject_empty_stale_walk_payload() {
        // Once summarised as a `leaf` stale walk: an invented value.
        let (line, reason) = corrupted_reason(one_event("stale", r#"{"event":"stale_walk"}"#));
        assert_eq!(line, 2);
        assert!(reason.contains("without \"class\""), "{reason}");
    }

    #[test]
    fn reject_ill_typed_field() {
        let data = r#"{"event":"hint","gpa":"0x1000","cached":true}"#;
        let (line, reason) = corrupted_reason(one_event("hint", data));
        assert_eq!(line, 2);
        assert!(
            reason.contains("\"gpa\"") && reason.contains("unsigned"),
            "{reason}"
        );
    }

    #[test]
    fn reject_unknown_stale_class() {
        let data = r#"{"event":"stale_walk","class":"maybe","rid":1,"pasid":1,"addr":0,"level":2,"cached":0,"memory":0,"table_page":0}"#;
        let (_, reason) = corrupted_reason(one_event("stale", data));
        assert!(reason.contains("one of unlinked, reused, leaf"), "{reason}");
    }

    #[test]
    fn reject_event_in_the_wrong_kind() {
        let (_, reason) = corrupted_reason(one_event(
            "inv",
            r#"{"event":"hint","gpa":0,"cached":false}"#,
        ));
        assert!(reason.contains("belongs in a hint record"), "{reason}");
    }

    #[test]
    fn reject_unknown_event_tag() {
        let (_, reason) = corrupted_reason(one_event("walk", r#"{"event":"teleport"}"#));
        assert!(reason.contains("unknown event"), "{reason}");
    }

    #[test]
    fn reads_a_valid_trace() {
        let text = format!("{HEADER}\n{HINT}\n{}\n", end(2, 1));
        let recs = read(&text, false).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].kind(), Some(Kind::Hint));
        assert_eq!(recs[0].line, 2);
        assert!(matches!(recs[1].body, Body::End(_)));
    }

    #[test]
    fn reject_missing_end_record() {
        let text = format!("{HEADER}\n{HINT}\n");
        let e = read(&text, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t: trace is truncated after line 2 (no end record); pass --allow-truncated to read it up to there"
        );
        let mut r = TraceReader::new(
            text.as_bytes(),
            "t".into(),
            ReadOptions {
                allow_truncated: true,
            },
        )
        .unwrap();
        assert_eq!(r.by_ref().count(), 1);
        assert_eq!(r.truncated_after(), Some(2));
    }

    #[test]
    fn reject_partial_last_line_as_truncation() {
        let text = format!("{HEADER}\n{HINT}\n{{\"seq\":2,\"t_");
        assert!(matches!(
            read(&text, false),
            Err(ReadError::Truncated { line: 2, .. })
        ));
    }

    #[test]
    fn reject_corrupted_line() {
        let text = format!("{HEADER}\n{HINT}\nnot json\n{}\n", end(3, 1));
        let e = read(&text, false).unwrap_err();
        assert!(matches!(e, ReadError::Corrupted { line: 3, .. }), "{e}");
    }

    #[test]
    fn reject_sequence_gap() {
        let text = format!("{HEADER}\n{}\n", HINT.replace("\"seq\":1", "\"seq\":7"));
        let e = read(&text, false).unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("sequence number 7"),
            "{e}"
        );
    }

    #[test]
    fn reject_end_totals_mismatch() {
        let text = format!("{HEADER}\n{HINT}\n{}\n", end(2, 5));
        let e = read(&text, false).unwrap_err();
        assert!(e.to_string().contains("counts 5 hint events"), "{e}");
    }

    #[test]
    fn reject_newer_major_version() {
        let text = HEADER.replace("\"1.0\"", "\"2.0\"");
        let e = read(&text, false).unwrap_err();
        assert!(matches!(e, ReadError::NewerVersion { .. }));
        assert!(e.to_string().contains("version 2.0 is newer"), "{e}");
    }

    #[test]
    fn reject_not_a_trace() {
        assert!(matches!(
            read("{\"format\":\"other\"}\n", false),
            Err(ReadError::NotATrace { .. })
        ));
        assert!(matches!(read("", false), Err(ReadError::Empty { .. })));
    }

    #[test]
    fn reject_data_after_end() {
        let text = format!("{HEADER}\n{HINT}\n{}\n{HINT}\n", end(2, 1));
        let e = read(&text, false).unwrap_err();
        assert!(
            e.to_string().contains("line 4") && e.to_string().contains("after the end"),
            "{e}"
        );
    }

    #[test]
    fn reject_overlong_line() {
        let text = format!("{HEADER}\n{}", "x".repeat(MAX_LINE_BYTES + 10));
        assert!(matches!(
            read(&text, false),
            Err(ReadError::Corrupted { line: 2, .. })
        ));
    }
}
