//! A scalable-mode unit for tests, benchmarks and fuzzing: guest memory
//! with a root table, a context entry for one requester (00:04.0) with PASIDs
//! and page requests enabled, PASID tables, queued invalidation and
//! translation enabled through the registers, and helpers to build
//! first-stage tables, bind PASIDs, submit descriptors and make accesses.
//! Everything goes through the unit's real interfaces (registers, guest
//! memory, the invalidation queue). Built for the crate's own tests and,
//! with the `test-utils` feature, for benchmarks, fuzz targets and other
//! crates' tests.

// A fixture: a failed set-up step is a failed test, so unwrap is the
// clearest way to stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::descriptor::{self as qi, PiotlbGranularity};
use crate::regs::{self, gcmd};
use crate::tables::pgtt;
use crate::walk::{self, PTE_P, PTE_PS, PTE_RW, PTE_US, index};
use crate::{Access, Config, Descriptor, DmaRequest, Translation, TranslationFault, Viommu};

/// The default requester, 00:04.0.
pub const RID: u16 = 0x0020;
/// Root table.
pub const ROOT: u64 = 0x1000;
/// Context table of bus 0.
pub const CTX: u64 = 0x2000;
/// PASID directory of [`RID`].
pub const PASID_DIR: u64 = 0x3000;
/// First PASID table (PASIDs 0..64); the next ones follow, one page each.
pub const PASID_TABLE: u64 = 0x4000;
/// A free word for invalidation-wait status writes.
pub const STATUS: u64 = 0x6000;
/// Invalidation queue of 256-bit descriptors: 4 KiB, or up to 32 KiB
/// ([`ScalableUnit::with_memory`]), below [`PRQ`].
pub const QUEUE: u64 = 0x8000;
/// Page-request queue.
pub const PRQ: u64 = 0x10000;
/// First page handed out by [`ScalableUnit::alloc_page`].
pub const TABLES: u64 = 0x100000;
/// Guest memory size of [`ScalableUnit::new`].
pub const MEM_SIZE: u64 = 0x800000;

/// Flags of a present, writable user entry.
pub const U: u64 = PTE_P | PTE_RW | PTE_US;
/// Flags of a present, writable supervisor entry.
pub const K: u64 = PTE_P | PTE_RW;

/// One register write of [`enable_sequence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegWrite {
    /// Register offset.
    pub offset: u64,
    /// Value written.
    pub value: u64,
    /// Access width in bytes (4 or 8).
    pub bytes: u8,
}

/// Where a scalable-mode unit's root table and queues are, and the
/// interrupt messages it raises (`None`: left masked at reset values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnableLayout {
    /// Scalable-mode root table.
    pub root: u64,
    /// Invalidation queue of 256-bit descriptors, `4096 << queue_order`
    /// bytes.
    pub queue: u64,
    /// IQA.QS.
    pub queue_order: u8,
    /// Page-request queue (4 KiB).
    pub prq: u64,
    /// Fault event message (address, data).
    pub fault_msi: Option<(u32, u32)>,
    /// Page-request event message (address, data).
    pub prq_msi: Option<(u32, u32)>,
}

/// The register writes that put a unit into scalable mode with queued
/// invalidation, a page-request queue and translation on, in the order
/// Linux 6.12's driver makes them: fault event message, root table
/// (SRTP), invalidation queue (QIE), page-request queue and its message,
/// then TE. The one copy of this sequence: the fixture applies it to a
/// `Viommu` directly, the devices' tests through the MMIO front end, the
/// fuzz harness through the platform's bus. (The replay harness keeps its
/// own set-up on purpose: see tools/src/replay/harness.rs.)
pub fn enable_sequence(l: &EnableLayout) -> Vec<RegWrite> {
    let w32 = |offset, value: u32| RegWrite {
        offset,
        value: u64::from(value),
        bytes: 4,
    };
    let w64 = |offset, value| RegWrite {
        offset,
        value,
        bytes: 8,
    };
    let mut v = Vec::new();
    if let Some((addr, data)) = l.fault_msi {
        v.extend([
            w32(regs::FEDATA, data),
            w32(regs::FEADDR, addr),
            w32(regs::FECTL, 0),
        ]);
    }
    v.extend([
        w64(regs::RTADDR, l.root | (1 << 10)),
        w32(regs::GCMD, gcmd::SRTP),
        w64(regs::IQT, 0),
        w64(regs::IQA, l.queue | (1 << 11) | u64::from(l.queue_order)),
        w32(regs::GCMD, gcmd::QIE),
        w64(regs::PQH, 0),
        w64(regs::PQT, 0),
        w64(regs::PQA, l.prq),
    ]);
    if let Some((addr, data)) = l.prq_msi {
        v.extend([
            w32(regs::PEDATA, data),
            w32(regs::PEADDR, addr),
            w32(regs::PECTL, 0),
        ]);
    }
    v.push(w32(regs::GCMD, gcmd::QIE | gcmd::TE));
    v
}

/// A guest driving the unit through registers and the invalidation queue.
#[derive(Debug)]
pub struct ScalableUnit {
    /// Guest memory.
    pub mem: GuestMemoryMmap<()>,
    /// The unit under test.
    pub unit: Viommu,
    /// The first-stage root [`ScalableUnit::bind`] uses.
    pub pgd: u64,
    next_page: u64,
    tail: u64,
    levels: u8,
    mem_size: u64,
    queue_bytes: u64,
}

impl ScalableUnit {
    /// An enabled unit over 8 MiB of zeroed guest memory, with a 4-KiB
    /// invalidation queue.
    pub fn new(config: Config) -> Self {
        Self::with_memory(config, MEM_SIZE, 0)
    }

    /// An enabled unit over `mem_size` bytes (at least 2 MiB) of zeroed
    /// guest memory, with an invalidation queue of `4096 << queue_order`
    /// bytes (order at most 3).
    pub fn with_memory(config: Config, mem_size: u64, queue_order: u8) -> Self {
        let levels = config.levels.count();
        let mem_size = mem_size.max(2 << 20);
        let queue_order = queue_order.min(3);
        let mem =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), usize::try_from(mem_size).unwrap())])
                .unwrap();
        let mut h = ScalableUnit {
            mem,
            unit: Viommu::new(config),
            pgd: 0,
            next_page: TABLES,
            tail: 0,
            levels,
            mem_size,
            queue_bytes: 4096 << queue_order,
        };
        h.pgd = h.alloc_page();
        h.w64(ROOT, CTX | 1);
        // Context entry for RID: PASID dir, PDTS 0 (128 entries), PRE, PASIDE, DTE, P.
        h.w64(
            CTX + u64::from(RID & 0x7f) * 32,
            PASID_DIR | 0x10 | 0x8 | 0x4 | 1,
        );
        let layout = EnableLayout {
            root: ROOT,
            queue: QUEUE,
            queue_order,
            prq: PRQ,
            fault_msi: None,
            prq_msi: None,
        };
        for w in enable_sequence(&layout) {
            if w.bytes == 8 {
                h.reg64(w.offset, w.value);
            } else {
                h.reg32(w.offset, u32::try_from(w.value).unwrap());
            }
        }
        assert!(h.unit.translation_enabled());
        h
    }

    /// Stores a u64 in guest memory.
    pub fn w64(&self, gpa: u64, v: u64) {
        self.mem.write_obj(v, GuestAddress(gpa)).unwrap();
    }

    /// Loads a u64 from guest memory.
    pub fn r64(&self, gpa: u64) -> u64 {
        self.mem.read_obj(GuestAddress(gpa)).unwrap()
    }

    /// A 64-bit register write.
    pub fn reg64(&mut self, off: u64, v: u64) {
        let mem = self.mem.clone();
        self.unit.mmio_write(&mem, off, &v.to_le_bytes());
    }

    /// A 32-bit register write.
    pub fn reg32(&mut self, off: u64, v: u32) {
        let mem = self.mem.clone();
        self.unit.mmio_write(&mem, off, &v.to_le_bytes());
    }

    /// A 64-bit register read.
    pub fn rd64(&mut self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.unit.mmio_read(off, &mut b);
        u64::from_le_bytes(b)
    }

    /// A 32-bit register read.
    pub fn rd32(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.unit.mmio_read(off, &mut b);
        u32::from_le_bytes(b)
    }

    /// A zeroed page for tables.
    pub fn alloc_page(&mut self) -> u64 {
        let p = self.next_page;
        self.next_page += 0x1000;
        assert!(self.next_page <= self.mem_size, "ran out of table pages");
        self.mem.write_slice(&[0u8; 4096], GuestAddress(p)).unwrap();
        p
    }

    /// PASID entry for `pasid`: first-stage at `pgd`, DID 1.
    pub fn bind(&mut self, pasid: u32, sre: bool) {
        let pgd = self.pgd;
        self.bind_pgd(pasid, pgd, 1, sre);
    }

    /// PASID entry for `pasid`: first-stage at `pgd` in domain `did`.
    pub fn bind_pgd(&mut self, pasid: u32, pgd: u64, did: u16, sre: bool) {
        let dir = PASID_DIR + u64::from(pasid >> 6) * 8;
        let table = PASID_TABLE + u64::from(pasid >> 6) * 0x1000;
        self.w64(dir, table | 1);
        let pe = table + u64::from(pasid & 0x3f) * 64;
        let flpm = if self.levels == 5 { 1 << 2 } else { 0 };
        self.w64(pe + 8, u64::from(did));
        self.w64(pe + 16, pgd | flpm | u64::from(sre));
        self.w64(pe, 1 | (u64::from(pgtt::FIRST_STAGE) << 6));
    }

    /// Maps `va` to a leaf at `level` (1: 4K, 2: 2M, 3: 1G) with `leaf`
    /// flags; intermediate tables get `upper` flags. Returns the leaf's gpa.
    pub fn map_at(&mut self, va: u64, pa: u64, level: u8, leaf: u64, upper: u64) -> u64 {
        let mut table = self.pgd;
        let mut l = self.levels;
        while l > level {
            let e = table + index(va, l) * 8;
            let v = self.r64(e);
            table = if v & PTE_P != 0 && v & PTE_PS == 0 {
                self.w64(e, (v & walk::PTE_ADDR) | upper);
                v & walk::PTE_ADDR
            } else {
                let t = self.alloc_page();
                self.w64(e, t | upper);
                t
            };
            l -= 1;
        }
        let e = table + index(va, level) * 8;
        let ps = if level > 1 { PTE_PS } else { 0 };
        self.w64(e, pa | leaf | ps);
        e
    }

    /// Maps the 4-KiB page `va` to `pa`; returns the leaf's gpa.
    pub fn map(&mut self, va: u64, pa: u64, leaf: u64, upper: u64) -> u64 {
        self.map_at(va, pa, 1, leaf, upper)
    }

    /// Clears the 4-KiB leaf of `va`.
    pub fn unmap_leaf_for_test(&mut self, va: u64) {
        let e = self.entry_addr(va, 1);
        self.w64(e, 0);
    }

    /// Maps `va` to `pa` as a user page; returns the leaf's gpa.
    pub fn map_user(&mut self, va: u64, pa: u64, writable: bool) -> u64 {
        let leaf = if writable { U } else { PTE_P | PTE_US };
        self.map(va, pa, leaf, U)
    }

    /// The address of the entry at `level` for `va` (tables must exist).
    pub fn entry_addr(&self, va: u64, level: u8) -> u64 {
        let mut table = self.pgd;
        let mut l = self.levels;
        loop {
            let e = table + index(va, l) * 8;
            if l == level {
                return e;
            }
            table = self.r64(e) & walk::PTE_ADDR;
            l -= 1;
        }
    }

    /// Writes descriptors at the tail and rings IQT.
    pub fn submit(&mut self, ds: &[Descriptor]) {
        for d in ds {
            let q = qi::encode(d);
            for (i, v) in q.iter().enumerate() {
                self.w64(QUEUE + self.tail + 8 * i as u64, *v);
            }
            self.tail = (self.tail + 32) % self.queue_bytes;
        }
        let t = self.tail;
        self.reg64(regs::IQT, t);
    }

    /// Resets the queue tail the fixture writes at (after the guest
    /// re-enabled the queue, which resets IQH).
    pub fn reset_tail(&mut self) {
        self.tail = 0;
    }

    /// Size of the invalidation queue in bytes.
    pub fn queue_bytes(&self) -> u64 {
        self.queue_bytes
    }

    /// Moves the tail by `bytes` (descriptors already written to the ring)
    /// and rings IQT.
    pub fn advance_tail(&mut self, bytes: u64) {
        self.tail = (self.tail + bytes) % self.queue_bytes;
        let t = self.tail;
        self.reg64(regs::IQT, t);
    }

    /// Writes one raw descriptor at the tail and rings IQT.
    pub fn submit_raw(&mut self, qw: [u64; 4]) {
        for (i, v) in qw.iter().enumerate() {
            self.w64(QUEUE + self.tail + 8 * i as u64, *v);
        }
        self.tail = (self.tail + 32) % self.queue_bytes;
        let t = self.tail;
        self.reg64(regs::IQT, t);
    }

    /// A page-selective PASID-based IOTLB invalidation in domain 1.
    pub fn piotlb_page(&mut self, pasid: u32, addr: u64, am: u8, ih: bool) {
        self.submit(&[Descriptor::Piotlb {
            did: 1,
            pasid,
            granularity: PiotlbGranularity::Page { addr, am, ih },
        }]);
    }

    /// A device access by [`RID`].
    pub fn dma(
        &mut self,
        pasid: Option<u32>,
        addr: u64,
        access: Access,
        privileged: bool,
    ) -> Result<Translation, TranslationFault> {
        let mem = self.mem.clone();
        self.unit.translate(
            &mem,
            &DmaRequest {
                rid: RID,
                pasid,
                addr,
                access,
                privileged,
            },
        )
    }

    /// A speculative walk by [`RID`] for a read.
    pub fn walk(&mut self, pasid: u32, addr: u64) {
        let mem = self.mem.clone();
        self.unit.speculative_walk(
            &mem,
            &DmaRequest {
                rid: RID,
                pasid: Some(pasid),
                addr,
                access: Access::Read,
                privileged: false,
            },
        );
    }
}
