//! The VT-d unit set-up shared by the viommu benchmarks and the
//! `hotpath` callgrind driver (`examples/hotpath.rs`): one requester with a
//! first-stage PASID entry, queued invalidation on, translation on, and
//! helpers to map pages and submit descriptors, all through the unit's
//! registers and guest memory. Each user takes the parts it needs.

// Every target includes this file and uses a different part of it.
#![allow(dead_code)]

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use viommu::descriptor as qi;
use viommu::walk::index;
use viommu::{
    Access, CachePolicy, CheckMode, Config, Descriptor, DmaRequest, Levels, Viommu, regs,
};

pub const RID: u16 = 0x20;
pub const ROOT: u64 = 0x1000;
pub const CTX: u64 = 0x2000;
pub const PASID_DIR: u64 = 0x3000;
pub const PASID_TABLE: u64 = 0x4000;
pub const QUEUE: u64 = 0x10000; // 32 KiB: 1024 256-bit descriptors
pub const QS: u64 = 3;
pub const TABLES: u64 = 0x100000;
pub const U: u64 = 7;

pub struct Bench {
    pub mem: GuestMemoryMmap<()>,
    pub unit: Viommu,
    pub pgd: u64,
    pub next: u64,
    pub levels: u8,
    pub tail: u64,
}

impl Bench {
    pub fn new(cache: CachePolicy, check: CheckMode, levels: Levels) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let config = Config {
            cache,
            check,
            levels,
            ..Config::default()
        };
        let mut b = Bench {
            mem,
            unit: Viommu::new(config),
            pgd: TABLES,
            next: TABLES + 0x1000,
            levels: levels.count(),
            tail: 0,
        };
        b.w(ROOT, CTX | 1);
        b.w(CTX + u64::from(RID & 0x7f) * 32, PASID_DIR | 0x1d);
        b.w(PASID_DIR, PASID_TABLE | 1);
        let pe = PASID_TABLE + 64;
        b.w(pe + 8, 1);
        b.w(pe + 16, TABLES | if levels == Levels::Five { 4 } else { 0 });
        b.w(pe, 1 | (1 << 6));
        b.reg(regs::RTADDR, ROOT | (1 << 10));
        b.reg(regs::GCMD, u64::from(regs::gcmd::SRTP));
        b.reg(regs::IQA, QUEUE | (1 << 11) | QS);
        b.reg(regs::GCMD, u64::from(regs::gcmd::QIE | regs::gcmd::TE));
        b
    }

    pub fn w(&self, gpa: u64, v: u64) {
        self.mem.write_obj(v, GuestAddress(gpa)).unwrap();
    }

    pub fn r(&self, gpa: u64) -> u64 {
        self.mem.read_obj(GuestAddress(gpa)).unwrap()
    }

    pub fn reg(&mut self, off: u64, v: u64) {
        let mem = self.mem.clone();
        if off == regs::GCMD {
            self.unit
                .mmio_write(&mem, off, &u32::try_from(v).unwrap().to_le_bytes());
        } else {
            self.unit.mmio_write(&mem, off, &v.to_le_bytes());
        }
    }

    pub fn map(&mut self, va: u64, pa: u64) {
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

    pub fn req(va: u64) -> DmaRequest {
        DmaRequest {
            rid: RID,
            pasid: Some(1),
            addr: va,
            access: Access::Read,
            privileged: false,
        }
    }

    pub fn submit(&mut self, d: &[Descriptor]) {
        for x in d {
            for (i, q) in qi::encode(x).iter().enumerate() {
                self.w(QUEUE + self.tail + 8 * i as u64, *q);
            }
            self.tail = (self.tail + 32) % (4096 << QS);
        }
        let t = self.tail;
        self.reg(regs::IQT, t);
    }
}
