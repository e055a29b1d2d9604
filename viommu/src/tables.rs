//! Scalable-mode translation tables: the root table (one 128-bit entry per
//! bus, two context-table pointers), 256-bit context entries, the PASID
//! directory (8-byte entries) and 512-bit PASID-table entries. Every qword is
//! one atomic 64-bit load; the qword holding P is read again after the rest of
//! the entry, and a torn (changed meanwhile) or half-written entry is treated
//! as not present. Legacy-mode tables are not modelled.

use serde::Serialize;
use vm_memory::GuestMemory;

use crate::memory::{self, MemoryError};

/// Address bits 63:12 of an entry.
pub const ADDR_MASK: u64 = !0xfff;

/// PASID Granular Translation Type values of a PASID entry.
pub mod pgtt {
    /// First-stage translation only.
    pub const FIRST_STAGE: u8 = 1;
    /// Second-stage translation only.
    pub const SECOND_STAGE: u8 = 2;
    /// Nested translation.
    pub const NESTED: u8 = 3;
    /// Pass-through.
    pub const PASS_THROUGH: u8 = 4;
}

/// Errors reading a translation-table entry. Each maps to a VT-d fault reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum TableError {
    /// The root table is not in scalable mode (RTADDR.TTM != 01b).
    #[error("root table type {ttm} is not scalable mode")]
    NotScalableMode {
        /// The TTM field latched from RTADDR.
        ttm: u8,
    },
    /// Reading the root entry failed.
    #[error("root entry for bus {bus:#x} at {gpa:#x} unreadable")]
    RootAccess {
        /// Bus number.
        bus: u8,
        /// Entry address.
        gpa: u64,
    },
    /// Root entry half not present (or torn).
    #[error("root entry for bus {bus:#x} not present")]
    RootNotPresent {
        /// Bus number.
        bus: u8,
    },
    /// Reading the context entry failed.
    #[error("context entry at {gpa:#x} unreadable")]
    ContextAccess {
        /// Entry address.
        gpa: u64,
    },
    /// Context entry not present (or torn).
    #[error("context entry for rid {rid:#06x} not present")]
    ContextNotPresent {
        /// Requester id.
        rid: u16,
    },
    /// Context entry reserved bits set.
    #[error("context entry for rid {rid:#06x} has reserved bits set")]
    ContextReserved {
        /// Requester id.
        rid: u16,
    },
    /// A PASID was given but the context entry does not enable PASIDs.
    #[error("PASID {pasid:#x} requested but context entry for rid {rid:#06x} has PASIDE=0")]
    PasidDisabled {
        /// Requester id.
        rid: u16,
        /// PASID requested.
        pasid: u32,
    },
    /// The PASID exceeds the PASID directory size.
    #[error("PASID {pasid:#x} beyond the PASID directory")]
    PasidTooLarge {
        /// PASID requested.
        pasid: u32,
    },
    /// Reading the PASID directory entry failed.
    #[error("PASID directory entry at {gpa:#x} unreadable")]
    PasidDirAccess {
        /// Entry address.
        gpa: u64,
    },
    /// PASID directory entry not present.
    #[error("PASID directory entry for PASID {pasid:#x} not present")]
    PasidDirNotPresent {
        /// PASID requested.
        pasid: u32,
    },
    /// Reading the PASID-table entry failed.
    #[error("PASID entry at {gpa:#x} unreadable")]
    PasidAccess {
        /// Entry address.
        gpa: u64,
    },
    /// PASID entry not present, torn or half-written.
    #[error("PASID entry for PASID {pasid:#x} not present")]
    PasidNotPresent {
        /// PASID requested.
        pasid: u32,
    },
    /// PASID entry has an unsupported PGTT or reserved bits set.
    #[error("PASID entry for PASID {pasid:#x} invalid (PGTT {pgtt})")]
    PasidInvalid {
        /// PASID requested.
        pasid: u32,
        /// The translation type found.
        pgtt: u8,
    },
}

impl TableError {
    /// The VT-d fault reason code recorded for this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            TableError::NotScalableMode { .. } => 0x4c,
            TableError::RootAccess { .. } => 0x30,
            TableError::RootNotPresent { .. } => 0x31,
            TableError::ContextAccess { .. } => 0x32,
            TableError::ContextNotPresent { .. } => 0x33,
            TableError::ContextReserved { .. } => 0x34,
            TableError::PasidDisabled { .. } | TableError::PasidTooLarge { .. } => 0x3a,
            TableError::PasidDirAccess { .. } => 0x50,
            TableError::PasidDirNotPresent { .. } => 0x51,
            TableError::PasidAccess { .. } => 0x58,
            TableError::PasidNotPresent { .. } => 0x59,
            TableError::PasidInvalid { .. } => 0x5b,
        }
    }

    /// Whether the context or PASID entry that failed asked for fault
    /// processing to be disabled is not known here; this says whether the
    /// error happened before any entry with an FPD bit was read.
    pub fn before_context(&self) -> bool {
        matches!(
            self,
            TableError::NotScalableMode { .. }
                | TableError::RootAccess { .. }
                | TableError::RootNotPresent { .. }
                | TableError::ContextAccess { .. }
                | TableError::ContextNotPresent { .. }
        )
    }
}

/// A decoded scalable-mode context entry (the fields the model uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContextEntry {
    /// Raw low and high qwords.
    pub raw: [u64; 2],
    /// Fault processing disable.
    pub fpd: bool,
    /// Device-TLB (ATS) enable.
    pub dte: bool,
    /// PASIDs enabled.
    pub pasid_enable: bool,
    /// Page requests enabled.
    pub pre: bool,
    /// PASID directory size: 2^(PDTS + 7) entries.
    pub pdts: u8,
    /// PASID directory base.
    pub pasid_dir: u64,
    /// PASID used for requests without a PASID.
    pub rid_pasid: u32,
}

impl ContextEntry {
    /// Decodes a context entry; `None` when P=0.
    pub fn decode(raw: [u64; 2]) -> Option<Self> {
        let lo = raw[0];
        if lo & 1 == 0 {
            return None;
        }
        Some(ContextEntry {
            raw,
            fpd: lo & 2 != 0,
            dte: lo & 4 != 0,
            pasid_enable: lo & 8 != 0,
            pre: lo & 16 != 0,
            pdts: ((lo >> 9) & 7) as u8,
            pasid_dir: lo & ADDR_MASK,
            rid_pasid: (raw[1] & 0xf_ffff) as u32,
        })
    }

    /// Entries in the PASID directory.
    pub fn pasid_dir_entries(&self) -> u64 {
        1u64 << (u32::from(self.pdts) + 7)
    }
}

/// A decoded PASID-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PasidEntry {
    /// Raw qwords 0..4 (qwords 4..8 are reserved and not read).
    pub raw: [u64; 4],
    /// Fault processing disable.
    pub fpd: bool,
    /// PASID granular translation type (see [`pgtt`]).
    pub pgtt: u8,
    /// Domain id.
    pub did: u16,
    /// Supervisor requests enabled.
    pub sre: bool,
    /// First-stage paging mode: 4 or 5 levels.
    pub levels: u8,
    /// Write-protect enable: supervisor writes honour R/W.
    pub wpe: bool,
    /// First-stage table root (FLPTPTR).
    pub fs_root: u64,
}

impl PasidEntry {
    /// Decodes a PASID entry; `Ok(None)` when P=0, `Err` when invalid.
    pub fn decode(raw: [u64; 4], pasid: u32) -> Result<Option<Self>, TableError> {
        let v0 = raw[0];
        if v0 & 1 == 0 {
            return Ok(None);
        }
        let pgtt = ((v0 >> 6) & 7) as u8;
        let flpm = (raw[2] >> 2) & 3;
        let levels = match flpm {
            0 => 4,
            1 => 5,
            _ => return Err(TableError::PasidInvalid { pasid, pgtt }),
        };
        let e = PasidEntry {
            raw,
            fpd: v0 & 2 != 0,
            pgtt,
            did: (raw[1] & 0xffff) as u16,
            sre: raw[2] & 1 != 0,
            levels,
            wpe: raw[2] & 16 != 0,
            fs_root: raw[2] & ADDR_MASK,
        };
        match pgtt {
            pgtt::FIRST_STAGE => {
                // A first-stage entry whose qword 2 is still zero was caught
                // half-written (P is in qword 0): treat as not present.
                if raw[2] == 0 {
                    return Ok(None);
                }
                Ok(Some(e))
            }
            pgtt::PASS_THROUGH => Ok(Some(e)),
            other => Err(TableError::PasidInvalid { pasid, pgtt: other }),
        }
    }
}

/// Reads the context entry for `rid` from the scalable-mode root table at `root`.
pub fn read_context<M: GuestMemory>(
    mem: &M,
    root: u64,
    rid: u16,
) -> Result<ContextEntry, TableError> {
    read_context_with(&mut memory::Reader::new(mem), root, rid)
}

/// [`read_context`] through a reader (one region lookup for a whole
/// translation). The root-entry half for the device's function range is one
/// atomic 64-bit load (it cannot tear); the context entry's low qword (P) is
/// read again after the high one and a change means it was being rewritten.
#[inline]
pub fn read_context_with<M: GuestMemory>(
    reader: &mut memory::Reader<'_, M>,
    root: u64,
    rid: u16,
) -> Result<ContextEntry, TableError> {
    let bus = (rid >> 8) as u8;
    let devfn = (rid & 0xff) as u8;
    let root_gpa = (root & ADDR_MASK)
        .checked_add(u64::from(bus) * 16 + if devfn < 128 { 0 } else { 8 })
        .ok_or(TableError::RootAccess { bus, gpa: root })?;
    let half = match reader.load_u64(root_gpa) {
        Ok(v) => v,
        Err(_) => {
            return Err(TableError::RootAccess {
                bus,
                gpa: root_gpa & !15,
            });
        }
    };
    if half & 1 == 0 {
        return Err(TableError::RootNotPresent { bus });
    }
    let ctx_gpa = (half & ADDR_MASK)
        .checked_add(u64::from(devfn & 0x7f) * 32)
        .ok_or(TableError::ContextAccess { gpa: half })?;
    let raw = match reader.load_entry128(ctx_gpa) {
        Ok(v) => v,
        Err(MemoryError::Torn(_)) => return Err(TableError::ContextNotPresent { rid }),
        Err(_) => return Err(TableError::ContextAccess { gpa: ctx_gpa }),
    };
    let ctx = ContextEntry::decode(raw).ok_or(TableError::ContextNotPresent { rid })?;
    // Reserved: lo bits 8:5, hi bits 63:21.
    if raw[0] & 0x1e0 != 0 || raw[1] >> 21 != 0 {
        return Err(TableError::ContextReserved { rid });
    }
    Ok(ctx)
}

/// Reads the PASID entry for `pasid` through the PASID directory of `ctx`.
/// `Ok(None)`-like conditions (not present, torn) come back as errors with
/// their own fault reason.
pub fn read_pasid_entry<M: GuestMemory>(
    mem: &M,
    ctx: &ContextEntry,
    pasid: u32,
) -> Result<PasidEntry, TableError> {
    read_pasid_entry_with(&mut memory::Reader::new(mem), ctx, pasid)
}

/// [`read_pasid_entry`] through a reader. Qwords 0..4 are each read once
/// (atomic 64-bit loads); qword 0, which holds P and PGTT, is read again
/// after the others and a change means the entry was rewritten meanwhile.
#[inline]
pub fn read_pasid_entry_with<M: GuestMemory>(
    reader: &mut memory::Reader<'_, M>,
    ctx: &ContextEntry,
    pasid: u32,
) -> Result<PasidEntry, TableError> {
    let dir_index = u64::from(pasid >> 6);
    if dir_index >= ctx.pasid_dir_entries() {
        return Err(TableError::PasidTooLarge { pasid });
    }
    let dir_gpa = ctx
        .pasid_dir
        .checked_add(dir_index * 8)
        .ok_or(TableError::PasidDirAccess { gpa: ctx.pasid_dir })?;
    let dire = reader
        .load_u64(dir_gpa)
        .map_err(|_| TableError::PasidDirAccess { gpa: dir_gpa })?;
    if dire & 1 == 0 {
        return Err(TableError::PasidDirNotPresent { pasid });
    }
    let pe_gpa = (dire & ADDR_MASK)
        .checked_add(u64::from(pasid & 0x3f) * 64)
        .ok_or(TableError::PasidAccess { gpa: dire })?;
    let mut read = |gpa: u64| {
        reader
            .load_pair(gpa)
            .map_err(|_| TableError::PasidAccess { gpa })
    };
    let a = read(pe_gpa)?;
    let b = read(pe_gpa | 16)?;
    let again = reader
        .load_u64(pe_gpa)
        .map_err(|_| TableError::PasidAccess { gpa: pe_gpa })?;
    if again != a[0] {
        return Err(TableError::PasidNotPresent { pasid });
    }
    PasidEntry::decode([a[0], a[1], b[0], b[1]], pasid)?
        .ok_or(TableError::PasidNotPresent { pasid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::store_u64;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100000)]).unwrap()
    }

    /// root at 0x1000, context table at 0x2000, PASID dir at 0x3000, PASID table 0x4000.
    fn setup(m: &GuestMemoryMmap<()>, rid: u16, pasid: u32) {
        let bus = u64::from(rid >> 8);
        let devfn = u64::from(rid & 0xff);
        let off = if devfn < 128 { 0 } else { 8 };
        store_u64(m, 0x1000 + bus * 16 + off, 0x2000 | 1).unwrap();
        store_u64(m, 0x2000 + (devfn & 0x7f) * 32, 0x3000 | 8 | 1).unwrap();
        store_u64(m, 0x3000 + u64::from(pasid >> 6) * 8, 0x4000 | 1).unwrap();
        let pe = 0x4000 + u64::from(pasid & 0x3f) * 64;
        store_u64(m, pe, 1 | (1 << 6)).unwrap();
        store_u64(m, pe + 8, 7).unwrap();
        store_u64(m, pe + 16, 0x9000 | 1).unwrap();
    }

    #[test]
    fn walk_root_context_pasid() {
        let m = mem();
        setup(&m, 0x0020, 5);
        let ctx = read_context(&m, 0x1000 | (1 << 10), 0x0020).unwrap();
        assert!(ctx.pasid_enable);
        assert_eq!(ctx.pasid_dir, 0x3000);
        assert_eq!(ctx.pasid_dir_entries(), 128);
        let pe = read_pasid_entry(&m, &ctx, 5).unwrap();
        assert_eq!(pe.did, 7);
        assert!(pe.sre);
        assert_eq!(pe.levels, 4);
        assert_eq!(pe.fs_root, 0x9000);
        assert_eq!(pe.pgtt, pgtt::FIRST_STAGE);
    }

    #[test]
    fn upper_devfn_uses_high_root_half() {
        let m = mem();
        setup(&m, 0x01a0, 64);
        let ctx = read_context(&m, 0x1000, 0x01a0).unwrap();
        assert_eq!(read_pasid_entry(&m, &ctx, 64).unwrap().did, 7);
        assert_eq!(
            read_context(&m, 0x1000, 0x0120),
            Err(TableError::RootNotPresent { bus: 1 })
        );
    }

    #[test]
    fn reject_not_present_entries() {
        let m = mem();
        assert_eq!(
            read_context(&m, 0x1000, 0x20),
            Err(TableError::RootNotPresent { bus: 0 })
        );
        store_u64(&m, 0x1000, 0x2000 | 1).unwrap();
        assert_eq!(
            read_context(&m, 0x1000, 0x20),
            Err(TableError::ContextNotPresent { rid: 0x20 })
        );
        setup(&m, 0x20, 1);
        let ctx = read_context(&m, 0x1000, 0x20).unwrap();
        assert_eq!(
            read_pasid_entry(&m, &ctx, 64),
            Err(TableError::PasidDirNotPresent { pasid: 64 })
        );
        assert_eq!(
            read_pasid_entry(&m, &ctx, 2),
            Err(TableError::PasidNotPresent { pasid: 2 })
        );
        assert_eq!(
            read_pasid_entry(&m, &ctx, 1 << 19),
            Err(TableError::PasidTooLarge { pasid: 1 << 19 })
        );
    }

    #[test]
    fn reject_half_written_pasid_entry() {
        let m = mem();
        setup(&m, 0x20, 1);
        store_u64(&m, 0x4000 + 64 + 16, 0).unwrap();
        let ctx = read_context(&m, 0x1000, 0x20).unwrap();
        assert_eq!(
            read_pasid_entry(&m, &ctx, 1),
            Err(TableError::PasidNotPresent { pasid: 1 })
        );
    }

    #[test]
    fn reject_bad_pgtt_and_reserved_context() {
        let m = mem();
        setup(&m, 0x20, 1);
        store_u64(&m, 0x4000 + 64, 1 | (2 << 6)).unwrap();
        let ctx = read_context(&m, 0x1000, 0x20).unwrap();
        assert_eq!(
            read_pasid_entry(&m, &ctx, 1),
            Err(TableError::PasidInvalid { pasid: 1, pgtt: 2 })
        );
        store_u64(&m, 0x2000 + 0x20 * 32, 0x3000 | 0x20 | 1).unwrap();
        assert_eq!(
            read_context(&m, 0x1000, 0x20),
            Err(TableError::ContextReserved { rid: 0x20 })
        );
    }

    #[test]
    fn pass_through_entry_decodes() {
        let e = PasidEntry::decode([1 | (4 << 6), 3, 0, 0], 0)
            .unwrap()
            .unwrap();
        assert_eq!(e.pgtt, pgtt::PASS_THROUGH);
        assert_eq!(PasidEntry::decode([0, 3, 0, 0], 0), Ok(None));
        assert!(PasidEntry::decode([1 | (1 << 6), 0, 0x1000 | (3 << 2), 0], 0).is_err());
    }
}
