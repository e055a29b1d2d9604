//! Criterion benchmark of how a page-selective PASID-based IOTLB
//! invalidation scales: with 512 or 4096 pages cached (IOTLB entries plus
//! their paging-structure entries, adversarial policy), one descriptor
//! removes them all through either the 16 MiB range that holds them or the
//! whole address space (AM 52). The cost should follow the number of
//! entries removed, not the size of the range. `tools/bench.sh` reads the
//! results. Run alone with
//! `cargo bench -p viommu --bench invalidate -- --warm-up-time 1 --measurement-time 2`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

use common::Bench;

use viommu::descriptor::PiotlbGranularity;
use viommu::{CachePolicy, CheckMode, Descriptor, Levels};

const VA: u64 = 0x7f00_0000_0000;
/// Page-selective AM covering 16 MiB (4096 pages).
const AM_16M: u8 = 12;

/// One vIOMMU with PASID 1 of requester 00:04.0 bound to a 4-level
/// first-stage table, checker off (the shared fixture).
fn rig() -> Bench {
    Bench::new(CachePolicy::Adversarial, CheckMode::Off, Levels::Four)
}

fn translate(r: &mut Bench, va: u64) {
    let mem = r.mem.clone();
    r.unit.translate(&mem, &Bench::req(va)).unwrap();
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("invalidate_scaling");
    for pages in [512u64, 4096] {
        for (range, addr, am) in [("16m", VA, AM_16M), ("all", 0, 52)] {
            let mut r = rig();
            for i in 0..pages {
                r.map(VA + (i << 12), 0x20_0000 + ((i & 255) << 12));
            }
            let flush = Descriptor::Piotlb {
                did: 1,
                pasid: 1,
                granularity: PiotlbGranularity::Page {
                    addr,
                    am,
                    ih: false,
                },
            };
            g.bench_function(format!("entries_{pages}_range_{range}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // Refill (not timed): every page's IOTLB entry and
                        // the paging-structure entries above it.
                        for i in 0..pages {
                            translate(&mut r, VA + (i << 12));
                        }
                        let t = Instant::now();
                        r.submit(black_box(std::slice::from_ref(&flush)));
                        total += t.elapsed();
                    }
                    total
                })
            });
            // The flush removed every cached page: the next translation of
            // the first page is a miss again.
            let misses = r.unit.counters().cache.iotlb.misses;
            translate(&mut r, VA);
            assert_eq!(r.unit.counters().cache.iotlb.misses, misses + 1);
        }
    }
    g.finish();
}

criterion_group!(benches, scaling);
criterion_main!(benches);
