//! The trace writer under pressure: a full queue drops events but counts
//! every one of them in `dropped` records and the end record (read back and
//! cross-checked by the reader); concurrent producers lose nothing
//! silently; the kind filter keeps only what was asked for.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use stalewalk_tools::trace::reader::{self, Body, ReadOptions};
use stalewalk_tools::trace::writer::IDLE_FLUSH;
use stalewalk_tools::trace::{Kind, KindSet, TraceOptions, TraceWriter};
use viommu::{Event, EventSink};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stalewalk-trace-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A file writer that blocks every write until the gate opens: the writer
/// thread stalls, so the queue fills.
#[derive(Clone)]
struct Gated {
    open: Arc<(Mutex<bool>, Condvar)>,
    file: Arc<Mutex<std::fs::File>>,
}

impl Gated {
    fn release(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }
}

impl Write for Gated {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut open = self.open.0.lock().unwrap();
        while !*open {
            open = self.open.1.wait(open).unwrap();
        }
        self.file.lock().unwrap().write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.lock().unwrap().flush()
    }
}

fn hint(gpa: u64) -> Event {
    Event::Hint { gpa, cached: false }
}

fn translation(addr: u64) -> Event {
    Event::Translation {
        rid: 0x20,
        pasid: Some(1),
        addr,
        access: viommu::Access::Read,
        privileged: false,
        speculative: false,
        result: viommu::event::TranslationOutcome::Ok {
            output: addr,
            size: 4096,
            pass_through: false,
        },
        hits: viommu::HitLevels::default(),
    }
}

#[test]
fn full_queue_drops_are_counted_and_recorded() {
    const CAPACITY: usize = 8;
    const PUSHED: u64 = 1000;
    let path = temp("dropped.trace");
    let gated = Gated {
        open: Arc::default(),
        file: Arc::new(Mutex::new(std::fs::File::create(&path).unwrap())),
    };
    let options = TraceOptions {
        capacity: CAPACITY,
        ..TraceOptions::default()
    };
    let writer = TraceWriter::to_writer(Box::new(gated.clone()), "gated".into(), options).unwrap();
    let mut sink = writer.sink();
    sink.event(&hint(0));
    // The writer thread takes that event, idles, flushes, and blocks in the
    // gate; from then on the queue holds CAPACITY events.
    std::thread::sleep(IDLE_FLUSH * 3);
    for i in 1..PUSHED {
        sink.event(&hint(i << 12));
    }
    let dropped = sink.dropped();
    assert_eq!(
        dropped,
        PUSHED - 1 - CAPACITY as u64,
        "everything beyond the queue is dropped"
    );
    gated.release();
    // Once the writer has drained the queue, producers push again.
    std::thread::sleep(IDLE_FLUSH * 2);
    sink.event(&hint(PUSHED << 12));
    let totals = writer.finish().unwrap();
    assert_eq!(totals.dropped_total(), dropped);
    let written = totals.events[Kind::Hint.index().unwrap()];
    assert_eq!(written + dropped, PUSHED + 1, "written + dropped = pushed");
    assert_eq!(
        written,
        1 + CAPACITY as u64 + 1,
        "the push after the drain got through"
    );

    // Read back: the reader checks that the dropped records add up to the
    // end record's count; the trace says how many were lost.
    let (_, records) = reader::read_all(&path, ReadOptions::default()).unwrap();
    let recorded: u64 = records
        .iter()
        .filter_map(|r| match r.body {
            Body::Dropped { count, .. } => Some(count),
            _ => None,
        })
        .sum();
    assert_eq!(recorded, dropped, "dropped records carry every drop");
    let Body::End(end) = &records.last().unwrap().body else {
        panic!("no end record")
    };
    assert_eq!(end.dropped, dropped);
    assert_eq!(end.dropped_by_kind["hint"], dropped);
}

#[test]
fn concurrent_producers_lose_nothing_silently() {
    const THREADS: u64 = 4;
    const EACH: u64 = 20_000;
    let path = temp("concurrent.trace");
    let options = TraceOptions {
        capacity: 64,
        ..TraceOptions::default()
    };
    let writer = TraceWriter::create(&path, options).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let mut sink = writer.sink();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    sink.event(&translation((t << 32) | (i << 12)));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let totals = writer.finish().unwrap();
    let written = totals.events[Kind::Walk.index().unwrap()];
    assert_eq!(written + totals.dropped_total(), THREADS * EACH);
    let (_, records) = reader::read_all(&path, ReadOptions::default()).unwrap();
    let walks = records
        .iter()
        .filter(|r| r.kind() == Some(Kind::Walk))
        .count() as u64;
    assert_eq!(walks, written);
}

#[test]
fn filter_keeps_only_the_chosen_kinds() {
    let path = temp("filter.trace");
    let kinds: KindSet = "inv,hint".parse().unwrap();
    let writer = TraceWriter::create(
        &path,
        TraceOptions {
            kinds,
            ..TraceOptions::default()
        },
    )
    .unwrap();
    let mut sink = writer.sink();
    assert!(!sink.enabled(Kind::Walk));
    sink.event(&translation(0x1000));
    sink.event(&hint(0x2000));
    writer.marker("not recorded: serial is filtered out");
    let totals = writer.finish().unwrap();
    assert_eq!(totals.dropped_total(), 0, "filtered events are not drops");
    let (header, records) = reader::read_all(&path, ReadOptions::default()).unwrap();
    assert_eq!(header.events, vec!["inv", "hint"]);
    let kinds: Vec<_> = records.iter().map(|r| r.kind().unwrap()).collect();
    assert_eq!(kinds, vec![Kind::Hint, Kind::End]);
}

#[test]
fn drop_finishes_the_file() {
    let path = temp("drop.trace");
    {
        let writer = TraceWriter::create(&path, TraceOptions::default()).unwrap();
        writer.sink().event(&hint(0x3000));
        // No finish: Drop writes the end record.
    }
    let (_, records) = reader::read_all(&path, ReadOptions::default()).unwrap();
    assert_eq!(records.len(), 2);
    assert!(matches!(records[1].body, Body::End(_)));
    // Events after the writer is gone are counted as late, never block.
    let writer = TraceWriter::create(&temp("late.trace"), TraceOptions::default()).unwrap();
    let mut sink = writer.sink();
    writer.finish().unwrap();
    sink.event(&hint(0));
    std::thread::sleep(Duration::from_millis(1));
    assert_eq!(writer.finish().unwrap().late, 1);
}

#[test]
fn finish_while_producers_push_leaves_a_valid_trace() {
    for round in 0..5 {
        let path = temp(&format!("race-{round}.trace"));
        let options = TraceOptions {
            capacity: 16,
            ..TraceOptions::default()
        };
        let writer = TraceWriter::create(&path, options).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                let mut sink = writer.sink();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        sink.event(&hint((t << 40) | (i << 12)));
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        let totals = writer.finish().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        // The reader cross-checks every count of the end record.
        let (_, records) = reader::read_all(&path, ReadOptions::default()).unwrap();
        let Body::End(end) = &records.last().unwrap().body else {
            panic!("no end record")
        };
        assert_eq!(end.dropped, totals.dropped_total());
    }
}
