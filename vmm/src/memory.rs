//! Guest physical memory: the RAM layout around the 3-4 GiB MMIO hole
//! (docs/ARCHITECTURE.md's platform map), the guest memory object, and the
//! E820 memory map the loaders hand to the guest.

use vm_memory::{GuestAddress, GuestMemoryMmap};

// The hole's bounds are the platform map's.
pub use devices::layout::{HIGH_RAM_START, MMIO_HOLE_START};
/// End of conventional memory below 1 MiB (the EBDA and ROM area above it
/// are left out of the RAM map, as on PCs).
pub const LOW_RAM_END: u64 = 0x9_fc00;
/// Start of memory above 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;

/// E820 entry types.
pub const E820_RAM: u32 = 1;
/// Reserved (MMIO, firmware).
pub const E820_RESERVED: u32 = 2;

/// Errors creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// mmap of the guest RAM failed.
    #[error("cannot allocate {size:#x} bytes of guest memory: {source}")]
    Allocate {
        /// Requested size.
        size: u64,
        /// What vm-memory reported.
        source: vm_memory::mmap::FromRangesError,
    },
    /// The size does not fit the host's address space.
    #[error("guest memory size {size:#x} does not fit in this host's address space")]
    TooLarge {
        /// Requested size.
        size: u64,
    },
}

/// One E820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// The guest RAM ranges for `size` bytes: below the hole, then above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    let low = size.min(MMIO_HOLE_START);
    let mut v = vec![(0, low)];
    if size > low {
        v.push((HIGH_RAM_START, size - low));
    }
    v
}

/// Allocates guest memory of `size` bytes.
pub fn create_guest_memory(size: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let mut ranges = Vec::new();
    for (start, len) in ram_ranges(size) {
        let len = usize::try_from(len).map_err(|_| MemoryError::TooLarge { size })?;
        ranges.push((GuestAddress(start), len));
    }
    GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Allocate { size, source })
}

/// End of RAM below the hole (exclusive).
pub fn low_ram_end(size: u64) -> u64 {
    size.min(MMIO_HOLE_START)
}

/// The E820 map for `size` bytes of RAM, plus `reserved` MMIO ranges
/// (address, length) that the platform's devices claim.
pub fn e820_map(size: u64, reserved: &[(u64, u64)]) -> Vec<E820Entry> {
    let mut v = vec![E820Entry {
        addr: 0,
        size: LOW_RAM_END,
        kind: E820_RAM,
    }];
    let low_end = low_ram_end(size);
    if low_end > HIMEM_START {
        v.push(E820Entry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820_RAM,
        });
    }
    for &(addr, len) in reserved {
        v.push(E820Entry {
            addr,
            size: len,
            kind: E820_RESERVED,
        });
    }
    if size > low_end {
        v.push(E820Entry {
            addr: HIGH_RAM_START,
            size: size - low_end,
            kind: E820_RAM,
        });
    }
    v.sort_by_key(|e| e.addr);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn small_memory_is_one_range() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        let m = e820_map(256 << 20, &[]);
        assert_eq!(
            m,
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 0x100000,
                    size: (256 << 20) - 0x100000,
                    kind: E820_RAM
                },
            ]
        );
    }

    #[test]
    fn memory_above_3g_continues_at_4g() {
        let size = 5u64 << 30;
        assert_eq!(ram_ranges(size), vec![(0, 3 << 30), (4 << 30, 2 << 30)]);
        let m = e820_map(size, &[(0xe000_0000, 0x10_0000), (0xfed9_0000, 0x1000)]);
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[1],
            E820Entry {
                addr: 0x100000,
                size: (3 << 30) - 0x100000,
                kind: E820_RAM
            }
        );
        assert_eq!(
            m[2],
            E820Entry {
                addr: 0xe000_0000,
                size: 0x10_0000,
                kind: E820_RESERVED
            }
        );
        assert_eq!(m[3].addr, 0xfed9_0000);
        assert_eq!(
            m[4],
            E820Entry {
                addr: 4 << 30,
                size: 2 << 30,
                kind: E820_RAM
            }
        );
        let total: u64 = m
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(total, size - (HIMEM_START - LOW_RAM_END));
    }

    #[test]
    fn guest_memory_matches_the_ranges() {
        let m = create_guest_memory(32 << 20).unwrap();
        assert_eq!(m.num_regions(), 1);
        assert!(m.address_in_range(GuestAddress((32 << 20) - 1)));
        assert!(!m.address_in_range(GuestAddress(32 << 20)));
    }
}
