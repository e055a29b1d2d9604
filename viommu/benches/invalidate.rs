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
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use viommu::qi::{self, PiotlbGranularity};
use viommu::walk::index;
use viommu::{
    Access, CachePolicy, CheckMode, Config, Descriptor, DmaRequest, Levels, Viommu, regs,
};

/// Requester id of the one device (bus 0, device 4).
const RID: u16 = 0x20;
/// Guest-physical layout: root table, scalable-mode context table, PASID
/// directory and table, invalidation queue, then the first-stage tables.
const ROOT: u64 = 0x1000;
const CTX: u64 = 0x2000;
const PASID_DIR: u64 = 0x3000;
const PASID_TABLE: u64 = 0x4000;
const QUEUE: u64 = 0x10000;
/// Queue size field: 2^QS 4 KiB pages (32 KiB, 1024 descriptors).
const QS: u64 = 3;
const TABLES: u64 = 0x10_0000;
/// Present, writable, user.
const PTE_PUW: u64 = 7;
/// Start of the cached pages: a 16 MiB-aligned user address.
const VA: u64 = 0x7f00_0000_0000;
/// Page-selective AM covering 16 MiB (4096 pages).
const AM_16M: u8 = 12;

/// One vIOMMU with PASID 1 of `RID` bound to a 4-level first-stage table.
struct Rig {
    mem: GuestMemoryMmap<()>,
    unit: Viommu,
    next_table: u64,
    tail: u64,
}

impl Rig {
    fn new() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let config = Config {
            cache: CachePolicy::Adversarial,
            check: CheckMode::Off,
            levels: Levels::Four,
            ..Config::default()
        };
        let mut r = Rig {
            mem,
            unit: Viommu::new(config),
            next_table: TABLES + 0x1000,
            tail: 0,
        };
        r.write(ROOT, CTX | 1);
        r.write(CTX + u64::from(RID & 0x7f) * 32, PASID_DIR | 0x1d);
        r.write(PASID_DIR, PASID_TABLE | 1);
        // PASID 1: DID 1, first-stage table at TABLES, first-stage only.
        let pe = PASID_TABLE + 64;
        r.write(pe + 8, 1);
        r.write(pe + 16, TABLES);
        r.write(pe, 1 | (1 << 6));
        r.reg64(regs::RTADDR, ROOT | (1 << 10));
        r.gcmd(regs::gcmd::SRTP);
        r.reg64(regs::IQA, QUEUE | (1 << 11) | QS);
        r.gcmd(regs::gcmd::QIE | regs::gcmd::TE);
        r
    }

    fn write(&self, gpa: u64, v: u64) {
        self.mem.write_obj(v, GuestAddress(gpa)).unwrap();
    }

    fn read(&self, gpa: u64) -> u64 {
        self.mem.read_obj(GuestAddress(gpa)).unwrap()
    }

    fn reg64(&mut self, off: u64, v: u64) {
        let mem = self.mem.clone();
        self.unit.mmio_write(&mem, off, &v.to_le_bytes());
    }

    fn gcmd(&mut self, v: u32) {
        let mem = self.mem.clone();
        self.unit.mmio_write(&mem, regs::GCMD, &v.to_le_bytes());
    }

    /// Maps `va` to `pa` with 4 KiB pages, allocating tables as needed.
    fn map(&mut self, va: u64, pa: u64) {
        let mut table = TABLES;
        for level in (2..=4u8).rev() {
            let e = table + index(va, level) * 8;
            let v = self.read(e);
            table = if v & 1 != 0 {
                v & !0xfff
            } else {
                let t = self.next_table;
                self.next_table += 0x1000;
                self.write(e, t | PTE_PUW);
                t
            };
        }
        self.write(table + index(va, 1) * 8, pa | PTE_PUW);
    }

    fn translate(&mut self, va: u64) {
        let mem = self.mem.clone();
        let req = DmaRequest {
            rid: RID,
            pasid: Some(1),
            addr: va,
            access: Access::Read,
            privileged: false,
        };
        self.unit.translate(&mem, &req).unwrap();
    }

    /// Queues `d` and moves the tail past it (processes it).
    fn submit(&mut self, d: &Descriptor) {
        for (i, q) in (0u64..).zip(qi::encode(d)) {
            self.write(QUEUE + self.tail + 8 * i, q);
        }
        self.tail = (self.tail + 32) % (4096 << QS);
        let t = self.tail;
        self.reg64(regs::IQT, t);
    }
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("invalidate_scaling");
    for pages in [512u64, 4096] {
        for (range, addr, am) in [("16m", VA, AM_16M), ("all", 0, 52)] {
            let mut r = Rig::new();
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
                            r.translate(VA + (i << 12));
                        }
                        let t = Instant::now();
                        r.submit(black_box(&flush));
                        total += t.elapsed();
                    }
                    total
                })
            });
            // The flush removed every cached page: the next translation of
            // the first page is a miss again.
            let misses = r.unit.counters().cache.iotlb.misses;
            r.translate(VA);
            assert_eq!(r.unit.counters().cache.iotlb.misses, misses + 1);
        }
    }
    g.finish();
}

criterion_group!(benches, scaling);
criterion_main!(benches);
