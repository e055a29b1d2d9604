//! The harness's own structures in the top 1 MiB of guest memory, and the
//! scalable-mode translation tables it programs there: the root table,
//! context tables, PASID directories and PASID tables, written the way the
//! Linux intel-iommu driver lays them out (see `shared/VTD-FACTS.md`).
//!
//! The area is handed out by a bump allocator and never reused, so every page
//! the harness takes is still zero when it gets it. Scenario commands cannot
//! write here (the parser rejects it); the harness never writes below it.

use std::collections::BTreeMap;

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::parser::{HARNESS_AREA, PAGE_SIZE, Rid};

/// Bytes of a root entry.
const ROOT_ENTRY_SIZE: u64 = 16;
/// Bytes of a scalable-mode context entry.
const CONTEXT_ENTRY_SIZE: u64 = 32;
/// Bytes of a PASID directory entry.
const PASID_DIR_ENTRY_SIZE: u64 = 8;
/// Bytes of a PASID table entry.
const PASID_ENTRY_SIZE: u64 = 64;
/// PASIDs per PASID table (one page of 64-byte entries).
const PASIDS_PER_TABLE: u32 = 64;
/// Largest PDTS: 2^(7+7) directory entries of 64 PASIDs cover 20-bit PASIDs.
pub const MAX_PDTS: u8 = 7;

/// Present bit of every entry.
const P: u64 = 1;
/// Context entry: PASID enable.
const CTX_PASIDE: u64 = 1 << 3;
/// PASID entry val0: PGTT = first-stage only.
const PGTT_FIRST_STAGE: u64 = 1 << 6;
/// PASID entry val2: supervisor requests enabled.
const SRE: u64 = 1;
/// PASID entry val2: FLPM = 5-level paging.
const FLPM_5LEVEL: u64 = 1 << 2;
/// Bits of a table pointer.
const ADDR_MASK: u64 = !0xfff;

/// What went wrong building harness structures.
#[derive(Debug, Error)]
pub enum TablesError {
    /// The harness area has no room left.
    #[error(
        "harness area exhausted: needed {needed} page(s), {left} left of the top 1 MiB (too many requesters or PASID tables)"
    )]
    AreaExhausted {
        /// Pages asked for.
        needed: u64,
        /// Pages left.
        left: u64,
    },
    /// Guest memory access failed.
    #[error("guest memory access at {gpa:#x} failed: {source}")]
    Memory {
        /// Address accessed.
        gpa: u64,
        /// The error from vm-memory.
        source: vm_memory::GuestMemoryError,
    },
    /// A PASID beyond what the requester's PASID directory covers.
    #[error("PASID {pasid:#x} is beyond the PASID directory of {rid} (PDTS {pdts})")]
    PasidBeyondDirectory {
        /// Requester.
        rid: Rid,
        /// PASID.
        pasid: u32,
        /// The directory size field chosen for the requester.
        pdts: u8,
    },
    /// An address computation left the 64-bit space.
    #[error("address {base:#x} + {off:#x} overflows")]
    AddressOverflow {
        /// Base address.
        base: u64,
        /// Offset added.
        off: u64,
    },
    /// Guest memory smaller than the harness area.
    #[error("guest memory of {mem:#x} bytes has no room for the 1 MiB harness area")]
    MemoryTooSmall {
        /// Guest memory size.
        mem: u64,
    },
}

type Result<T> = std::result::Result<T, TablesError>;

/// Stores a little-endian u64.
pub fn write_u64(mem: &GuestMemoryMmap, gpa: u64, value: u64) -> Result<()> {
    mem.write_slice(&value.to_le_bytes(), GuestAddress(gpa))
        .map_err(|source| TablesError::Memory { gpa, source })
}

/// Loads a little-endian u64.
pub fn read_u64(mem: &GuestMemoryMmap, gpa: u64) -> Result<u64> {
    let mut bytes = [0u8; 8];
    mem.read_slice(&mut bytes, GuestAddress(gpa))
        .map_err(|source| TablesError::Memory { gpa, source })?;
    Ok(u64::from_le_bytes(bytes))
}

/// Loads a little-endian u32.
pub fn read_u32(mem: &GuestMemoryMmap, gpa: u64) -> Result<u32> {
    let mut bytes = [0u8; 4];
    mem.read_slice(&mut bytes, GuestAddress(gpa))
        .map_err(|source| TablesError::Memory { gpa, source })?;
    Ok(u32::from_le_bytes(bytes))
}

/// Bump allocator over the harness area (the top 1 MiB of guest memory).
#[derive(Debug)]
pub struct Area {
    next: u64,
    end: u64,
}

impl Area {
    /// The area of a guest memory of `mem` bytes.
    pub fn new(mem: u64) -> Result<Self> {
        let base = mem
            .checked_sub(HARNESS_AREA)
            .ok_or(TablesError::MemoryTooSmall { mem })?;
        Ok(Area {
            next: base,
            end: mem,
        })
    }

    /// `pages` zeroed pages aligned to `align_pages` pages (a power of two).
    pub fn alloc(&mut self, pages: u64, align_pages: u64) -> Result<u64> {
        let exhausted = || TablesError::AreaExhausted {
            needed: pages,
            left: self.pages_left(),
        };
        let align = align_pages.max(1).saturating_mul(PAGE_SIZE);
        let start = self
            .next
            .checked_next_multiple_of(align)
            .ok_or_else(exhausted)?;
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| start.checked_add(len))
            .filter(|end| *end <= self.end)
            .ok_or_else(exhausted)?;
        self.next = end;
        Ok(start)
    }

    /// Pages still free.
    pub fn pages_left(&self) -> u64 {
        self.end.saturating_sub(self.next) / PAGE_SIZE
    }
}

/// The smallest PDTS whose directory covers PASIDs `0..=max_pasid`.
pub fn pdts_for(max_pasid: u32) -> u8 {
    let tables_needed = (max_pasid / PASIDS_PER_TABLE).saturating_add(1);
    (0..MAX_PDTS)
        .find(|pdts| (1u32 << (pdts + 7)) >= tables_needed)
        .unwrap_or(MAX_PDTS)
}

/// What a bind wrote, for tests and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundEntry {
    /// Guest-physical address of the 64-byte PASID entry.
    pub entry_gpa: u64,
    /// The entry's four low quadwords (val0..val3).
    pub value: [u64; 4],
}

/// A first-stage PASID binding to program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Requester.
    pub rid: Rid,
    /// PASID.
    pub pasid: u32,
    /// First-stage root table.
    pub pgd: u64,
    /// Domain id.
    pub did: u16,
    /// Supervisor requests enabled.
    pub sre: bool,
}

/// The root table and everything below it.
#[derive(Debug)]
pub struct Tables {
    root: u64,
    levels: u8,
    /// PDTS chosen per requester before the run (from the largest PASID
    /// the scenario binds for it), because a directory cannot grow once its
    /// context entry is live.
    pdts: BTreeMap<Rid, u8>,
}

impl Tables {
    /// A root table taken from `area`; `levels` (4 or 5) selects FLPM and
    /// the address width of PASID entries; `pdts` is the per-requester plan
    /// (requesters not in it get PDTS 0).
    pub fn new(area: &mut Area, levels: u8, pdts: BTreeMap<Rid, u8>) -> Result<Self> {
        let root = area.alloc(1, 1)?;
        Ok(Tables { root, levels, pdts })
    }

    /// Guest-physical address of the root table (for RTADDR).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Writes (or rewrites) the PASID entry for `binding`, creating the
    /// context table, context entry, PASID directory and PASID table on the
    /// way when they are missing. The present bit of each new entry is
    /// written last. Sends no invalidation: that is the scenario's business.
    pub fn bind(
        &mut self,
        mem: &GuestMemoryMmap,
        area: &mut Area,
        binding: &Binding,
    ) -> Result<BoundEntry> {
        let pdts = self.pdts.get(&binding.rid).copied().unwrap_or(0);
        let dir_index = binding.pasid / PASIDS_PER_TABLE;
        if dir_index >= (1u32 << (u32::from(pdts) + 7)) {
            return Err(TablesError::PasidBeyondDirectory {
                rid: binding.rid,
                pasid: binding.pasid,
                pdts,
            });
        }
        let context = self.context_entry(mem, area, binding.rid)?;
        let lo = read_u64(mem, context)?;
        let directory = if lo & P != 0 {
            lo & ADDR_MASK
        } else {
            let dir_bytes = PASID_DIR_ENTRY_SIZE << (u32::from(pdts) + 7);
            let pages = dir_bytes.div_ceil(PAGE_SIZE);
            let directory = area.alloc(pages, 1)?;
            // hi: RID_PASID 0; the rest of the 32-byte entry stays zero.
            write_u64(mem, offset(context, 8)?, 0)?;
            write_u64(
                mem,
                context,
                directory | (u64::from(pdts) << 9) | CTX_PASIDE | P,
            )?;
            directory
        };
        let dir_entry = offset(directory, u64::from(dir_index) * PASID_DIR_ENTRY_SIZE)?;
        let dir_value = read_u64(mem, dir_entry)?;
        let table = if dir_value & P != 0 {
            dir_value & ADDR_MASK
        } else {
            let table = area.alloc(1, 1)?;
            write_u64(mem, dir_entry, table | P)?;
            table
        };
        let entry_gpa = offset(
            table,
            u64::from(binding.pasid % PASIDS_PER_TABLE) * PASID_ENTRY_SIZE,
        )?;
        let five_level = self.levels == 5;
        // AW as Linux fills it from the address width: 2 = 48-bit, 3 = 57-bit.
        let aw: u64 = if five_level { 3 } else { 2 };
        let val0 = P | (aw << 2) | PGTT_FIRST_STAGE;
        let val1 = u64::from(binding.did);
        let val2 = (binding.pgd & ADDR_MASK)
            | if five_level { FLPM_5LEVEL } else { 0 }
            | if binding.sre { SRE } else { 0 };
        write_u64(mem, offset(entry_gpa, 8)?, val1)?;
        write_u64(mem, offset(entry_gpa, 16)?, val2)?;
        write_u64(mem, offset(entry_gpa, 24)?, 0)?;
        write_u64(mem, entry_gpa, val0)?;
        Ok(BoundEntry {
            entry_gpa,
            value: [val0, val1, val2, 0],
        })
    }

    /// The context entry of `rid`, creating its context table if needed.
    fn context_entry(&mut self, mem: &GuestMemoryMmap, area: &mut Area, rid: Rid) -> Result<u64> {
        let devfn = rid.devfn();
        // The low quadword of a root entry covers devfn 0-127, the high one
        // devfn 128-255.
        let half = if devfn >= 128 { 8 } else { 0 };
        let root_entry = offset(self.root, u64::from(rid.bus) * ROOT_ENTRY_SIZE + half)?;
        let value = read_u64(mem, root_entry)?;
        let context_table = if value & P != 0 {
            value & ADDR_MASK
        } else {
            let table = area.alloc(1, 1)?;
            write_u64(mem, root_entry, table | P)?;
            table
        };
        offset(context_table, u64::from(devfn & 0x7f) * CONTEXT_ENTRY_SIZE)
    }
}

/// `base + off`; harness addresses are far below 2^64, but never wrap.
fn offset(base: u64, off: u64) -> Result<u64> {
    base.checked_add(off)
        .ok_or(TablesError::AddressOverflow { base, off })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parser::DEFAULT_RID;

    const MEM: u64 = 4 << 20;

    fn memory() -> GuestMemoryMmap {
        let size = usize::try_from(MEM).unwrap();
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).unwrap()
    }

    #[test]
    fn area_allocates_aligned_pages_from_the_top_mib() {
        let mut area = Area::new(MEM).unwrap();
        assert_eq!(area.pages_left(), 256);
        assert_eq!(area.alloc(1, 1).unwrap(), MEM - HARNESS_AREA);
        // Two pages aligned to 8 KiB skip one page.
        assert_eq!(area.alloc(2, 2).unwrap(), MEM - HARNESS_AREA + 0x2000);
        assert_eq!(area.pages_left(), 252);
    }

    #[test]
    fn reject_area_exhaustion() {
        let mut area = Area::new(MEM).unwrap();
        assert!(area.alloc(255, 1).is_ok());
        assert!(matches!(
            area.alloc(2, 1),
            Err(TablesError::AreaExhausted { needed: 2, left: 1 })
        ));
        assert!(area.alloc(1, 1).is_ok());
        assert!(area.alloc(1, 1).is_err());
        assert!(area.alloc(u64::MAX, 1).is_err());
        assert!(area.alloc(1, u64::MAX).is_err());
    }

    #[test]
    fn reject_memory_smaller_than_area() {
        assert!(matches!(
            Area::new(HARNESS_AREA - 1),
            Err(TablesError::MemoryTooSmall { .. })
        ));
    }

    #[test]
    fn pdts_covers_the_largest_pasid() {
        assert_eq!(pdts_for(0), 0);
        assert_eq!(pdts_for(128 * 64 - 1), 0);
        assert_eq!(pdts_for(128 * 64), 1);
        assert_eq!(pdts_for(0xfffff), 7);
        assert_eq!(pdts_for(u32::MAX), 7);
    }

    #[test]
    fn bind_builds_every_level() {
        let mem = memory();
        let mut area = Area::new(MEM).unwrap();
        let mut tables = Tables::new(&mut area, 4, BTreeMap::new()).unwrap();
        let root = tables.root();
        let bound = tables
            .bind(
                &mem,
                &mut area,
                &Binding {
                    rid: DEFAULT_RID,
                    pasid: 65,
                    pgd: 0x1000,
                    did: 1,
                    sre: false,
                },
            )
            .unwrap();
        // Root entry of bus 0, low half (devfn 0x20 < 128).
        let root_lo = read_u64(&mem, root).unwrap();
        assert_eq!(root_lo & P, 1);
        assert_eq!(read_u64(&mem, root + 8).unwrap(), 0);
        let ctx_table = root_lo & ADDR_MASK;
        let ctx = read_u64(&mem, ctx_table + 0x20 * 32).unwrap();
        assert_eq!(ctx & 0xfff, CTX_PASIDE | P); // PDTS 0
        let dir = ctx & ADDR_MASK;
        assert_eq!(read_u64(&mem, dir).unwrap(), 0, "PASIDs 0-63 unused");
        let dir1 = read_u64(&mem, dir + 8).unwrap();
        assert_eq!(dir1 & P, 1);
        assert_eq!(bound.entry_gpa, (dir1 & ADDR_MASK) + 64);
        assert_eq!(read_u64(&mem, bound.entry_gpa).unwrap(), 0x49); // P, AW 2, PGTT 1
        assert_eq!(read_u64(&mem, bound.entry_gpa + 8).unwrap(), 1);
        assert_eq!(read_u64(&mem, bound.entry_gpa + 16).unwrap(), 0x1000);
        assert_eq!(bound.value, [0x49, 1, 0x1000, 0]);
    }

    #[test]
    fn bind_five_level_supervisor_high_devfn() {
        let mem = memory();
        let mut area = Area::new(MEM).unwrap();
        let rid = Rid {
            bus: 3,
            device: 0x1f,
            function: 7,
        };
        let mut plan = BTreeMap::new();
        plan.insert(rid, pdts_for(0xfffff));
        let mut tables = Tables::new(&mut area, 5, plan).unwrap();
        let bound = tables
            .bind(
                &mem,
                &mut area,
                &Binding {
                    rid,
                    pasid: 0xfffff,
                    pgd: 0x7000,
                    did: 0x1234,
                    sre: true,
                },
            )
            .unwrap();
        let root_hi = read_u64(&mem, tables.root() + 3 * 16 + 8).unwrap();
        assert_eq!(root_hi & P, 1);
        let ctx = read_u64(&mem, (root_hi & ADDR_MASK) + 0x7f * 32).unwrap();
        assert_eq!((ctx >> 9) & 7, 7);
        assert_eq!(bound.value, [0x4d, 0x1234, 0x7000 | FLPM_5LEVEL | SRE, 0]);
        // A 128 KiB directory, one PASID table, one context table, the root.
        assert_eq!(area.pages_left(), 256 - 1 - 1 - 32 - 1);
    }

    #[test]
    fn rebind_reuses_structures() {
        let mem = memory();
        let mut area = Area::new(MEM).unwrap();
        let mut tables = Tables::new(&mut area, 4, BTreeMap::new()).unwrap();
        let mut binding = Binding {
            rid: DEFAULT_RID,
            pasid: 1,
            pgd: 0x1000,
            did: 1,
            sre: false,
        };
        let first = tables.bind(&mem, &mut area, &binding).unwrap();
        let left = area.pages_left();
        binding.pgd = 0x2000;
        let second = tables.bind(&mem, &mut area, &binding).unwrap();
        assert_eq!(first.entry_gpa, second.entry_gpa);
        assert_eq!(area.pages_left(), left);
        assert_eq!(read_u64(&mem, second.entry_gpa + 16).unwrap(), 0x2000);
        // Another PASID in the same table takes no new page either.
        binding.pasid = 2;
        tables.bind(&mem, &mut area, &binding).unwrap();
        assert_eq!(area.pages_left(), left);
    }

    #[test]
    fn reject_pasid_beyond_planned_directory() {
        let mem = memory();
        let mut area = Area::new(MEM).unwrap();
        let mut tables = Tables::new(&mut area, 4, BTreeMap::new()).unwrap();
        let err = tables
            .bind(
                &mem,
                &mut area,
                &Binding {
                    rid: DEFAULT_RID,
                    pasid: 128 * 64,
                    pgd: 0x1000,
                    did: 1,
                    sre: false,
                },
            )
            .unwrap_err();
        assert!(matches!(
            err,
            TablesError::PasidBeyondDirectory { pdts: 0, .. }
        ));
    }
}
