//! The trace writer: a dedicated thread that serializes events to a JSON
//! Lines file, fed by a bounded queue.
//!
//! Producers (vCPU threads, through the `viommu` model's event sink, and the
//! serial console, through [`TraceSink::marker`]) only take a timestamp and
//! do one non-blocking push. When the queue is full the event is counted in
//! an atomic per-kind counter instead, and producers keep counting (without
//! touching the queue) until the writer has drained half of it: an
//! overloaded vCPU pays one uncontended atomic load per event. The writer
//! thread then writes a `dropped` record with the count (also when it goes
//! idle), and the totals in the `end` record, so a trace never loses events
//! silently.
//!
//! [`TraceWriter::finish`] (also run by `Drop`, and by [`finish_all`] for
//! the vmm's signal path) drains the queue, writes the `end` record and
//! flushes the file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use viommu::{Event, EventSink};

use super::{FORMAT_NAME, FORMAT_VERSION, Kind, KindSet};

/// Events the queue holds between producers and the writer thread. A single
/// IQT write can process up to 32768 descriptors (one event each) and a DMA
/// burst produces a translation event per page, so the queue absorbs a
/// whole invalidation-queue drain without drops while the writer catches up;
/// at about 100 bytes per queued event it bounds the queue to ~6.5 MiB.
pub const QUEUE_CAPACITY: usize = 1 << 16;

/// Longest guest serial marker kept, in bytes: serial lines are guest
/// output, so a guest that never sends a newline must not grow a record
/// without bound. Longer lines are cut at a character boundary.
pub const MAX_MARKER_BYTES: usize = 1024;

/// How long the writer thread waits for an event before it flushes its
/// buffer and writes any pending `dropped` record, so an idle run's trace is
/// on disk within this time.
pub const IDLE_FLUSH: Duration = Duration::from_millis(100);

/// Size of the writer thread's output buffer.
const BUFFER_BYTES: usize = 1 << 16;

/// Errors of the trace writer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The trace file could not be created.
    #[error("cannot create trace file {path}: {reason}")]
    Create {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the trace writer thread: {reason}")]
    Thread {
        /// The OS error.
        reason: String,
    },
    /// Writing the trace failed; records after the failure are lost (the
    /// count is in `lost`).
    #[error(
        "writing trace {path} failed after {written} records ({lost} later records lost): {reason}"
    )]
    Io {
        /// The file.
        path: String,
        /// Records written before the failure.
        written: u64,
        /// Records received after the failure.
        lost: u64,
        /// The OS error.
        reason: String,
    },
    /// The writer thread panicked.
    #[error("the trace writer thread for {path} panicked")]
    Panicked {
        /// The file.
        path: String,
    },
}

/// How to write a trace.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// Kinds to record (`--trace-events`); `dropped` and `end` always are.
    pub kinds: KindSet,
    /// The command line of the run, for the header.
    pub command: String,
    /// Lowest kernel-half address of the unit's paging mode
    /// (`viommu::Levels::kernel_half_start`), so readers can count KVA
    /// invalidations like the model does.
    pub kernel_half_start: u64,
    /// Queue capacity (tests use a small one); [`QUEUE_CAPACITY`] by default.
    pub capacity: usize,
    /// Run first thing in the writer thread (the vmm installs its seccomp
    /// filter there); none by default.
    pub on_start: Option<OnStart>,
}

/// Code the writer thread runs before anything else.
#[derive(Clone)]
pub struct OnStart(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for OnStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnStart(..)")
    }
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            kinds: KindSet::ALL,
            command: String::new(),
            kernel_half_start: viommu::Levels::Four.kernel_half_start(),
            capacity: QUEUE_CAPACITY,
            on_start: None,
        }
    }
}

/// What a finished trace holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TraceTotals {
    /// Records after the header, the `end` record included.
    pub records: u64,
    /// Event records written per kind, in [`Kind::FILTERABLE`] order.
    pub events: [u64; 7],
    /// Events dropped because the queue was full, per kind.
    pub dropped: [u64; 7],
    /// Events pushed after the trace was finished (not in the file).
    pub late: u64,
}

impl TraceTotals {
    /// Events dropped in all.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

enum Msg {
    Event { t_ns: u64, kind: Kind, event: Event },
    Marker { t_ns: u64, text: String },
    Finish,
}

/// State shared by producers and the writer thread.
#[derive(Debug)]
struct Shared {
    kinds: KindSet,
    start: Instant,
    closed: AtomicBool,
    /// Set by a producer that found the queue full; while set, producers
    /// count events as dropped without touching the queue, until the
    /// writer has drained half of it (or all of it) and clears the flag.
    /// An overloaded vCPU thus pays one uncontended load per event, not a
    /// contended failing push.
    shedding: AtomicBool,
    dropped: [AtomicU64; 7],
    late: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn dropped(&self) -> [u64; 7] {
        std::array::from_fn(|i| self.dropped[i].load(Ordering::Relaxed))
    }
}

/// A cloneable producer handle: the `viommu` event sink and the serial
/// marker. Pushing never blocks; see the module docs.
#[derive(Clone)]
pub struct TraceSink {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSink")
            .field("kinds", &self.shared.kinds)
            .finish()
    }
}

impl TraceSink {
    fn push(&self, kind: Kind, msg: impl FnOnce(u64) -> Msg) {
        if !self.shared.kinds.contains(kind) {
            return;
        }
        if self.shared.closed.load(Ordering::Relaxed) {
            self.shared.late.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let count_drop = |kind: Kind| {
            if let Some(i) = kind.index() {
                self.shared.dropped[i].fetch_add(1, Ordering::Relaxed);
            }
        };
        if self.shared.shedding.load(Ordering::Relaxed) {
            count_drop(kind);
            return;
        }
        let t_ns = self.shared.now_ns();
        match self.tx.try_send(msg(t_ns)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                count_drop(kind);
                self.shared.shedding.store(true, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.late.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a guest serial line as a marker (kind `serial`), cut to
    /// [`MAX_MARKER_BYTES`].
    pub fn marker(&self, text: &str) {
        self.push(Kind::Serial, |t_ns| Msg::Marker {
            t_ns,
            text: clip(text).to_string(),
        });
    }

    /// Whether events of `kind` are recorded (to skip building them).
    pub fn enabled(&self, kind: Kind) -> bool {
        self.shared.kinds.contains(kind)
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped().iter().sum()
    }
}

impl EventSink for TraceSink {
    fn event(&mut self, event: &Event) {
        let kind = Kind::of_event(event);
        self.push(kind, |t_ns| Msg::Event {
            t_ns,
            kind,
            event: event.clone(),
        });
    }
}

/// `text` cut to [`MAX_MARKER_BYTES`] at a character boundary, without a
/// trailing line end.
fn clip(text: &str) -> &str {
    let text = text.trim_end_matches(['\r', '\n']);
    if text.len() <= MAX_MARKER_BYTES {
        return text;
    }
    let mut end = MAX_MARKER_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

type Outcome = Result<TraceTotals, WriteError>;

/// The owner side, shared with the registry that [`finish_all`] walks.
struct Control {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    path: String,
    thread: Mutex<Option<JoinHandle<Outcome>>>,
    outcome: Mutex<Option<Outcome>>,
}

impl Control {
    fn finish(&self) -> Outcome {
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = thread.take() {
            self.shared.closed.store(true, Ordering::Relaxed);
            // Blocking is fine here (not a vCPU path): the writer drains the
            // queue. If the thread is gone the send fails at once.
            let _ = self.tx.send(Msg::Finish);
            let outcome = handle.join().unwrap_or_else(|_| {
                Err(WriteError::Panicked {
                    path: self.path.clone(),
                })
            });
            *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        }
        drop(thread);
        let outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome.as_ref() {
            Some(Ok(t)) => Ok(TraceTotals {
                late: self.shared.late.load(Ordering::Relaxed),
                ..*t
            }),
            Some(Err(e)) => Err(e.clone()),
            None => Err(WriteError::Panicked {
                path: self.path.clone(),
            }),
        }
    }
}

/// Every writer not yet finished, for [`finish_all`].
static LIVE: Mutex<Vec<Weak<Control>>> = Mutex::new(Vec::new());

/// Finishes every live trace writer of the process: drains its queue, writes
/// the `end` record and flushes the file. For the vmm's SIGINT/SIGTERM path
/// and any exit that skips destructors (`std::process::exit`).
///
/// Not async-signal-safe (it takes locks and joins threads): call it from
/// ordinary code after the signal was noticed (a signal-hook flag, a
/// signalfd or self-pipe in the event loop), never inside a signal handler.
/// Returns the outcome of each writer it finished.
pub fn finish_all() -> Vec<Result<TraceTotals, WriteError>> {
    let live: Vec<Weak<Control>> =
        std::mem::take(&mut *LIVE.lock().unwrap_or_else(PoisonError::into_inner));
    live.iter()
        .filter_map(Weak::upgrade)
        .map(|c| c.finish())
        .collect()
}

/// A trace being written. Create it, hand [`TraceWriter::sink`] clones to
/// the model (`Viommu::set_event_sink(Some(Box::new(sink)))`) and the serial
/// console, and call [`TraceWriter::finish`] on every exit path (`Drop` does
/// too).
pub struct TraceWriter {
    sink: TraceSink,
    control: Arc<Control>,
}

impl std::fmt::Debug for TraceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter")
            .field("path", &self.control.path)
            .finish()
    }
}

impl TraceWriter {
    /// Creates (truncates) the trace file at `path`, writes its header and
    /// starts the writer thread.
    pub fn create(path: &Path, options: TraceOptions) -> Result<TraceWriter, WriteError> {
        let file = File::create(path).map_err(|e| WriteError::Create {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        TraceWriter::to_writer(Box::new(file), path.display().to_string(), options)
    }

    /// Like [`create`](Self::create) over any writer; `name` names it in
    /// errors.
    pub fn to_writer(
        out: Box<dyn Write + Send>,
        name: String,
        options: TraceOptions,
    ) -> Result<TraceWriter, WriteError> {
        let (tx, rx) = mpsc::sync_channel(options.capacity.max(1));
        let shared = Arc::new(Shared {
            kinds: options.kinds,
            start: Instant::now(),
            closed: AtomicBool::new(false),
            shedding: AtomicBool::new(false),
            dropped: Default::default(),
            late: AtomicU64::new(0),
        });
        let header = Header::new(&options);
        let mut thread = WriterThread {
            out: BufWriter::with_capacity(BUFFER_BYTES, out),
            rx,
            shared: Arc::clone(&shared),
            name: name.clone(),
            seq: 0,
            totals: TraceTotals::default(),
            reported: [0; 7],
            shed_threshold: (options.capacity / 2).max(1),
            shed_drained: 0,
            failed: None,
            lost: 0,
        };
        // The header goes out before the thread starts, so a create error
        // (full disk, closed pipe) is reported to the caller at once.
        thread.write_line(&header);
        if let Some(e) = thread.failed.take() {
            return Err(WriteError::Io {
                path: name,
                written: 0,
                lost: 0,
                reason: e.to_string(),
            });
        }
        let on_start = options.on_start.clone();
        let handle = std::thread::Builder::new()
            .name("trace-writer".to_string())
            .spawn(move || {
                if let Some(f) = on_start {
                    (f.0)();
                }
                thread.run()
            })
            .map_err(|e| WriteError::Thread {
                reason: e.to_string(),
            })?;
        let control = Arc::new(Control {
            tx: tx.clone(),
            shared: Arc::clone(&shared),
            path: name,
            thread: Mutex::new(Some(handle)),
            outcome: Mutex::new(None),
        });
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&control));
        Ok(TraceWriter {
            sink: TraceSink { tx, shared },
            control,
        })
    }

    /// A producer handle (cheap to clone): the `viommu::EventSink` and the
    /// serial marker.
    pub fn sink(&self) -> TraceSink {
        self.sink.clone()
    }

    /// Records a guest serial line as a marker.
    pub fn marker(&self, text: &str) {
        self.sink.marker(text);
    }

    /// Drains the queue, writes the `end` record, flushes the file and stops
    /// the writer thread. Idempotent: later calls return the first outcome.
    /// Events pushed afterwards are counted in `late` only (not in the
    /// file). Call it once the vCPU threads have stopped producing (an event
    /// pushed at the very moment of the call may miss both the file and the
    /// counts).
    pub fn finish(&self) -> Result<TraceTotals, WriteError> {
        self.control.finish()
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        if let Err(e) = self.control.finish() {
            eprintln!("stalewalk: trace: {e}");
        }
    }
}

/// The header line.
#[derive(Serialize)]
struct Header<'a> {
    format: &'static str,
    version: &'static str,
    created: String,
    tool_version: &'static str,
    command: &'a str,
    events: Vec<&'static str>,
    kernel_half_start: u64,
}

impl<'a> Header<'a> {
    fn new(options: &'a TraceOptions) -> Header<'a> {
        Header {
            format: FORMAT_NAME,
            version: FORMAT_VERSION,
            created: rfc3339_utc(SystemTime::now()),
            tool_version: env!("CARGO_PKG_VERSION"),
            command: &options.command,
            events: options
                .kinds
                .kinds()
                .into_iter()
                .map(Kind::as_str)
                .collect(),
            kernel_half_start: options.kernel_half_start,
        }
    }
}

#[derive(Serialize)]
struct EventLine<'a> {
    seq: u64,
    t_ns: u64,
    kind: &'static str,
    data: &'a Event,
}

#[derive(Serialize)]
struct SerialLine<'a> {
    seq: u64,
    t_ns: u64,
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct DroppedLine {
    seq: u64,
    t_ns: u64,
    kind: &'static str,
    count: u64,
    total: u64,
    by_kind: KindCounts,
}

#[derive(Serialize)]
struct EndLine {
    seq: u64,
    t_ns: u64,
    kind: &'static str,
    records: u64,
    events: KindCounts,
    dropped: u64,
    dropped_by_kind: KindCounts,
}

/// Per-kind counts as a JSON object keyed by kind name.
#[derive(Serialize)]
struct KindCounts {
    inv: u64,
    walk: u64,
    fault: u64,
    prq: u64,
    stale: u64,
    hint: u64,
    serial: u64,
}

impl From<[u64; 7]> for KindCounts {
    fn from(c: [u64; 7]) -> Self {
        let [inv, walk, fault, prq, stale, hint, serial] = c;
        KindCounts {
            inv,
            walk,
            fault,
            prq,
            stale,
            hint,
            serial,
        }
    }
}

struct WriterThread {
    out: BufWriter<Box<dyn Write + Send>>,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    name: String,
    seq: u64,
    totals: TraceTotals,
    /// Dropped counts already written in `dropped` records.
    reported: [u64; 7],
    /// Messages to drain after producers started shedding before they may
    /// push again (half the queue).
    shed_threshold: usize,
    /// Messages drained since shedding was seen.
    shed_drained: usize,
    failed: Option<io::Error>,
    lost: u64,
}

impl WriterThread {
    fn run(mut self) -> Outcome {
        loop {
            // try_recv first: a busy writer skips the deadline arithmetic
            // of recv_timeout.
            let next = match self.rx.try_recv() {
                Ok(msg) => Ok(msg),
                Err(TryRecvError::Empty) => {
                    if self.shared.shedding.load(Ordering::Relaxed) {
                        self.resume();
                    }
                    self.rx.recv_timeout(IDLE_FLUSH)
                }
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => {
                    self.write_msg(msg);
                    if self.shared.shedding.load(Ordering::Relaxed) {
                        self.shed_drained += 1;
                        if self.shed_drained >= self.shed_threshold {
                            self.resume();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.report_drops();
                    self.flush();
                }
            }
        }
        // Producers saw `closed` before Finish was queued; take what they
        // queued before that (at most the capacity).
        while let Ok(msg) = self.rx.try_recv() {
            self.write_msg(msg);
        }
        self.report_drops();
        // What the dropped records say, so the end record agrees with them
        // even if a producer that raced with `closed` counts one more now.
        self.totals.dropped = self.reported;
        let t_ns = self.shared.now_ns();
        self.seq += 1;
        let end = EndLine {
            seq: self.seq,
            t_ns,
            kind: Kind::End.as_str(),
            records: self.seq,
            events: self.totals.events.into(),
            dropped: self.totals.dropped_total(),
            dropped_by_kind: self.totals.dropped.into(),
        };
        self.write_line(&end);
        self.flush();
        self.totals.records = self.seq;
        match self.failed {
            None => Ok(self.totals),
            Some(e) => Err(WriteError::Io {
                path: self.name,
                written: self.seq.saturating_sub(self.lost),
                lost: self.lost,
                reason: e.to_string(),
            }),
        }
    }

    fn write_msg(&mut self, msg: Msg) {
        self.seq += 1;
        match msg {
            Msg::Event { t_ns, kind, event } => {
                if let Some(i) = kind.index() {
                    self.totals.events[i] += 1;
                }
                let line = EventLine {
                    seq: self.seq,
                    t_ns,
                    kind: kind.as_str(),
                    data: &event,
                };
                self.write_line(&line);
            }
            Msg::Marker { t_ns, text } => {
                self.totals.events[6] += 1;
                let line = SerialLine {
                    seq: self.seq,
                    t_ns,
                    kind: Kind::Serial.as_str(),
                    text: &text,
                };
                self.write_line(&line);
            }
            Msg::Finish => self.seq -= 1,
        }
    }

    /// Records what producers dropped and lets them push again.
    fn resume(&mut self) {
        self.report_drops();
        self.shed_drained = 0;
        self.shared.shedding.store(false, Ordering::Relaxed);
    }

    /// Writes a `dropped` record if producers dropped events since the last.
    fn report_drops(&mut self) {
        let now = self.shared.dropped();
        let delta: [u64; 7] = std::array::from_fn(|i| now[i] - self.reported[i]);
        let count: u64 = delta.iter().sum();
        if count == 0 {
            return;
        }
        self.reported = now;
        self.seq += 1;
        let line = DroppedLine {
            seq: self.seq,
            t_ns: self.shared.now_ns(),
            kind: Kind::Dropped.as_str(),
            count,
            total: now.iter().sum(),
            by_kind: delta.into(),
        };
        self.write_line(&line);
    }

    fn write_line<T: Serialize>(&mut self, line: &T) {
        if self.failed.is_some() {
            self.lost += 1;
            return;
        }
        let res = serde_json::to_writer(&mut self.out, line)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = res {
            self.failed = Some(e);
            self.lost += 1;
        }
    }

    fn flush(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.out.flush() {
                self.failed = Some(e);
            }
        }
    }
}

/// `t` as an RFC 3339 UTC timestamp with seconds (`2026-11-27T13:45:00Z`).
pub(crate) fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar,
    // eras of 400 years = 146097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// A writer into shared memory, for inspecting output.
    #[derive(Clone, Default)]
    struct Buf(Arc<StdMutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that always fails.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::other("disk on fire"))
        }
    }

    fn lines(buf: &Buf) -> Vec<serde_json::Value> {
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn writes_header_events_and_end() {
        let buf = Buf::default();
        let w =
            TraceWriter::to_writer(Box::new(buf.clone()), "mem".into(), TraceOptions::default())
                .unwrap();
        let mut sink = w.sink();
        sink.event(&Event::Hint {
            gpa: 0x5000,
            cached: true,
        });
        w.marker("stalewalk-guest: hello\n");
        let totals = w.finish().unwrap();
        assert_eq!(totals.records, 3);
        let l = lines(&buf);
        assert_eq!(l[0]["format"], FORMAT_NAME);
        assert_eq!(l[0]["version"], FORMAT_VERSION);
        assert_eq!(l[1]["seq"], 1);
        assert_eq!(l[1]["kind"], "hint");
        assert_eq!(l[1]["data"]["gpa"], 0x5000);
        assert_eq!(l[2]["text"], "stalewalk-guest: hello");
        assert_eq!(l[3]["kind"], "end");
        assert_eq!(l[3]["records"], 3);
        assert_eq!(l[3]["events"]["hint"], 1);
        assert_eq!(l[3]["dropped"], 0);
    }

    #[test]
    fn on_start_runs_first_in_the_writer_thread() {
        let seen = Arc::new(StdMutex::new(None));
        let s = seen.clone();
        let options = TraceOptions {
            on_start: Some(OnStart(Arc::new(move || {
                *s.lock().unwrap() = std::thread::current().name().map(str::to_string);
            }))),
            ..TraceOptions::default()
        };
        let buf = Buf::default();
        let w = TraceWriter::to_writer(Box::new(buf.clone()), "mem".into(), options).unwrap();
        w.finish().unwrap();
        assert_eq!(seen.lock().unwrap().as_deref(), Some("trace-writer"));
    }

    #[test]
    fn finish_is_idempotent_and_late_events_are_counted() {
        let buf = Buf::default();
        let w =
            TraceWriter::to_writer(Box::new(buf.clone()), "mem".into(), TraceOptions::default())
                .unwrap();
        let mut sink = w.sink();
        let first = w.finish().unwrap();
        sink.event(&Event::Hint {
            gpa: 0,
            cached: false,
        });
        let second = w.finish().unwrap();
        assert_eq!(first.records, second.records);
        assert_eq!(second.late, 1);
        assert_eq!(lines(&buf).len(), 2, "header and end only");
    }

    #[test]
    fn reject_write_failure_is_reported() {
        let err =
            TraceWriter::to_writer(Box::new(Broken), "broken".into(), TraceOptions::default());
        // The header fits in the buffer, so the failure shows at finish.
        let w = err.unwrap();
        w.marker("x");
        let e = w.finish().unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
    }

    #[test]
    fn reject_endless_marker_is_clipped() {
        let long = "é".repeat(MAX_MARKER_BYTES);
        let c = clip(&long);
        assert!(c.len() <= MAX_MARKER_BYTES && c.is_char_boundary(c.len()));
    }

    #[test]
    fn finish_all_finishes_live_writers() {
        let buf = Buf::default();
        let w =
            TraceWriter::to_writer(Box::new(buf.clone()), "mem".into(), TraceOptions::default())
                .unwrap();
        w.marker("before signal");
        let outcomes = finish_all();
        assert!(
            outcomes
                .iter()
                .any(|o| o.as_ref().is_ok_and(|t| t.events[6] == 1))
        );
        let l = lines(&buf);
        assert_eq!(l.last().unwrap()["kind"], "end");
        drop(w);
        assert_eq!(
            lines(&buf).len(),
            3,
            "drop after finish_all writes nothing more"
        );
    }

    #[test]
    fn rfc3339_formats_known_dates() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
        assert_eq!(rfc3339_utc(t), "2024-02-29T12:34:56Z");
    }
}
