//! Callgrind driver for the model's hot paths: sets up the same unit as
//! `benches/translate.rs` and runs one operation N times, so
//! `valgrind --tool=callgrind` instruction counts at two values of N give the
//! load-independent cost per operation. Usage:
//! `hotpath OP N` with OP one of `iotlb_hit`, `iotlb_hit_checker`,
//! `full_walk_4level`, `full_walk_5level`, `walker_4level`,
//! `pde_hit_speculative`, `descriptors` (N batches of 1023 page-selective
//! PASID-based IOTLB invalidations).

use std::hint::black_box;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use viommu::qi::{self, PiotlbGranularity};
use viommu::walk::{self, Geometry, Path, index};
use viommu::{
    Access, CachePolicy, CheckMode, Config, Descriptor, DmaRequest, Levels, Viommu, regs,
};

const RID: u16 = 0x20;
const ROOT: u64 = 0x1000;
const CTX: u64 = 0x2000;
const PASID_DIR: u64 = 0x3000;
const PASID_TABLE: u64 = 0x4000;
const QUEUE: u64 = 0x10000;
const QS: u64 = 3;
const TABLES: u64 = 0x100000;
const U: u64 = 7;
const VA: u64 = 0x7f00_0000_0000;
const VA5: u64 = 0x00f0_1234_5600_0000;

struct Unit {
    mem: GuestMemoryMmap<()>,
    unit: Viommu,
    pgd: u64,
    next: u64,
    levels: u8,
}

impl Unit {
    fn new(cache: CachePolicy, check: CheckMode, levels: Levels) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).expect("memory");
        let config = Config {
            cache,
            check,
            levels,
            ..Config::default()
        };
        let mut u = Unit {
            mem,
            unit: Viommu::new(config),
            pgd: TABLES,
            next: TABLES + 0x1000,
            levels: levels.count(),
        };
        u.w(ROOT, CTX | 1);
        u.w(CTX + u64::from(RID & 0x7f) * 32, PASID_DIR | 0x1d);
        u.w(PASID_DIR, PASID_TABLE | 1);
        let pe = PASID_TABLE + 64;
        u.w(pe + 8, 1);
        u.w(pe + 16, TABLES | if levels == Levels::Five { 4 } else { 0 });
        u.w(pe, 1 | (1 << 6));
        u.reg(regs::RTADDR, ROOT | (1 << 10));
        u.reg(regs::GCMD, u64::from(regs::gcmd::SRTP));
        u.reg(regs::IQA, QUEUE | (1 << 11) | QS);
        u.reg(regs::GCMD, u64::from(regs::gcmd::QIE | regs::gcmd::TE));
        u
    }

    fn w(&self, gpa: u64, v: u64) {
        self.mem.write_obj(v, GuestAddress(gpa)).expect("write");
    }

    fn r(&self, gpa: u64) -> u64 {
        self.mem.read_obj(GuestAddress(gpa)).expect("read")
    }

    fn reg(&mut self, off: u64, v: u64) {
        let mem = self.mem.clone();
        if off == regs::GCMD {
            let v = u32::try_from(v).expect("32-bit register");
            self.unit.mmio_write(&mem, off, &v.to_le_bytes());
        } else {
            self.unit.mmio_write(&mem, off, &v.to_le_bytes());
        }
    }

    fn map(&mut self, va: u64, pa: u64) {
        let mut table = self.pgd;
        for l in (2..=self.levels).rev() {
            let e = table + index(va, l) * 8;
            let v = self.r(e);
            table = if v & 1 != 0 {
                v & !0xfff
            } else {
                let t = self.next;
                self.next += 0x1000;
                self.w(e, t | U);
                t
            };
        }
        self.w(table + index(va, 1) * 8, pa | U);
    }
}

fn req(va: u64) -> DmaRequest {
    DmaRequest {
        rid: RID,
        pasid: Some(1),
        addr: va,
        access: Access::Read,
        privileged: false,
    }
}

fn translate_loop(cache: CachePolicy, check: CheckMode, levels: Levels, va: u64, n: u64) {
    let mut u = Unit::new(cache, check, levels);
    u.map(va, 0x20_0000);
    let mem = u.mem.clone();
    u.unit.translate(&mem, &req(va)).expect("first translation");
    for _ in 0..n {
        black_box(
            u.unit
                .translate(&mem, black_box(&req(va)))
                .expect("translation"),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map(String::as_str).unwrap_or("iotlb_hit");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    match op {
        "iotlb_hit" => translate_loop(
            CachePolicy::Adversarial,
            CheckMode::Off,
            Levels::Four,
            VA,
            n,
        ),
        "iotlb_hit_checker" => translate_loop(
            CachePolicy::Adversarial,
            CheckMode::All,
            Levels::Four,
            VA,
            n,
        ),
        "full_walk_4level" => {
            translate_loop(CachePolicy::None, CheckMode::Off, Levels::Four, VA, n)
        }
        "full_walk_5level" => {
            translate_loop(CachePolicy::None, CheckMode::Off, Levels::Five, VA5, n)
        }
        "walker_4level" => {
            let mut u = Unit::new(CachePolicy::None, CheckMode::Off, Levels::Four);
            u.map(VA, 0x20_0000);
            let geo = Geometry::new(4, 48, true);
            let mut path = Path::default();
            for _ in 0..n {
                black_box(
                    walk::walk(&u.mem, &geo, geo.root(TABLES), black_box(VA), &mut path)
                        .expect("walk"),
                );
            }
        }
        "pde_hit_speculative" => {
            let mut u = Unit::new(CachePolicy::Adversarial, CheckMode::Off, Levels::Four);
            u.map(VA, 0x20_0000);
            u.map(VA + 0x1000, 0x21_0000);
            let mem = u.mem.clone();
            u.unit.translate(&mem, &req(VA)).expect("first translation");
            for _ in 0..n {
                u.unit.speculative_walk(&mem, black_box(&req(VA + 0x1000)));
            }
        }
        "descriptors" => {
            let mut u = Unit::new(CachePolicy::Adversarial, CheckMode::Off, Levels::Four);
            u.map(VA, 0x20_0000);
            let mem = u.mem.clone();
            u.unit.translate(&mem, &req(VA)).expect("first translation");
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
                for (j, q) in (0u64..).zip(qi::encode(&d).iter()) {
                    u.w(QUEUE + i * 32 + 8 * j, *q);
                }
            }
            let per = slots - 1;
            let mut tail = 0;
            for _ in 0..n {
                tail = (tail + per * 32) % (4096 << QS);
                u.reg(regs::IQT, tail);
            }
        }
        other => eprintln!("unknown op {other}"),
    }
}
