//! Timings of the trace writer for `docs/PERFORMANCE.md` ("Tracing"):
//! the producer's cost per event (what a vCPU thread pays) and the events
//! per second the writer thread sustains. Ignored by default; run with
//!
//! ```text
//! cargo test --release -p stalewalk-tools --test trace_bench -- --ignored --nocapture
//! ```
//!
//! The assertions are loose sanity bounds (a debug build or a loaded
//! machine must not fail them); the printed medians are the numbers.

use std::path::PathBuf;
use std::time::Instant;

use stalewalk_tools::trace::writer::QUEUE_CAPACITY;
use stalewalk_tools::trace::{TraceOptions, TraceWriter};
use viommu::{Event, EventSink};

const RUNS: usize = 7;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stalewalk-trace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn translation(i: u64) -> Event {
    Event::Translation {
        rid: 0x20,
        pasid: Some(1),
        addr: 0x7f00_0000_0000 | (i << 12),
        access: viommu::Access::Read,
        privileged: false,
        speculative: false,
        result: viommu::event::TranslationOutcome::Ok {
            output: i << 12,
            size: 4096,
            pass_through: false,
        },
        hits: viommu::HitLevels {
            iotlb: true,
            ..viommu::HitLevels::default()
        },
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Fastest run: on a shared, loaded machine the closest to the
/// uncontended cost.
fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// This thread's CPU time in ns (Linux `schedstat`), so timings exclude
/// the time the thread waited for a CPU on a loaded machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A sink that does nothing: the cost of the call itself.
struct Null;
impl EventSink for Null {
    fn event(&mut self, e: &Event) {
        std::hint::black_box(e);
    }
}

#[test]
#[ignore = "timing; run with --release -- --ignored --nocapture"]
fn producer_cost_and_writer_throughput() {
    // Half the queue per burst, so no push finds it full.
    let burst = u64::try_from(QUEUE_CAPACITY / 2).unwrap();
    let events: Vec<Event> = (0..burst).map(translation).collect();

    let mut null = Null;
    let mut base = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        for e in &events {
            null.event(e);
        }
        base.push(t.elapsed().as_secs_f64() * 1e9 / events.len() as f64);
    }

    let mut push = Vec::new();
    let mut rate = Vec::new();
    for run in 0..RUNS {
        let path = temp(&format!("bench-{run}.trace"));
        let writer = TraceWriter::create(&path, TraceOptions::default()).unwrap();
        let mut sink = writer.sink();
        let start = Instant::now();
        for e in &events {
            sink.event(e);
        }
        let pushed = start.elapsed();
        push.push(pushed.as_secs_f64() * 1e9 / events.len() as f64);
        let totals = writer.finish().unwrap();
        let all = start.elapsed();
        assert_eq!(totals.dropped_total(), 0, "the burst fits the queue");
        rate.push(totals.events[1] as f64 / all.as_secs_f64());
        let bytes = std::fs::metadata(&path).unwrap().len();
        if run == 0 {
            println!(
                "trace of {burst} translations: {bytes} bytes ({} bytes/event)",
                bytes / burst
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
    // The writer's serialization alone (same line shape, into memory).
    #[derive(serde::Serialize)]
    struct Line<'a> {
        seq: u64,
        t_ns: u64,
        kind: &'static str,
        data: &'a Event,
    }
    let mut ser = Vec::new();
    // schedstat advances at scheduler ticks: sum over all runs (tens of ms)
    // for a usable resolution.
    let mut ser_cpu = 0u64;
    let mut buf = Vec::with_capacity(16 << 20);
    for _ in 0..RUNS {
        buf.clear();
        let t = Instant::now();
        let cpu = cpu_ns();
        for (i, e) in events.iter().enumerate() {
            let seq = u64::try_from(i).unwrap();
            serde_json::to_writer(
                &mut buf,
                &Line {
                    seq,
                    t_ns: seq,
                    kind: "walk",
                    data: e,
                },
            )
            .unwrap();
            buf.push(b'\n');
        }
        ser.push(t.elapsed().as_secs_f64() * 1e9 / events.len() as f64);
        ser_cpu += cpu_ns() - cpu;
    }
    println!(
        "serialization alone: {:.1} ns/event (median of {RUNS})",
        median(ser)
    );
    println!(
        "serialization CPU time (schedstat, all runs): {:.1} ns/event",
        ser_cpu as f64 / (RUNS as f64 * events.len() as f64)
    );
    let (best_push, best_rate) = (
        best(&push),
        -best(&rate.iter().map(|r| -r).collect::<Vec<_>>()),
    );
    let (base, push, rate) = (median(base), median(push), median(rate));
    println!(
        "best runs: push {best_push:.1} ns/event, writer {:.2} M events/s",
        best_rate / 1e6
    );
    println!("null sink call: {base:.1} ns/event (median of {RUNS})");
    println!("producer push (timestamp + clone + try_send): {push:.1} ns/event (median of {RUNS})");
    println!(
        "writer thread sustained: {:.2} M events/s (median of {RUNS}, burst of {burst} to a file)",
        rate / 1e6
    );
    assert!(push < 50_000.0, "a push costs {push} ns");

    // With the queue full, a push only counts the drop.
    let writer = TraceWriter::create(
        &temp("full.trace"),
        TraceOptions {
            capacity: 1,
            ..TraceOptions::default()
        },
    )
    .unwrap();
    let mut sink = writer.sink();
    let t = Instant::now();
    let n = 200_000u64;
    for i in 0..n {
        sink.event(&translation(i));
    }
    let per = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    let totals = writer.finish().unwrap();
    println!(
        "push into a full queue: {per:.1} ns/event ({} of {n} dropped and counted)",
        totals.dropped_total()
    );
    assert_eq!(totals.events[1] + totals.dropped_total(), n);
}
