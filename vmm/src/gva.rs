//! Guest-virtual to guest-physical translation through the guest's own
//! page tables, as the vCPU sees them (CR0/CR3/CR4/EFER): reading the
//! instruction bytes at RIP when KVM cannot emulate them, and the memory
//! operands of the instructions the VMM emulates (`crate::emulate`), with
//! the supervisor write-protection check (CR0.WP). Handles no paging,
//! 32-bit paging, PAE, 4- and 5-level paging. Accessed and dirty bits are
//! not set.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const CR0_PG: u64 = 1 << 31;
const CR0_WP: u64 = 1 << 16;
const WRITABLE: u64 = 1 << 1;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
/// CR4.LA57: 5-level paging.
pub const CR4_LA57: u64 = 1 << 12;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The registers that decide how addresses are translated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingMode {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// Why a translation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalkError {
    /// An entry on the walk is not present.
    #[error("{gva:#x} is not mapped (level {level} entry at {entry_addr:#x} is {entry:#x})")]
    NotPresent {
        /// The address translated.
        gva: u64,
        /// Paging level of the entry (1 = PTE).
        level: u32,
        /// Where the entry is.
        entry_addr: u64,
        /// Its value.
        entry: u64,
    },
    /// A supervisor write to a page some level maps read-only, with
    /// CR0.WP set.
    #[error("{gva:#x} is mapped read-only (level {level} entry) and CR0.WP is set")]
    WriteProtected {
        /// The address translated.
        gva: u64,
        /// Paging level of the first read-only entry (1 = PTE).
        level: u32,
    },
    /// A table lies outside guest memory.
    #[error("page table at {addr:#x} is outside guest memory")]
    BadTable {
        /// The table entry's address.
        addr: u64,
    },
}

fn read_entry(mem: &GuestMemoryMmap, addr: u64, wide: bool) -> Result<u64, WalkError> {
    if wide {
        mem.read_obj::<u64>(GuestAddress(addr))
            .map_err(|_| WalkError::BadTable { addr })
    } else {
        mem.read_obj::<u32>(GuestAddress(addr))
            .map(u64::from)
            .map_err(|_| WalkError::BadTable { addr })
    }
}

/// Translates `gva` as the vCPU would, for a read.
pub fn translate(mem: &GuestMemoryMmap, mode: &PagingMode, gva: u64) -> Result<u64, WalkError> {
    translate_access(mem, mode, gva, false)
}

/// Translates `gva` as the vCPU would for a supervisor access; a `write`
/// also needs every level writable when CR0.WP is set.
pub fn translate_access(
    mem: &GuestMemoryMmap,
    mode: &PagingMode,
    gva: u64,
    write: bool,
) -> Result<u64, WalkError> {
    let check_write = write && mode.cr0 & CR0_WP != 0;
    let protect = |e: u64, level: u32| {
        if check_write && e & WRITABLE == 0 {
            Err(WalkError::WriteProtected { gva, level })
        } else {
            Ok(())
        }
    };
    if mode.cr0 & CR0_PG == 0 {
        return Ok(gva);
    }
    // (levels, index bits per level, entry width, first table)
    let (levels, bits, wide, mut table) = if mode.efer & EFER_LMA != 0 {
        let levels = if mode.cr4 & CR4_LA57 != 0 { 5 } else { 4 };
        (levels, 9u32, true, mode.cr3 & ADDR_MASK)
    } else if mode.cr4 & CR4_PAE != 0 {
        // PAE: a 4-entry PDPT at CR3[31:5], then 2 levels of 9 bits.
        let pdpte_addr = (mode.cr3 & 0xffff_ffe0) + ((gva >> 30) & 3) * 8;
        let e = read_entry(mem, pdpte_addr, true)?;
        if e & PRESENT == 0 {
            return Err(WalkError::NotPresent {
                gva,
                level: 3,
                entry_addr: pdpte_addr,
                entry: e,
            });
        }
        (2, 9, true, e & ADDR_MASK)
    } else {
        (2, 10, false, mode.cr3 & 0xffff_f000)
    };
    let entry_size: u64 = if wide { 8 } else { 4 };
    let mask = (1u64 << bits) - 1;
    for level in (1..=levels).rev() {
        let shift = 12 + bits * (level - 1);
        let entry_addr = table + ((gva >> shift) & mask) * entry_size;
        let e = read_entry(mem, entry_addr, wide)?;
        if e & PRESENT == 0 {
            return Err(WalkError::NotPresent {
                gva,
                level,
                entry_addr,
                entry: e,
            });
        }
        protect(e, level)?;
        let large_ok = if wide {
            level == 2 || level == 3
        } else {
            level == 2 && mode.cr4 & CR4_PSE != 0
        };
        if level > 1 && large_ok && e & PAGE_SIZE_BIT != 0 {
            let page_mask = (1u64 << shift) - 1;
            let base = if wide {
                e & ADDR_MASK & !page_mask
            } else {
                e & 0xffc0_0000
            };
            return Ok(base | (gva & page_mask));
        }
        table = if wide { e & ADDR_MASK } else { e & 0xffff_f000 };
    }
    Ok(table | (gva & 0xfff))
}

/// Reads up to `len` bytes at `gva`, page by page (one walk per page);
/// stops at the first byte that cannot be translated or read (so the
/// result may be shorter).
pub fn read_bytes(mem: &GuestMemoryMmap, mode: &PagingMode, gva: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let Some(va) = gva.checked_add(out.len() as u64) else {
            break;
        };
        let Ok(pa) = translate(mem, mode, va) else {
            break;
        };
        let in_page = 0x1000 - usize::try_from(va & 0xfff).unwrap_or(0);
        let n = in_page.min(len - out.len());
        let start = out.len();
        out.resize(start + n, 0);
        if mem.read_slice(&mut out[start..], GuestAddress(pa)).is_err() {
            // Keep what lies in guest memory, byte by byte.
            out.truncate(start);
            for i in 0..n as u64 {
                match mem.read_obj::<u8>(GuestAddress(pa + i)) {
                    Ok(b) => out.push(b),
                    Err(_) => return out,
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
    }

    #[test]
    fn four_level_walk_with_4k_and_2m_pages() {
        let m = mem();
        // PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000.
        m.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
        m.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
        m.write_obj(0x4003u64, GuestAddress(0x3000)).unwrap(); // PD[0] -> PT
        m.write_obj(0x40_0083u64, GuestAddress(0x3008)).unwrap(); // PD[1]: 2M page at 4M
        m.write_obj(0x9003u64, GuestAddress(0x4000 + 5 * 8))
            .unwrap(); // PT[5] -> 0x9000
        let mode = PagingMode {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
        };
        assert_eq!(translate(&m, &mode, 0x5123), Ok(0x9123));
        assert_eq!(translate(&m, &mode, 0x20_0042), Ok(0x40_0042));
        m.write_slice(&[0x0f, 0x0b], GuestAddress(0x9ffe)).unwrap();
        assert_eq!(
            read_bytes(&m, &mode, 0x5ffe, 4),
            vec![0x0f, 0x0b],
            "stops at the unmapped page"
        );
    }

    #[test]
    fn supervisor_writes_honour_cr0_wp() {
        let m = mem();
        m.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
        m.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
        m.write_obj(0x4003u64, GuestAddress(0x3000)).unwrap();
        m.write_obj(0x9001u64, GuestAddress(0x4000 + 5 * 8))
            .unwrap(); // PT[5]: present, read-only
        let mut mode = PagingMode {
            cr0: CR0_PG | CR0_WP | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA,
        };
        assert_eq!(translate(&m, &mode, 0x5010), Ok(0x9010));
        assert_eq!(
            translate_access(&m, &mode, 0x5010, true),
            Err(WalkError::WriteProtected {
                gva: 0x5010,
                level: 1
            })
        );
        // Without CR0.WP supervisor writes go through.
        mode.cr0 &= !CR0_WP;
        assert_eq!(translate_access(&m, &mode, 0x5010, true), Ok(0x9010));
    }

    #[test]
    fn reject_unmapped_addresses() {
        let m = mem();
        let mode = PagingMode {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA,
        };
        assert_eq!(
            translate(&m, &mode, 0x1234).unwrap_err().to_string(),
            "0x1234 is not mapped (level 4 entry at 0x1000 is 0x0)"
        );
        let bad = PagingMode {
            cr3: 0x4000_0000,
            ..mode
        };
        assert_eq!(
            translate(&m, &bad, 0),
            Err(WalkError::BadTable { addr: 0x4000_0000 })
        );
    }

    #[test]
    fn read_bytes_stops_at_the_end_of_guest_memory() {
        let m = mem();
        let end = 16u64 << 20;
        m.write_slice(&[1, 2, 3], GuestAddress(end - 3)).unwrap();
        assert_eq!(
            read_bytes(&m, &PagingMode::default(), end - 3, 8),
            vec![1, 2, 3]
        );
        assert!(read_bytes(&m, &PagingMode::default(), end, 8).is_empty());
        assert!(read_bytes(&m, &PagingMode::default(), u64::MAX, 8).len() <= 1);
    }

    #[test]
    fn no_paging_and_32bit_paging() {
        let m = mem();
        assert_eq!(translate(&m, &PagingMode::default(), 0xabc), Ok(0xabc));
        // 32-bit: PD at 0x1000; PDE[1] is a 4M page at 8M (PSE).
        m.write_obj(0x80_0083u32, GuestAddress(0x1004)).unwrap();
        let mode = PagingMode {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
        };
        assert_eq!(translate(&m, &mode, 0x40_0010), Ok(0x80_0010));
    }
}
