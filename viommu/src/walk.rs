//! The first-stage (CPU-format) page-table walker: 4- and 5-level tables,
//! 4-KiB, 2-MiB and 1-GiB leaves, P/RW/US/XD/PS, reserved bits, canonical
//! addresses. As on x86 the access rights are the combination over every level
//! and are checked once the walk reaches the leaf, so a user request to a
//! kernel address walks (and may cache) every level before it faults; only a
//! not-present or malformed entry ends a walk early. Accessed/Dirty updates are
//! compare-exchanges on guest memory, done only for a successful translation.

use serde::Serialize;
use vm_memory::GuestMemory;

use crate::memory;

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Read/write.
pub const PTE_RW: u64 = 1 << 1;
/// User/supervisor.
pub const PTE_US: u64 = 1 << 2;
/// Accessed.
pub const PTE_A: u64 = 1 << 5;
/// Dirty (leaf only).
pub const PTE_D: u64 = 1 << 6;
/// Page size (non-leaf levels 2 and 3).
pub const PTE_PS: u64 = 1 << 7;
/// Execute disable.
pub const PTE_XD: u64 = 1 << 63;
/// Physical address bits of an entry (51:12).
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// How many times a walk restarts when an A/D compare-exchange finds that the
/// CPU changed the entry meanwhile; a guest racing forever cannot hang us.
pub const MAX_WALK_RESTARTS: u32 = 4;

/// Kind of device access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read.
    Read,
    /// Write.
    Write,
    /// Instruction fetch.
    Execute,
}

/// Rights combined over the levels walked so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rights {
    /// Every level had R/W=1.
    pub write: bool,
    /// Every level had U/S=1.
    pub user: bool,
    /// Some level had XD=1.
    pub no_exec: bool,
}

impl Rights {
    /// Rights before any entry is read.
    pub const ALL: Rights = Rights {
        write: true,
        user: true,
        no_exec: false,
    };

    /// Combines with one more entry.
    #[inline]
    pub fn and_entry(self, e: u64) -> Rights {
        Rights {
            write: self.write && e & PTE_RW != 0,
            user: self.user && e & PTE_US != 0,
            no_exec: self.no_exec || e & PTE_XD != 0,
        }
    }
}

/// Errors (faults) of a first-stage walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum WalkError {
    /// The input address is not canonical for the paging depth.
    #[error("address {addr:#x} not canonical for {levels}-level paging")]
    NonCanonical {
        /// Input address.
        addr: u64,
        /// Paging depth.
        levels: u8,
    },
    /// An entry could not be read.
    #[error("level-{level} entry at {gpa:#x} unreadable")]
    Access {
        /// Level of the entry (5..1).
        level: u8,
        /// Entry address.
        gpa: u64,
    },
    /// An entry is not present.
    #[error("level-{level} entry at {gpa:#x} not present")]
    NotPresent {
        /// Level of the entry.
        level: u8,
        /// Entry address.
        gpa: u64,
    },
    /// An entry has reserved bits set.
    #[error("level-{level} entry {value:#x} at {gpa:#x} has reserved bits set")]
    Reserved {
        /// Level of the entry.
        level: u8,
        /// Entry address.
        gpa: u64,
        /// Entry value.
        value: u64,
    },
    /// A supervisor request on a PASID entry with SRE=0.
    #[error("supervisor request but SRE=0")]
    SupervisorDisabled,
    /// User request to a supervisor page.
    #[error("user request to supervisor page at {addr:#x}")]
    User {
        /// Input address.
        addr: u64,
    },
    /// Write to a read-only page.
    #[error("write to read-only page at {addr:#x}")]
    Write {
        /// Input address.
        addr: u64,
    },
    /// Execute from an execute-disabled page (or supervisor execute of a user page).
    #[error("execute denied at {addr:#x}")]
    Execute {
        /// Input address.
        addr: u64,
    },
    /// The A/D update kept racing with the CPU.
    #[error("accessed/dirty update at {gpa:#x} kept failing")]
    AdUpdate {
        /// Entry address.
        gpa: u64,
    },
}

impl WalkError {
    /// VT-d fault reason code.
    pub fn reason_code(&self) -> u8 {
        match self {
            WalkError::Access { .. } => 0x70,
            WalkError::NotPresent { .. } => 0x71,
            WalkError::Reserved { .. } => 0x72,
            WalkError::NonCanonical { .. } => 0x80,
            WalkError::User { .. } => 0x81,
            WalkError::Execute { .. } => 0x84,
            WalkError::Write { .. } => 0x85,
            WalkError::SupervisorDisabled => 0x86,
            WalkError::AdUpdate { .. } => 0x91,
        }
    }

    /// True for faults that end a walk before the leaf (the tables are
    /// missing or malformed), false for rights faults found at the leaf.
    pub fn is_structural(&self) -> bool {
        matches!(
            self,
            WalkError::Access { .. } | WalkError::NotPresent { .. } | WalkError::Reserved { .. }
        )
    }
}

/// Where a walk starts: the root (from the PASID entry) or below a cached
/// paging-structure entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkStart {
    /// Level of the table to read next (5..1).
    pub level: u8,
    /// Table page address.
    pub table: u64,
    /// Rights combined over the levels above.
    pub rights: Rights,
}

/// A non-leaf entry read from memory during a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathEntry {
    /// Level (5..2).
    pub level: u8,
    /// Entry address.
    pub gpa: u64,
    /// Entry value.
    pub value: u64,
}

/// Non-leaf entries a walk read from memory, top down. At most 4 (5-level).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path {
    entries: [PathEntry; 4],
    len: usize,
}

impl Path {
    /// Empties the path.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, e: PathEntry) {
        if let Some(slot) = self.entries.get_mut(self.len) {
            *slot = e;
            self.len += 1;
        }
    }

    /// The entries, top down.
    pub fn entries(&self) -> &[PathEntry] {
        &self.entries[..self.len]
    }
}

/// The leaf a walk reached (before the rights check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// Level of the leaf (3 = 1 GiB, 2 = 2 MiB, 1 = 4 KiB).
    pub level: u8,
    /// Leaf entry address.
    pub gpa: u64,
    /// Leaf entry value.
    pub value: u64,
    /// Output page base.
    pub page: u64,
    /// Page size in bytes.
    pub size: u64,
    /// Rights combined over every level including the leaf.
    pub rights: Rights,
}

impl Leaf {
    /// The output address for `addr`.
    #[inline]
    pub fn output(&self, addr: u64) -> u64 {
        self.page | (addr & (self.size - 1))
    }
}

/// Shape of the tables: what the walker needs besides memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Paging depth, 4 or 5.
    pub levels: u8,
    /// Reserved physical-address bits (51:HAW) of every entry.
    pub addr_reserved: u64,
    /// 1-GiB leaves allowed.
    pub fl1gp: bool,
}

impl Geometry {
    /// Geometry for a depth and a host address width in bits.
    pub fn new(levels: u8, haw_bits: u32, fl1gp: bool) -> Self {
        let haw = haw_bits.min(52);
        let addr_reserved = PTE_ADDR & !((1u64 << haw) - 1);
        Geometry {
            levels,
            addr_reserved,
            fl1gp,
        }
    }

    /// Whether `addr` is canonical at this depth.
    #[inline]
    pub fn canonical(&self, addr: u64) -> bool {
        let bits = if self.levels == 5 { 57 } else { 48 };
        // Bits 63:bits-1 must all equal bit bits-1.
        let top = addr >> (bits - 1);
        top == 0 || top == (u64::MAX >> (bits - 1))
    }

    /// The root start for a table at `root`.
    pub fn root(&self, root: u64) -> WalkStart {
        WalkStart {
            level: self.levels,
            table: root & PTE_ADDR,
            rights: Rights::ALL,
        }
    }
}

/// Index of `addr` in a table at `level`.
#[inline]
pub fn index(addr: u64, level: u8) -> u64 {
    (addr >> (12 + 9 * u32::from(level - 1))) & 0x1ff
}

/// Walks from `start` to the leaf for `addr`, recording non-leaf entries it
/// reads from memory in `path`. Rights are not checked here.
pub fn walk<M: GuestMemory>(
    mem: &M,
    geo: &Geometry,
    start: WalkStart,
    addr: u64,
    path: &mut Path,
) -> Result<Leaf, WalkError> {
    walk_with(&mut memory::Reader::new(mem), geo, start, addr, path)
}

/// [`walk`] through a reader (the guest-memory region is resolved once for
/// all the tables a translation reads).
#[inline]
pub fn walk_with<M: GuestMemory>(
    reader: &mut memory::Reader<'_, M>,
    geo: &Geometry,
    start: WalkStart,
    addr: u64,
    path: &mut Path,
) -> Result<Leaf, WalkError> {
    path.clear();
    let mut level = start.level;
    let mut table = start.table;
    // R/W and U/S survive only if set at every level, XD if set at any: one
    // AND and one OR per level, turned into `Rights` at the leaf.
    let mut all_set =
        if start.rights.write { PTE_RW } else { 0 } | if start.rights.user { PTE_US } else { 0 };
    let mut any_set = if start.rights.no_exec { PTE_XD } else { 0 };
    // The loop runs at most `levels` times: level strictly decreases.
    while level >= 1 {
        let shift = 12 + 9 * u32::from(level - 1);
        let gpa = table | (((addr >> shift) & 0x1ff) << 3);
        let Ok(value) = reader.load_u64(gpa) else {
            return Err(WalkError::Access { level, gpa });
        };
        if value & PTE_P == 0 {
            return Err(WalkError::NotPresent { level, gpa });
        }
        all_set &= value;
        any_set |= value;
        if level == 1 || (level <= 3 && value & PTE_PS != 0) {
            let rights = Rights {
                write: all_set & PTE_RW != 0,
                user: all_set & PTE_US != 0,
                no_exec: any_set & PTE_XD != 0,
            };
            return leaf_at(geo, level, gpa, value, rights);
        }
        // PS is reserved in PML5E and PML4E.
        let rsvd = geo.addr_reserved | if level >= 4 { PTE_PS } else { 0 };
        if value & rsvd != 0 {
            return Err(WalkError::Reserved { level, gpa, value });
        }
        path.push(PathEntry { level, gpa, value });
        table = value & PTE_ADDR;
        level -= 1;
    }
    // Only reachable with a start level of 0, which callers never build.
    Err(WalkError::NotPresent {
        level: 0,
        gpa: table,
    })
}

/// The leaf entry `value` at `level` (1, or 2/3 with PS): reserved-bit
/// checks and the output page.
#[inline]
fn leaf_at(
    geo: &Geometry,
    level: u8,
    gpa: u64,
    value: u64,
    rights: Rights,
) -> Result<Leaf, WalkError> {
    let (size, rsvd) = match level {
        1 => (1u64 << 12, 0),
        2 => (1 << 21, 0x1f_e000), // bits 20:13
        _ if !geo.fl1gp => (1 << 30, PTE_PS),
        _ => (1 << 30, 0x3fff_e000), // bits 29:13
    };
    if value & (geo.addr_reserved | rsvd) != 0 {
        return Err(WalkError::Reserved { level, gpa, value });
    }
    Ok(Leaf {
        level,
        gpa,
        value,
        page: value & PTE_ADDR & !(size - 1),
        size,
        rights,
    })
}

/// Checks the combined rights of `leaf` for a request.
pub fn check_rights(
    leaf: &Leaf,
    addr: u64,
    access: Access,
    privileged: bool,
    wpe: bool,
) -> Result<(), WalkError> {
    let r = leaf.rights;
    if !privileged && !r.user {
        return Err(WalkError::User { addr });
    }
    match access {
        Access::Read => Ok(()),
        Access::Write => {
            if r.write || (privileged && !wpe) {
                Ok(())
            } else {
                Err(WalkError::Write { addr })
            }
        }
        Access::Execute => {
            if r.no_exec || (privileged && r.user) {
                Err(WalkError::Execute { addr })
            } else {
                Ok(())
            }
        }
    }
}

/// Sets A on every non-leaf entry in `path` and A (and D for writes) on the
/// leaf, each by compare-exchange against the value the walk read. Returns
/// `Ok(false)` when an entry changed meanwhile (the caller restarts the walk).
pub fn set_accessed_dirty<M: GuestMemory>(
    mem: &M,
    path: &Path,
    leaf: &Leaf,
    write: bool,
) -> Result<bool, WalkError> {
    for e in path.entries() {
        if e.value & PTE_A == 0 {
            match memory::cmpxchg_u64(mem, e.gpa, e.value, e.value | PTE_A) {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(false),
                Err(_) => {
                    return Err(WalkError::Access {
                        level: e.level,
                        gpa: e.gpa,
                    });
                }
            }
        }
    }
    let want = leaf.value | PTE_A | if write { PTE_D } else { 0 };
    if want != leaf.value {
        match memory::cmpxchg_u64(mem, leaf.gpa, leaf.value, want) {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(false),
            Err(_) => {
                return Err(WalkError::Access {
                    level: leaf.level,
                    gpa: leaf.gpa,
                });
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{load_u64, store_u64};
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x400000)]).unwrap()
    }

    const U: u64 = PTE_P | PTE_RW | PTE_US;
    const K: u64 = PTE_P | PTE_RW;

    fn geo4() -> Geometry {
        Geometry::new(4, 48, true)
    }

    /// Maps `va` -> `pa` (4K) with tables at 0x10000.. (pml4 at 0x10000).
    fn map4k(m: &GuestMemoryMmap<()>, va: u64, pa: u64, leaf_flags: u64, upper: u64) {
        store_u64(m, 0x10000 + index(va, 4) * 8, 0x11000 | upper).unwrap();
        store_u64(m, 0x11000 + index(va, 3) * 8, 0x12000 | upper).unwrap();
        store_u64(m, 0x12000 + index(va, 2) * 8, 0x13000 | upper).unwrap();
        store_u64(m, 0x13000 + index(va, 1) * 8, pa | leaf_flags).unwrap();
    }

    #[test]
    fn walk_4k_leaf_and_path() {
        let m = mem();
        let va = 0x7fff_1234_5678;
        map4k(&m, va, 0x200000, U, U);
        let mut path = Path::default();
        let leaf = walk(&m, &geo4(), geo4().root(0x10000), va, &mut path).unwrap();
        assert_eq!(leaf.output(va), 0x200678);
        assert_eq!(leaf.size, 4096);
        assert_eq!(path.entries().len(), 3);
        assert_eq!(path.entries()[2].level, 2);
        assert!(check_rights(&leaf, va, Access::Write, false, false).is_ok());
    }

    #[test]
    fn walk_2m_and_1g_leaves() {
        let m = mem();
        let va = 0x4000_0000 + 0x20_0000 + 0x1234;
        store_u64(&m, 0x10000 + index(va, 4) * 8, 0x11000 | U).unwrap();
        store_u64(&m, 0x11000 + index(va, 3) * 8, 0x12000 | U).unwrap();
        store_u64(&m, 0x12000 + index(va, 2) * 8, 0x20_0000 | U | PTE_PS).unwrap();
        let mut path = Path::default();
        let leaf = walk(&m, &geo4(), geo4().root(0x10000), va, &mut path).unwrap();
        assert_eq!((leaf.size, leaf.output(va)), (1 << 21, 0x20_1234));
        store_u64(&m, 0x11000 + index(va, 3) * 8, 0x4000_0000 | U | PTE_PS).unwrap();
        let leaf = walk(&m, &geo4(), geo4().root(0x10000), va, &mut path).unwrap();
        assert_eq!((leaf.size, leaf.output(va)), (1 << 30, 0x4020_1234));
        let no1g = Geometry::new(4, 48, false);
        assert!(matches!(
            walk(&m, &no1g, no1g.root(0x10000), va, &mut path),
            Err(WalkError::Reserved { level: 3, .. })
        ));
    }

    #[test]
    fn five_level_walk() {
        let m = mem();
        let geo = Geometry::new(5, 52, true);
        let va: u64 = 0xff12_3456_789a_b000;
        assert!(geo.canonical(va));
        store_u64(&m, 0x10000 + index(va, 5) * 8, 0x11000 | K).unwrap();
        store_u64(&m, 0x11000 + index(va, 4) * 8, 0x12000 | K).unwrap();
        store_u64(&m, 0x12000 + index(va, 3) * 8, 0x13000 | K).unwrap();
        store_u64(&m, 0x13000 + index(va, 2) * 8, 0x14000 | K).unwrap();
        store_u64(&m, 0x14000 + index(va, 1) * 8, 0x30_0000 | K).unwrap();
        let mut path = Path::default();
        let leaf = walk(&m, &geo, geo.root(0x10000), va, &mut path).unwrap();
        assert_eq!(leaf.page, 0x30_0000);
        assert_eq!(path.entries().len(), 4);
    }

    #[test]
    fn user_request_to_kernel_page_walks_to_leaf_then_faults() {
        let m = mem();
        let va = 0xffff_8880_0000_1000;
        map4k(&m, va, 0x200000, K, K);
        let mut path = Path::default();
        let leaf = walk(&m, &geo4(), geo4().root(0x10000), va, &mut path).unwrap();
        assert_eq!(path.entries().len(), 3, "every level walked");
        assert_eq!(
            check_rights(&leaf, va, Access::Read, false, false),
            Err(WalkError::User { addr: va })
        );
        assert!(check_rights(&leaf, va, Access::Read, true, false).is_ok());
    }

    #[test]
    fn reject_rights_violations() {
        let m = mem();
        let va = 0x1000;
        map4k(&m, va, 0x200000, PTE_P | PTE_US | PTE_XD, U);
        let mut path = Path::default();
        let leaf = walk(&m, &geo4(), geo4().root(0x10000), va, &mut path).unwrap();
        assert_eq!(
            check_rights(&leaf, va, Access::Write, false, false),
            Err(WalkError::Write { addr: va })
        );
        assert_eq!(
            check_rights(&leaf, va, Access::Execute, false, false),
            Err(WalkError::Execute { addr: va })
        );
        // Supervisor write to a read-only page: allowed unless WPE.
        assert!(check_rights(&leaf, va, Access::Write, true, false).is_ok());
        assert!(check_rights(&leaf, va, Access::Write, true, true).is_err());
    }

    #[test]
    fn reject_reserved_bits_and_not_present() {
        let m = mem();
        let va = 0x1000;
        map4k(&m, va, 0x200000, U, U);
        store_u64(&m, 0x10000, 0x11000 | U | PTE_PS).unwrap();
        let mut path = Path::default();
        assert!(matches!(
            walk(&m, &geo4(), geo4().root(0x10000), va, &mut path),
            Err(WalkError::Reserved { level: 4, .. })
        ));
        store_u64(&m, 0x10000, 0x11000 | U | (1 << 50)).unwrap();
        assert!(matches!(
            walk(&m, &geo4(), geo4().root(0x10000), va, &mut path),
            Err(WalkError::Reserved { level: 4, .. })
        ));
        store_u64(&m, 0x10000, 0x11000 | U).unwrap();
        store_u64(&m, 0x12000, 0x13000 | U | PTE_PS | (1 << 13)).unwrap();
        assert!(matches!(
            walk(&m, &geo4(), geo4().root(0x10000), va, &mut path),
            Err(WalkError::Reserved { level: 2, .. })
        ));
        store_u64(&m, 0x12000, 0).unwrap();
        assert_eq!(
            walk(&m, &geo4(), geo4().root(0x10000), va, &mut path),
            Err(WalkError::NotPresent {
                level: 2,
                gpa: 0x12000
            })
        );
    }

    #[test]
    fn reject_non_canonical_and_unbacked() {
        let geo = geo4();
        assert!(!geo.canonical(0x0000_8000_0000_0000));
        assert!(geo.canonical(0xffff_8000_0000_0000));
        let m = mem();
        let mut path = Path::default();
        assert!(matches!(
            walk(&m, &geo, geo.root(0x1000_0000), 0, &mut path),
            Err(WalkError::Access { level: 4, .. })
        ));
    }

    #[test]
    fn accessed_dirty_by_cmpxchg() {
        let m = mem();
        let va = 0x1000;
        map4k(&m, va, 0x200000, U, U);
        let mut path = Path::default();
        let leaf = walk(&m, &geo4(), geo4().root(0x10000), va, &mut path).unwrap();
        assert_eq!(set_accessed_dirty(&m, &path, &leaf, true), Ok(true));
        assert_eq!(
            load_u64(&m, 0x13000 + 8).unwrap() & (PTE_A | PTE_D),
            PTE_A | PTE_D
        );
        assert_eq!(load_u64(&m, 0x10000).unwrap() & PTE_A, PTE_A);
        // The CPU changed the leaf after the walk read it: no blind write.
        let leaf2 = walk(&m, &geo4(), geo4().root(0x10000), 0x2000, &mut path);
        assert!(leaf2.is_err());
        store_u64(&m, 0x13000 + 8, 0x300000 | U).unwrap();
        assert_eq!(
            set_accessed_dirty(&m, &Path::default(), &leaf, false),
            Ok(false)
        );
        assert_eq!(load_u64(&m, 0x13000 + 8).unwrap(), 0x300000 | U);
    }
}
