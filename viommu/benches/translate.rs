//! Criterion benchmarks of the model's hot paths, on the product path: the
//! unit configured as `stalewalk run` configures it (adversarial caches, no
//! event sink since the report needs none; the checker `all` or `off`),
//! plus `_traced` rows with the sink a `--trace` run installs (minus its file
//! I/O). Rows: IOTLB hit, PDE-cache hit, full 4- and 5-level walks,
//! descriptor processing throughput, and a large-range invalidation over
//! many cached entries. Run with
//! `cargo bench -p viommu --bench translate -- --warm-up-time 1 --measurement-time 3`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use viommu::descriptor::{self as qi, PiotlbGranularity};
use viommu::walk::{self, Geometry, Path};
use viommu::{CachePolicy, CheckMode, Descriptor, Levels};

mod common;

use common::{Bench, QS, QUEUE, TABLES};

const VA: u64 = 0x7f00_0000_0000;
const VA5: u64 = 0x00f0_1234_5600_0000;

fn translate_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");
    for (name, check) in [("", CheckMode::Off), ("_checker", CheckMode::All)] {
        for traced in [false, true] {
            let mut b = if traced {
                Bench::traced(CachePolicy::Adversarial, check, Levels::Four)
            } else {
                Bench::new(CachePolicy::Adversarial, check, Levels::Four)
            };
            b.map(VA, 0x20_0000);
            let mem = b.mem.clone();
            b.unit.translate(&mem, &Bench::req(VA)).unwrap();
            let suffix = if traced { "_traced" } else { "" };
            g.bench_function(format!("iotlb_hit{name}{suffix}"), |bn| {
                bn.iter(|| b.unit.translate(&mem, black_box(&Bench::req(VA))).unwrap())
            });
        }
        // IOTLB hits that move from page to page (a device streaming a
        // buffer): each page's first hit cannot use the last-hit memo.
        let mut b = Bench::new(CachePolicy::Adversarial, check, Levels::Four);
        for i in 0..64u64 {
            b.map(VA + (i << 12), 0x20_0000 + (i << 12));
        }
        let mem = b.mem.clone();
        for i in 0..64u64 {
            b.unit.translate(&mem, &Bench::req(VA + (i << 12))).unwrap();
        }
        let mut i = 0u64;
        g.bench_function(format!("iotlb_hit_next_page{name}"), |bn| {
            bn.iter(|| {
                i = (i + 1) & 63;
                b.unit
                    .translate(&mem, black_box(&Bench::req(VA + (i << 12))))
                    .unwrap()
            })
        });

        let mut b = Bench::new(CachePolicy::Adversarial, check, Levels::Four);
        b.map(VA, 0x20_0000);
        b.map(VA + 0x1000, 0x21_0000);
        let mem = b.mem.clone();
        b.unit.translate(&mem, &Bench::req(VA)).unwrap();
        g.bench_function(format!("pde_hit_speculative{name}"), |bn| {
            bn.iter(|| {
                b.unit
                    .speculative_walk(&mem, black_box(&Bench::req(VA + 0x1000)))
            })
        });
    }

    // PDE hit on a real translation: each iteration translates a page whose
    // leaf was just dropped with a leaf-only (IH=1) flush; the flush alone is
    // measured too, so the difference is the PDE-hit translation.
    let mut b = Bench::new(CachePolicy::Adversarial, CheckMode::Off, Levels::Four);
    b.map(VA, 0x20_0000);
    b.map(VA + 0x1000, 0x21_0000);
    let mem = b.mem.clone();
    b.unit.translate(&mem, &Bench::req(VA)).unwrap();
    let flush = [Descriptor::Piotlb {
        did: 1,
        pasid: 1,
        granularity: PiotlbGranularity::Page {
            addr: VA + 0x1000,
            am: 0,
            ih: true,
        },
    }];
    g.bench_function("ih1_flush_alone", |bn| {
        bn.iter(|| b.submit(black_box(&flush)))
    });
    g.bench_function("pde_hit_translate_plus_ih1_flush", |bn| {
        bn.iter(|| {
            b.unit
                .translate(&mem, black_box(&Bench::req(VA + 0x1000)))
                .unwrap();
            b.submit(&flush);
        })
    });

    for (name, levels, va) in [
        ("full_walk_4level", Levels::Four, VA),
        ("full_walk_5level", Levels::Five, VA5),
    ] {
        let mut b = Bench::new(CachePolicy::None, CheckMode::Off, levels);
        b.map(va, 0x20_0000);
        let mem = b.mem.clone();
        b.unit.translate(&mem, &Bench::req(va)).unwrap();
        g.bench_function(name, |bn| {
            bn.iter(|| b.unit.translate(&mem, black_box(&Bench::req(va))).unwrap())
        });
    }

    // The walker alone (what a full walk costs once context and PASID
    // entries are cached): 4 and 5 levels from the root.
    for (name, levels, va) in [
        ("walker_4level", Levels::Four, VA),
        ("walker_5level", Levels::Five, VA5),
    ] {
        let mut b = Bench::new(CachePolicy::None, CheckMode::Off, levels);
        b.map(va, 0x20_0000);
        let geo = Geometry::new(levels.count(), 48, true);
        let mem = b.mem.clone();
        let mut path = Path::default();
        g.bench_function(name, |bn| {
            bn.iter(|| walk::walk(&mem, &geo, geo.root(TABLES), black_box(va), &mut path).unwrap())
        });
    }

    // A full walk with every cache and the checker on: each iteration first
    // drops everything with a PASID-selective flush (measured alone too).
    for (name, check) in [("", CheckMode::Off), ("_checker", CheckMode::All)] {
        let mut b = Bench::new(CachePolicy::Adversarial, check, Levels::Four);
        b.map(VA, 0x20_0000);
        let mem = b.mem.clone();
        let flush = [Descriptor::Piotlb {
            did: 1,
            pasid: 1,
            granularity: PiotlbGranularity::Pasid,
        }];
        g.bench_function(format!("miss_fill_plus_pasid_flush{name}"), |bn| {
            bn.iter(|| {
                b.unit.translate(&mem, black_box(&Bench::req(VA))).unwrap();
                b.submit(&flush);
            })
        });
    }
    g.finish();
}

fn queue_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    let mut b = Bench::new(CachePolicy::Adversarial, CheckMode::Off, Levels::Four);
    b.map(VA, 0x20_0000);
    let mem = b.mem.clone();
    b.unit.translate(&mem, &Bench::req(VA)).unwrap();
    // Fill the whole ring once with page-selective PASID-based IOTLB
    // invalidations (what Linux sends for SVA); each iteration then moves
    // the tail by 1023 slots.
    let slots = (4096u64 << QS) / 32;
    for i in 0..slots {
        let d = Descriptor::Piotlb {
            did: 1,
            pasid: 1,
            granularity: PiotlbGranularity::Page {
                addr: VA + (i << 12),
                am: 0,
                ih: false,
            },
        };
        for (j, q) in qi::encode(&d).iter().enumerate() {
            b.w(QUEUE + i * 32 + 8 * j as u64, *q);
        }
    }
    let per = slots - 1;
    g.throughput(Throughput::Elements(per));
    g.bench_function("piotlb_page_descriptors", |bn| {
        bn.iter(|| b.advance_tail(per * 32))
    });
    g.finish();

    // Large-range invalidation with many cached entries: 4096 IOTLB entries
    // plus their paging-structure entries, removed by one page-selective
    // invalidation of the kernel-style "everything" range.
    let mut g = c.benchmark_group("invalidate");
    let mut b = Bench::new(CachePolicy::Adversarial, CheckMode::Off, Levels::Four);
    for i in 0..4096u64 {
        b.map(VA + (i << 12), 0x20_0000 + ((i & 255) << 12));
    }
    let mem = b.mem.clone();
    let big = [Descriptor::Piotlb {
        did: 1,
        pasid: 1,
        granularity: PiotlbGranularity::Page {
            addr: 0,
            am: 52,
            ih: false,
        },
    }];
    let small = [Descriptor::Piotlb {
        did: 1,
        pasid: 1,
        granularity: PiotlbGranularity::Page {
            addr: 0xffff_8000_0000_0000,
            am: 30,
            ih: false,
        },
    }];
    g.bench_function("fill_4096_pages", |bn| {
        bn.iter(|| {
            for i in 0..4096u64 {
                b.unit.translate(&mem, &Bench::req(VA + (i << 12))).unwrap();
            }
            b.submit(&big);
        })
    });
    g.bench_function("kernel_range_with_4096_user_entries", |bn| {
        bn.iter_batched(
            || (),
            |()| b.submit(black_box(&small)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("range_4096_entries", |bn| {
        bn.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for i in 0..4096u64 {
                    b.unit.translate(&mem, &Bench::req(VA + (i << 12))).unwrap();
                }
                let t = Instant::now();
                b.submit(black_box(&big));
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, translate_benches, queue_benches);
criterion_main!(benches);
