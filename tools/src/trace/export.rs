//! `trace export --chrome`: the Chrome trace event format (JSON object form,
//! loadable in Perfetto UI and chrome://tracing). Each record kind is a
//! track (a thread of process 1) of instant events at the record's time;
//! invalidations also feed a counter track of descriptors per type, and
//! guest serial lines are global instant events. Addresses are hex strings
//! in `args` (JSON numbers above 2^53 lose precision in JavaScript).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use super::Kind;
use super::reader::{self, Body, ReadError, ReadOptions};
use super::summary::{hexify, report_type};

/// Errors of the export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the trace failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing the output failed.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// The output.
        path: String,
        /// The error.
        reason: String,
    },
}

/// One Chrome trace event.
#[derive(Serialize)]
struct ChromeEvent<'a> {
    name: String,
    cat: &'a str,
    ph: &'static str,
    /// Microseconds.
    ts: f64,
    pid: u32,
    tid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'static str>,
    args: Value,
}

fn tid(kind: Kind) -> u32 {
    match kind {
        Kind::Inv => 1,
        Kind::Walk => 2,
        Kind::Fault => 3,
        Kind::Prq => 4,
        Kind::Stale => 5,
        Kind::Hint => 6,
        Kind::Serial => 7,
        Kind::Dropped | Kind::End => 8,
    }
}

fn track_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Inv => "invalidations",
        Kind::Walk => "translations",
        Kind::Fault => "faults",
        Kind::Prq => "page requests",
        Kind::Stale => "stale walks",
        Kind::Hint => "page-table freed hints",
        Kind::Serial => "guest serial",
        Kind::Dropped | Kind::End => "trace",
    }
}

fn us(t_ns: u64) -> f64 {
    // Perfetto wants microseconds as a number; sub-ns precision loss after
    // 2^53 ns (104 days) is harmless.
    #[allow(clippy::cast_precision_loss)]
    let v = t_ns as f64 / 1000.0;
    v
}

/// The event name shown in the UI.
fn event_name(data: &Value) -> String {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match s(data, "event").as_str() {
        "invalidation" => {
            let d = data.get("descriptor").cloned().unwrap_or(Value::Null);
            let ty = report_type(&s(&d, "type")).to_string();
            match d.get("granularity").and_then(Value::as_str) {
                Some(g) => format!("{ty} {g}"),
                None => ty,
            }
        }
        "translation" => {
            let outcome = data
                .get("result")
                .map(|r| s(r, "outcome"))
                .unwrap_or_default();
            let spec = data.get("speculative").and_then(Value::as_bool) == Some(true);
            format!(
                "{} {outcome}",
                if spec {
                    "speculative walk"
                } else {
                    "translation"
                }
            )
        }
        "fault" => format!(
            "fault {:#x}",
            data.get("reason").and_then(Value::as_u64).unwrap_or(0)
        ),
        "stale_walk" => format!("stale walk {}", s(data, "class")),
        "hint" => {
            let cached = data.get("cached").and_then(Value::as_bool) == Some(true);
            if cached {
                "freed while cached".to_string()
            } else {
                "page-table page freed".to_string()
            }
        }
        other => other.replace('_', " "),
    }
}

/// Exports the trace at `input` to `output`; returns the number of trace
/// events written and, for a truncated trace read with `allow_truncated`,
/// its last complete line.
pub fn export_chrome(
    input: &Path,
    output: &Path,
    options: ReadOptions,
) -> Result<(u64, Option<usize>), ExportError> {
    let name = output.display().to_string();
    let out_err = |e: std::io::Error| ExportError::Output {
        path: name.clone(),
        reason: e.to_string(),
    };
    let mut reader = reader::open(input, options)?;
    let file = std::fs::File::create(output).map_err(out_err)?;
    let mut out = std::io::BufWriter::new(file);
    let header = reader.header().clone();
    let metadata = json!({
        "format": header.format, "version": header.version, "created": header.created,
        "tool_version": header.tool_version, "command": header.command, "events": header.events,
    });
    write!(
        out,
        "{{\"displayTimeUnit\":\"ns\",\"otherData\":{metadata},\"traceEvents\":["
    )
    .map_err(out_err)?;
    let mut n = 0u64;
    let mut emit = |out: &mut std::io::BufWriter<std::fs::File>,
                    e: &ChromeEvent<'_>|
     -> Result<(), ExportError> {
        if n > 0 {
            out.write_all(b",\n").map_err(out_err)?;
        }
        serde_json::to_writer(&mut *out, e).map_err(|e| out_err(e.into()))?;
        n += 1;
        Ok(())
    };
    let meta = |tid: u32, name: &str| ChromeEvent {
        name: "thread_name".into(),
        cat: "__metadata",
        ph: "M",
        ts: 0.0,
        pid: 1,
        tid,
        s: None,
        args: json!({ "name": name }),
    };
    emit(
        &mut out,
        &ChromeEvent {
            tid: 0,
            name: "process_name".into(),
            args: json!({"name": "stalewalk vIOMMU"}),
            ..meta(0, "")
        },
    )?;
    for k in Kind::FILTERABLE.into_iter().chain([Kind::End]) {
        emit(&mut out, &meta(tid(k), track_name(k)))?;
    }
    let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
    for rec in reader.by_ref() {
        let rec = rec?;
        let ts = us(rec.t_ns);
        let (kind, name, args, scope) = match &rec.body {
            Body::Event { kind, data } => (*kind, event_name(data), hexify(data), "t"),
            Body::Serial { text } => (Kind::Serial, text.clone(), json!({ "text": text }), "g"),
            Body::Dropped { count, total } => (
                Kind::Dropped,
                format!("{count} events dropped"),
                json!({"count": count, "total": total}),
                "p",
            ),
            Body::End(end) => (
                Kind::End,
                "end of trace".into(),
                json!({"records": end.records, "dropped": end.dropped}),
                "p",
            ),
            Body::Unknown { .. } => continue,
        };
        let mut args = args;
        if let Value::Object(m) = &mut args {
            m.insert("seq".into(), json!(rec.seq));
            m.insert("t_ns".into(), json!(rec.t_ns));
        }
        if let Body::Event { data, .. } = &rec.body {
            if data.get("event").and_then(Value::as_str) == Some("invalidation") {
                let ty = data
                    .get("descriptor")
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("other");
                *per_type.entry(report_type(ty).to_string()).or_insert(0) += 1;
                let counters: serde_json::Map<String, Value> = per_type
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                emit(
                    &mut out,
                    &ChromeEvent {
                        name: "invalidations by type".into(),
                        cat: "inv",
                        ph: "C",
                        ts,
                        pid: 1,
                        tid: tid(Kind::Inv),
                        s: None,
                        args: Value::Object(counters),
                    },
                )?;
            }
        }
        emit(
            &mut out,
            &ChromeEvent {
                name,
                cat: kind.as_str(),
                ph: "i",
                ts,
                pid: 1,
                tid: tid(kind),
                s: Some(scope),
                args,
            },
        )?;
    }
    out.write_all(b"]}\n").map_err(out_err)?;
    out.flush().map_err(out_err)?;
    Ok((n, reader.truncated_after()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_events() {
        let inv =
            json!({"event":"invalidation","descriptor":{"type":"piotlb","granularity":"page"}});
        assert_eq!(event_name(&inv), "piotlb page");
        let st = json!({"event":"stale_walk","class":"reused"});
        assert_eq!(event_name(&st), "stale walk reused");
        let t = json!({"event":"translation","speculative":true,"result":{"outcome":"ok"}});
        assert_eq!(event_name(&t), "speculative walk ok");
        assert_eq!(us(1500), 1.5);
    }
}
