//! What a trace adds up to: invalidations by type, granularity, IH, PASID,
//! domain and device; translations and faults by device and PASID; stale
//! walks by class with the first few in full; the busiest address ranges;
//! and the subset of the model's report counters that the events determine
//! ([`Summary::counters`]), so a trace can be checked against its run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::reader::{self, Body, ReadError, ReadOptions, Record};
use super::{Kind, bdf, hex};

/// Stale walks shown in full.
pub const STALE_SHOWN: usize = 5;
/// Address ranges listed as the busiest.
pub const BUSIEST_SHOWN: usize = 10;
/// Distinct keys kept per breakdown (PASIDs, devices, domains, reasons,
/// address ranges); the rest add up under `other`, so a trace with millions
/// of distinct PASIDs or addresses cannot grow the summary without bound.
pub const MAX_KEYS: usize = 4096;
/// Granule of the busiest-ranges table: 2 MiB, one page-directory entry, the
/// unit the kernel's page-table freeing works in.
pub const RANGE_SHIFT: u32 = 21;

/// A bounded count per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Breakdown(BTreeMap<String, u64>);

impl Breakdown {
    fn add(&mut self, key: impl Into<String>, n: u64) {
        let key = key.into();
        if self.0.len() >= MAX_KEYS && !self.0.contains_key(&key) {
            *self.0.entry("other".to_string()).or_insert(0) += n;
        } else {
            *self.0.entry(key).or_insert(0) += n;
        }
    }

    /// The count for `key`.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

/// Invalidation counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InvSummary {
    /// Descriptors in all.
    pub total: u64,
    /// Per descriptor type (report names: context, iotlb, piotlb, ...).
    pub by_type: Breakdown,
    /// Per type and granularity (report names: iotlb_page, piotlb_pasid, ...).
    pub by_granularity: Breakdown,
    /// Page-selective (PASID-based) IOTLB invalidations with IH=0.
    pub ih0: u64,
    /// ... with IH=1.
    pub ih1: u64,
    /// Page-selective PASID-based IOTLB invalidations touching the kernel half.
    pub kva: u64,
    /// Per PASID (PASID-based descriptors).
    pub by_pasid: Breakdown,
    /// Per domain id.
    pub by_did: Breakdown,
    /// Per device (device-TLB and device-selective context invalidations).
    pub by_device: Breakdown,
    /// Cache entries removed.
    pub removed: u64,
    /// Invalidation-queue errors.
    pub queue_errors: u64,
}

/// Translation counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WalkSummary {
    /// Device translations.
    pub translations: u64,
    /// Speculative walks.
    pub speculative: u64,
    /// Translations (not speculative) that faulted.
    pub faulted: u64,
    /// Per device.
    pub by_device: Breakdown,
    /// Per PASID (`none` for requests without one).
    pub by_pasid: Breakdown,
    /// Cache hits: context, pasid, iotlb, psc_l5..psc_l2 (deepest level).
    pub hits: Breakdown,
}

/// Fault counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultSummary {
    /// Faults.
    pub total: u64,
    /// Written to a fault recording register.
    pub recorded: u64,
    /// Per VT-d reason code.
    pub by_reason: Breakdown,
    /// Per device.
    pub by_device: Breakdown,
}

/// Stale walks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StaleSummary {
    /// Class unlinked.
    pub unlinked: u64,
    /// Class reused.
    pub reused: u64,
    /// Class leaf.
    pub leaf: u64,
    /// The first [`STALE_SHOWN`], in full (addresses in hex).
    pub first: Vec<Value>,
}

/// Page requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrqSummary {
    /// Page requests a device made.
    pub requests: u64,
    /// Of those, written to the page-request queue.
    pub queued: u64,
    /// Page group responses delivered to devices.
    pub responses: u64,
}

/// One address range of the busiest-ranges table: translations and
/// speculative walks, page-selective invalidations (by their first
/// address) and stale walks in a 2 MiB range (faults are not counted again:
/// each fault is also a translation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RangeCount {
    /// First address (hex).
    pub start: String,
    /// Last address (hex).
    pub end: String,
    /// Events touching it.
    pub events: u64,
    /// Of those, invalidations.
    pub invalidations: u64,
    /// Of those, stale walks.
    pub stale: u64,
}

/// Everything `trace summary` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The run's command line (from the header).
    pub command: String,
    /// Records after the header.
    pub records: u64,
    /// Time of the last record, ns.
    pub duration_ns: u64,
    /// Set when the trace had no end record (read with --allow-truncated):
    /// the last complete line.
    pub truncated_after_line: Option<usize>,
    /// Event records per kind.
    pub events: Breakdown,
    /// Events the writer dropped.
    pub dropped: u64,
    /// Invalidations.
    pub invalidations: InvSummary,
    /// Translations.
    pub walks: WalkSummary,
    /// Faults.
    pub faults: FaultSummary,
    /// Stale walks.
    pub stale_walks: StaleSummary,
    /// Page requests.
    pub page_requests: PrqSummary,
    /// Guest hints.
    pub free_hints: u64,
    /// Hints for a page some cache still pointed at.
    pub freed_while_cached: u64,
    /// Guest serial markers.
    pub markers: u64,
    /// Busiest 2 MiB ranges.
    pub busiest_ranges: Vec<RangeCount>,
    #[serde(skip)]
    ranges: BTreeMap<u64, [u64; 3]>,
    #[serde(skip)]
    kernel_half_start: u64,
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The report's name for a descriptor type tag.
pub fn report_type(tag: &str) -> &str {
    match tag {
        "context_cache" => "context",
        "dev_tlb" => "devtlb",
        "pasid_dev_tlb" => "pdevtlb",
        "page_group_response" => "page_response",
        other => other,
    }
}

/// First and last address a page-selective invalidation covers (the model's
/// rule: 2^(12+am) bytes aligned down, everything from 2^64).
pub fn page_range(addr: u64, am: u64) -> (u64, u64) {
    let shift = 12u64.saturating_add(am);
    if shift >= 64 {
        return (0, u64::MAX);
    }
    let size = 1u64 << shift;
    let lo = addr & !(size - 1);
    (lo, lo | (size - 1))
}

/// The address range an event concerns: `Some((first, last))`; invalidations
/// that are not page-selective cover every address.
pub fn address_span(data: &Value) -> Option<(u64, u64)> {
    match s(data, "event") {
        "translation" | "fault" | "stale_walk" => u(data, "addr").map(|a| (a, a)),
        "hint" => u(data, "gpa").map(|a| (a, a | 0xfff)),
        "page_request" => data
            .get("request")
            .and_then(|r| u(r, "addr"))
            .map(|a| (a, a)),
        "invalidation" => {
            let d = data.get("descriptor")?;
            if let Some(inv) = d.get("inv") {
                let addr = u(inv, "addr")?;
                let size = u(inv, "size")?;
                return Some(if size == u64::MAX {
                    (0, u64::MAX)
                } else {
                    (addr, addr.saturating_add(size.saturating_sub(1)))
                });
            }
            match (s(d, "type"), s(d, "granularity")) {
                ("iotlb" | "piotlb", "page") => Some(page_range(u(d, "addr")?, u(d, "am")?)),
                ("iotlb" | "piotlb" | "context_cache" | "pasid_cache", _) => Some((0, u64::MAX)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The PASID an event concerns, if any.
pub fn pasid_of(data: &Value) -> Option<u64> {
    let direct = |v: &Value| u(v, "pasid");
    match s(data, "event") {
        "invalidation" => {
            let d = data.get("descriptor")?;
            direct(d).or_else(|| d.get("inv").and_then(direct))
        }
        "page_request" => data.get("request").and_then(direct),
        _ => direct(data),
    }
}

impl Summary {
    fn new(command: String, kernel_half_start: u64) -> Summary {
        Summary {
            command,
            kernel_half_start,
            ..Summary::default()
        }
    }

    /// Counts an event at `addr` in its 2 MiB range; `column` 1 for an
    /// invalidation, 2 for a stale walk, `None` for a translation.
    fn range(&mut self, addr: u64, column: Option<usize>) {
        let key = addr >> RANGE_SHIFT;
        if self.ranges.len() >= MAX_KEYS && !self.ranges.contains_key(&key) {
            return;
        }
        let e = self.ranges.entry(key).or_default();
        e[0] += 1;
        if let Some(c) = column {
            e[c] += 1;
        }
    }

    fn add(&mut self, rec: &Record) {
        self.records = rec.seq;
        self.duration_ns = self.duration_ns.max(rec.t_ns);
        match &rec.body {
            Body::Event { kind, data } => {
                self.events.add(kind.as_str(), 1);
                self.add_event(data);
            }
            Body::Serial { .. } => {
                self.events.add(Kind::Serial.as_str(), 1);
                self.markers += 1;
            }
            Body::Dropped { total, .. } => self.dropped = *total,
            Body::End(end) => self.dropped = end.dropped,
            Body::Unknown { kind } => self.events.add(kind.clone(), 1),
        }
    }

    fn add_event(&mut self, data: &Value) {
        match s(data, "event") {
            "invalidation" => self.add_invalidation(data),
            "queue_error" => self.invalidations.queue_errors += 1,
            "translation" => {
                let w = &mut self.walks;
                if data.get("speculative").and_then(Value::as_bool) == Some(true) {
                    w.speculative += 1;
                } else {
                    w.translations += 1;
                    if data.get("result").map(|r| s(r, "outcome")) == Some("fault") {
                        w.faulted += 1;
                    }
                }
                w.by_device.add(bdf(u(data, "rid").unwrap_or(0)), 1);
                w.by_pasid.add(
                    u(data, "pasid").map_or("none".to_string(), |p| p.to_string()),
                    1,
                );
                if let Some(h) = data.get("hits") {
                    for c in ["context", "pasid", "iotlb"] {
                        if h.get(c).and_then(Value::as_bool) == Some(true) {
                            w.hits.add(c, 1);
                        }
                    }
                    if let Some(l) = u(h, "psc_level") {
                        w.hits.add(format!("psc_l{l}"), 1);
                    }
                }
                if let Some(a) = u(data, "addr") {
                    self.range(a, None);
                }
            }
            "fault" => {
                let f = &mut self.faults;
                f.total += 1;
                if data.get("recorded").and_then(Value::as_bool) == Some(true) {
                    f.recorded += 1;
                }
                f.by_reason
                    .add(format!("{:#x}", u(data, "reason").unwrap_or(0)), 1);
                f.by_device.add(bdf(u(data, "rid").unwrap_or(0)), 1);
            }
            "page_request" => {
                self.page_requests.requests += 1;
                if data.get("queued").and_then(Value::as_bool) == Some(true) {
                    self.page_requests.queued += 1;
                }
            }
            "page_response" => self.page_requests.responses += 1,
            "stale_walk" => {
                let st = &mut self.stale_walks;
                match s(data, "class") {
                    "unlinked" => st.unlinked += 1,
                    "reused" => st.reused += 1,
                    _ => st.leaf += 1,
                }
                if st.first.len() < STALE_SHOWN {
                    st.first.push(hexify(data));
                }
                if let Some(a) = u(data, "addr") {
                    self.range(a, Some(2));
                }
            }
            "hint" => {
                self.free_hints += 1;
                if data.get("cached").and_then(Value::as_bool) == Some(true) {
                    self.freed_while_cached += 1;
                }
            }
            _ => {}
        }
    }

    fn add_invalidation(&mut self, data: &Value) {
        let Some(d) = data.get("descriptor") else {
            return;
        };
        let inv = &mut self.invalidations;
        inv.total += 1;
        inv.removed = inv.removed.saturating_add(u(data, "removed").unwrap_or(0));
        let ty = report_type(s(d, "type")).to_string();
        inv.by_type.add(ty.clone(), 1);
        if let Some(did) = u(d, "did") {
            inv.by_did.add(did.to_string(), 1);
        }
        if let Some(p) = pasid_of(data) {
            inv.by_pasid.add(p.to_string(), 1);
        }
        let flag = |k: &str| d.get(k).and_then(Value::as_bool) == Some(true);
        match ty.as_str() {
            "context" | "iotlb" | "piotlb" | "pasid_cache" => {
                let g = s(d, "granularity");
                inv.by_granularity.add(format!("{ty}_{g}"), 1);
                if g == "device" {
                    inv.by_device.add(bdf(u(d, "sid").unwrap_or(0)), 1);
                }
                if g == "page" {
                    if flag("ih") {
                        inv.ih1 += 1
                    } else {
                        inv.ih0 += 1
                    }
                    if let Some(addr) = u(d, "addr") {
                        let (lo, hi) = page_range(addr, u(d, "am").unwrap_or(0));
                        if ty == "piotlb" && hi >= self.kernel_half_start {
                            inv.kva += 1;
                        }
                        self.range(lo, Some(1));
                    }
                }
            }
            "devtlb" | "pdevtlb" => {
                if let Some(i) = d.get("inv") {
                    inv.by_device.add(bdf(u(i, "sid").unwrap_or(0)), 1);
                    if u(i, "size") == Some(u64::MAX) {
                        inv.by_granularity.add("devtlb_all", 1);
                    }
                }
            }
            "wait" => {
                for (k, name) in [
                    ("sw", "wait_sw"),
                    ("interrupt", "wait_if"),
                    ("fence", "wait_fn"),
                    ("pd", "wait_pd"),
                ] {
                    if flag(k) {
                        inv.by_granularity.add(name, 1);
                    }
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, truncated_after_line: Option<usize>) {
        self.truncated_after_line = truncated_after_line;
        let mut ranges: Vec<(u64, [u64; 3])> = self.ranges.iter().map(|(k, v)| (*k, *v)).collect();
        ranges.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(&b.0)));
        self.busiest_ranges = ranges
            .into_iter()
            .take(BUSIEST_SHOWN)
            .map(|(k, [events, invalidations, stale])| {
                let start = k << RANGE_SHIFT;
                RangeCount {
                    start: hex(start),
                    end: hex(start | ((1 << RANGE_SHIFT) - 1)),
                    events,
                    invalidations,
                    stale,
                }
            })
            .collect();
    }

    /// The report counters this trace determines, shaped like the `viommu`
    /// crate's `Counters` JSON (a subset: cache statistics, MSIs and the
    /// checker mode are not in the event stream).
    pub fn counters(&self) -> Value {
        let inv = &self.invalidations;
        let t = |k: &str| inv.by_type.get(k);
        let g = |k: &str| inv.by_granularity.get(k);
        let gran: Map<String, Value> = [
            "context_global",
            "context_domain",
            "context_device",
            "iotlb_global",
            "iotlb_domain",
            "iotlb_page",
            "piotlb_pasid",
            "piotlb_page",
            "pasid_cache_domain",
            "pasid_cache_pasid",
            "pasid_cache_global",
            "devtlb_all",
            "wait_sw",
            "wait_if",
            "wait_fn",
            "wait_pd",
        ]
        .into_iter()
        .map(|k| (k.to_string(), json!(g(k))))
        .chain([
            ("ih0".to_string(), json!(inv.ih0)),
            ("ih1".to_string(), json!(inv.ih1)),
        ])
        .collect();
        json!({
            "translations": self.walks.translations,
            "faults": self.faults.total,
            "faults_recorded": self.faults.recorded,
            "speculative_walks": self.walks.speculative,
            "stale_walks": {
                "unlinked": self.stale_walks.unlinked,
                "reused": self.stale_walks.reused,
                "leaf": self.stale_walks.leaf,
            },
            "freed_while_cached": self.freed_while_cached,
            "free_hints": self.free_hints,
            "invalidations": {
                "context": t("context"),
                "iotlb": t("iotlb"),
                "devtlb": t("devtlb"),
                "iec": t("iec"),
                "wait": t("wait"),
                "piotlb": t("piotlb"),
                "pasid_cache": t("pasid_cache"),
                "pdevtlb": t("pdevtlb"),
                "page_response": t("page_response"),
            },
            "kva_invalidations": inv.kva,
            "granularity": gran,
            "queue_errors": inv.queue_errors,
            "page_requests": {
                "queued": self.page_requests.queued,
                "responses": self.page_requests.responses,
            },
        })
    }

    /// The human-readable report.
    pub fn human(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "trace of: {}",
            if self.command.is_empty() {
                "(no command recorded)"
            } else {
                &self.command
            }
        );
        if let Some(line) = self.truncated_after_line {
            let _ = writeln!(
                o,
                "WARNING: trace is truncated after line {line} (no end record); counts cover lines up to {line}"
            );
        }
        let _ = writeln!(
            o,
            "records: {}  duration: {:.3} ms  dropped: {}",
            self.records,
            ms(self.duration_ns),
            self.dropped
        );
        section(&mut o, "events by kind", &self.events);
        let i = &self.invalidations;
        let _ = writeln!(
            o,
            "\ninvalidations: {}  (ih0 {}, ih1 {}, kva {}, cache entries removed {}, queue errors {})",
            i.total, i.ih0, i.ih1, i.kva, i.removed, i.queue_errors
        );
        section(&mut o, "by type", &i.by_type);
        section(&mut o, "by granularity", &i.by_granularity);
        section(&mut o, "by PASID", &i.by_pasid);
        section(&mut o, "by domain", &i.by_did);
        section(&mut o, "by device", &i.by_device);
        let w = &self.walks;
        let _ = writeln!(
            o,
            "\ntranslations: {}  speculative walks: {}  faulted: {}",
            w.translations, w.speculative, w.faulted
        );
        section(&mut o, "by device", &w.by_device);
        section(&mut o, "by PASID", &w.by_pasid);
        section(&mut o, "cache hits", &w.hits);
        let f = &self.faults;
        let _ = writeln!(o, "\nfaults: {}  recorded: {}", f.total, f.recorded);
        section(&mut o, "by reason", &f.by_reason);
        section(&mut o, "by device", &f.by_device);
        let p = &self.page_requests;
        let _ = writeln!(
            o,
            "\npage requests: {}  queued: {}  responses: {}",
            p.requests, p.queued, p.responses
        );
        let _ = writeln!(
            o,
            "hints: {}  freed while cached: {}  guest markers: {}",
            self.free_hints, self.freed_while_cached, self.markers
        );
        let st = &self.stale_walks;
        let _ = writeln!(
            o,
            "\nstale walks: unlinked {}  reused {}  leaf {}",
            st.unlinked, st.reused, st.leaf
        );
        for w in &st.first {
            let _ = writeln!(o, "  {w}");
        }
        if !self.busiest_ranges.is_empty() {
            let _ = writeln!(o, "\nbusiest 2 MiB ranges:");
            let _ = writeln!(
                o,
                "  {:<41} {:>8} {:>8} {:>8}",
                "range", "events", "inv", "stale"
            );
            for r in &self.busiest_ranges {
                let range = format!("{}-{}", r.start, r.end);
                let _ = writeln!(
                    o,
                    "  {range:<41} {:>8} {:>8} {:>8}",
                    r.events, r.invalidations, r.stale
                );
            }
        }
        o
    }
}

fn ms(ns: u64) -> f64 {
    // Display only: precision loss above 2^52 ns (52 days) is harmless.
    #[allow(clippy::cast_precision_loss)]
    let v = ns as f64 / 1e6;
    v
}

fn section(o: &mut String, title: &str, b: &Breakdown) {
    if b.0.is_empty() {
        return;
    }
    let _ = writeln!(o, "  {title}:");
    for (k, v) in &b.0 {
        let _ = writeln!(o, "    {k:<24} {v:>10}");
    }
}

/// Keys whose values are addresses or entry values, shown in hex.
pub const HEX_KEYS: [&str; 10] = [
    "addr",
    "output",
    "gpa",
    "cached",
    "memory",
    "table_page",
    "status_addr",
    "iqer",
    "size",
    "private_data",
];

/// `v` with the values of [`HEX_KEYS`] as hex strings (recursively).
pub fn hexify(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match x.as_u64() {
                        Some(n) if HEX_KEYS.contains(&k.as_str()) && x.is_u64() => {
                            Value::String(hex(n))
                        }
                        _ => hexify(x),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(hexify).collect()),
        other => other.clone(),
    }
}

/// Summarises the trace at `path`.
pub fn summarize(path: &Path, options: ReadOptions) -> Result<Summary, ReadError> {
    let mut reader = reader::open(path, options)?;
    let mut summary = Summary::new(
        reader.header().command.clone(),
        reader.header().kernel_half_start,
    );
    for rec in reader.by_ref() {
        summary.add(&rec?);
    }
    summary.finish(reader.truncated_after());
    Ok(summary)
}

/// The report counters the trace at `path` determines (see
/// [`Summary::counters`]); a truncated trace is an error.
pub fn summary_counters(path: &Path) -> Result<Value, ReadError> {
    Ok(summarize(path, ReadOptions::default())?.counters())
}

/// Every number in `v` by its dotted path (arrays skipped).
pub fn flatten(v: &Value) -> BTreeMap<String, u64> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, u64>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, x, out);
                }
            }
            Value::Number(n) => {
                if let Some(n) = n.as_u64() {
                    out.insert(prefix.to_string(), n);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// One row of `trace diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffRow {
    /// Dotted counter path.
    pub counter: String,
    /// Value in A.
    pub a: u64,
    /// Value in B.
    pub b: u64,
    /// B - A.
    pub delta: i128,
}

/// The counters of two summaries side by side (rows where either is
/// non-zero).
pub fn diff(a: &Summary, b: &Summary) -> Vec<DiffRow> {
    let to_value = |s: &Summary| serde_json::to_value(s).unwrap_or(Value::Null);
    let fa = flatten(&to_value(a));
    let fb = flatten(&to_value(b));
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| *k != "truncated_after_line")
        .filter_map(|k| {
            let (x, y) = (
                fa.get(k).copied().unwrap_or(0),
                fb.get(k).copied().unwrap_or(0),
            );
            (x != 0 || y != 0).then(|| DiffRow {
                counter: k.clone(),
                a: x,
                b: y,
                delta: i128::from(y) - i128::from(x),
            })
        })
        .collect()
}

/// `trace diff` as text.
pub fn diff_human(rows: &[DiffRow], a: &str, b: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "A: {a}\nB: {b}");
    let w = rows
        .iter()
        .map(|r| r.counter.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        o,
        "{:<w$} {:>12} {:>12} {:>12}",
        "counter", "A", "B", "delta"
    );
    for r in rows {
        let delta = if r.delta == 0 {
            "=".to_string()
        } else {
            format!("{:+}", r.delta)
        };
        let _ = writeln!(o, "{:<w$} {:>12} {:>12} {:>12}", r.counter, r.a, r.b, delta);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, data: Value) -> Record {
        Record {
            line: 1,
            seq,
            t_ns: seq * 10,
            body: Body::Event {
                kind: Kind::Inv,
                data,
            },
            raw: String::new(),
        }
    }

    #[test]
    fn counts_piotlb_page_with_kva_and_ih() {
        let mut s = Summary::new(String::new(), viommu::Levels::Four.kernel_half_start());
        let d = json!({"event":"invalidation","slot":3,"removed":2,"descriptor":
            {"type":"piotlb","did":1,"pasid":5,"granularity":"page","addr":0xffff_8880_0000_0000u64,"am":9,"ih":true}});
        s.add(&rec(1, d));
        s.finish(None);
        let c = s.counters();
        assert_eq!(c["invalidations"]["piotlb"], 1);
        assert_eq!(c["granularity"]["piotlb_page"], 1);
        assert_eq!(c["granularity"]["ih1"], 1);
        assert_eq!(c["kva_invalidations"], 1);
        assert_eq!(s.invalidations.by_pasid.get("5"), 1);
        assert_eq!(s.busiest_ranges[0].start, "0xffff888000000000");
    }

    #[test]
    fn page_range_matches_the_model() {
        for (addr, am) in [
            (0x1234_5000u64, 0u8),
            (0x1234_5000, 9),
            (u64::MAX, 51),
            (0, 52),
            (5, 63),
        ] {
            assert_eq!(
                page_range(addr, u64::from(am)),
                viommu::cache::page_range_bounds(addr, am)
            );
        }
    }

    #[test]
    fn reject_unbounded_keys() {
        let mut b = Breakdown::default();
        for i in 0..(MAX_KEYS + 10) {
            b.add(i.to_string(), 1);
        }
        assert_eq!(b.0.len(), MAX_KEYS + 1);
        assert_eq!(b.get("other"), 10);
    }

    #[test]
    fn diff_lists_changed_counters() {
        let mut a = Summary::default();
        let mut b = Summary::default();
        a.free_hints = 3;
        b.free_hints = 5;
        b.freed_while_cached = 2;
        let rows = diff(&a, &b);
        assert!(rows.contains(&DiffRow {
            counter: "free_hints".into(),
            a: 3,
            b: 5,
            delta: 2
        }));
        assert!(rows.contains(&DiffRow {
            counter: "freed_while_cached".into(),
            a: 0,
            b: 2,
            delta: 2
        }));
        assert!(diff_human(&rows, "a", "b").contains("+2"));
    }

    #[test]
    fn hexify_addresses() {
        let v = hexify(&json!({"addr": 4096, "level": 2, "x": {"gpa": 16}}));
        assert_eq!(
            v,
            json!({"addr": "0x1000", "level": 2, "x": {"gpa": "0x10"}})
        );
    }
}
