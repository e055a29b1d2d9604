//! Callgrind driver for the model's hot paths: sets up the same unit as
//! `benches/translate.rs` and runs one operation N times, so
//! `valgrind --tool=callgrind` instruction counts at two values of N give the
//! load-independent cost per operation. Usage:
//! `hotpath OP N` with OP one of `iotlb_hit`, `iotlb_hit_checker`,
//! `full_walk_4level`, `full_walk_5level`, `walker_4level`,
//! `pde_hit_speculative`, `pde_hit_speculative_checker`, `descriptors` (N batches of 1023 page-selective
//! PASID-based IOTLB invalidations).

use std::hint::black_box;

use viommu::descriptor::{self as qi, PiotlbGranularity};
use viommu::walk::{self, Geometry, Path};
use viommu::{CachePolicy, CheckMode, Descriptor, Levels, regs};

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Bench as Unit, QS, QUEUE, TABLES};

const VA: u64 = 0x7f00_0000_0000;
const VA5: u64 = 0x00f0_1234_5600_0000;

fn translate_loop(cache: CachePolicy, check: CheckMode, levels: Levels, va: u64, n: u64) {
    let mut u = Unit::new(cache, check, levels);
    u.map(va, 0x20_0000);
    let mem = u.mem.clone();
    u.unit
        .translate(&mem, &Unit::req(va))
        .expect("first translation");
    for _ in 0..n {
        black_box(
            u.unit
                .translate(&mem, black_box(&Unit::req(va)))
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
        "pde_hit_speculative" | "pde_hit_speculative_checker" => {
            let check = if op == "pde_hit_speculative" {
                CheckMode::Off
            } else {
                CheckMode::All
            };
            let mut u = Unit::new(CachePolicy::Adversarial, check, Levels::Four);
            u.map(VA, 0x20_0000);
            u.map(VA + 0x1000, 0x21_0000);
            let mem = u.mem.clone();
            u.unit
                .translate(&mem, &Unit::req(VA))
                .expect("first translation");
            for _ in 0..n {
                u.unit
                    .speculative_walk(&mem, black_box(&Unit::req(VA + 0x1000)));
            }
        }
        "descriptors" => {
            let mut u = Unit::new(CachePolicy::Adversarial, CheckMode::Off, Levels::Four);
            u.map(VA, 0x20_0000);
            let mem = u.mem.clone();
            u.unit
                .translate(&mem, &Unit::req(VA))
                .expect("first translation");
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
