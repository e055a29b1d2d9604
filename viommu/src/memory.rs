//! Guest-physical memory as the IOMMU sees it: naturally aligned 64-bit loads
//! of table entries (through a reader that resolves the guest-memory region
//! once per translation), 128-bit entries read as two loads with the word
//! holding P read again to catch tearing, and the
//! compare-exchange the walker uses to set Accessed/Dirty bits (never a blind
//! store, because the CPU may be editing the same entry).

use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::bitmap::BS;
use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryRegion, Permissions, VolatileMemory,
    VolatileSlice,
};

/// Errors accessing guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The address is not backed by guest RAM (or crosses a region end).
    #[error("guest address {0:#x} is not backed by memory")]
    Unbacked(u64),
    /// The address is not naturally aligned for the access.
    #[error("guest address {0:#x} is misaligned")]
    Misaligned(u64),
    /// A 128-bit entry changed between two reads of it.
    #[error("128-bit entry at {0:#x} was torn (changed while read)")]
    Torn(u64),
}

fn slice<M: GuestMemory>(
    mem: &M,
    gpa: u64,
    len: usize,
    perm: Permissions,
) -> Result<VolatileSlice<'_, BS<'_, M::Bitmap>>, MemoryError> {
    let mut it = mem
        .get_slices(GuestAddress(gpa), len, perm)
        .map_err(|_| MemoryError::Unbacked(gpa))?;
    match it.next() {
        Some(Ok(s)) if s.len() == len => Ok(s),
        _ => Err(MemoryError::Unbacked(gpa)),
    }
}

type RegionBitmap<M> =
    <<<M as GuestMemory>::PhysicalMemory as GuestMemoryBackend>::R as GuestMemoryRegion>::B;

/// Reads table entries through the guest-memory region it resolved last, so
/// a walk over several table pages looks the region up once. Memory without
/// a plain physical backend falls back to [`load_u64`].
pub struct Reader<'a, M: GuestMemory> {
    mem: &'a M,
    last: Option<(u64, VolatileSlice<'a, BS<'a, RegionBitmap<M>>>)>,
}

impl<M: GuestMemory> std::fmt::Debug for Reader<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reader(region at {:?})", self.last.as_ref().map(|l| l.0))
    }
}

impl<'a, M: GuestMemory> Reader<'a, M> {
    /// A reader over `mem`.
    #[inline]
    pub fn new(mem: &'a M) -> Self {
        Reader { mem, last: None }
    }

    /// The memory read.
    pub fn memory(&self) -> &'a M {
        self.mem
    }

    /// Loads the naturally aligned u64 at `gpa` (one atomic access).
    #[inline(always)]
    pub fn load_u64(&mut self, gpa: u64) -> Result<u64, MemoryError> {
        // A misaligned or out-of-region address fails here and gets its
        // error from the slow path.
        if let Some((start, s)) = &self.last {
            if let Some(v) = Self::load_in(*start, s, gpa) {
                return Ok(v);
            }
        }
        self.load_u64_slow(gpa)
    }

    /// [`load_u64`](Self::load_u64) outside the region resolved last:
    /// resolves the region of `gpa` (kept for the next loads).
    #[cold]
    #[inline(never)]
    fn load_u64_slow(&mut self, gpa: u64) -> Result<u64, MemoryError> {
        if gpa & 7 != 0 {
            return Err(MemoryError::Misaligned(gpa));
        }
        if let Some(phys) = self.mem.physical_memory() {
            if let Some(r) = phys.find_region(GuestAddress(gpa)) {
                if let Ok(s) = r.as_volatile_slice() {
                    let start = r.start_addr().0;
                    let v = Self::load_in(start, &s, gpa);
                    self.last = Some((start, s));
                    if let Some(v) = v {
                        return Ok(v);
                    }
                }
            }
        }
        load_u64(self.mem, gpa)
    }

    #[inline(always)]
    fn load_in(
        start: u64,
        s: &VolatileSlice<'a, BS<'a, RegionBitmap<M>>>,
        gpa: u64,
    ) -> Option<u64> {
        // get_atomic_ref checks the bounds and the alignment itself.
        let off = usize::try_from(gpa.checked_sub(start)?).ok()?;
        s.get_atomic_ref::<AtomicU64>(off)
            .ok()
            .map(|a| u64::from_le(a.load(Ordering::Acquire)))
    }

    /// Loads two consecutive u64s (16-aligned) once each.
    #[inline(always)]
    pub fn load_pair(&mut self, gpa: u64) -> Result<[u64; 2], MemoryError> {
        if gpa & 15 != 0 {
            return Err(MemoryError::Misaligned(gpa));
        }
        let hi = gpa.checked_add(8).ok_or(MemoryError::Unbacked(gpa))?;
        Ok([self.load_u64(gpa)?, self.load_u64(hi)?])
    }

    /// Loads a 128-bit table entry whose present bit is in its low qword:
    /// low, high, then the low qword again; a change of the low qword (a
    /// writer was updating the entry) is [`MemoryError::Torn`]. Each load is
    /// one atomic 64-bit access, so neither half can be torn by itself.
    #[inline(always)]
    pub fn load_entry128(&mut self, gpa: u64) -> Result<[u64; 2], MemoryError> {
        let v = self.load_pair(gpa)?;
        if self.load_u64(gpa)? != v[0] {
            return Err(MemoryError::Torn(gpa));
        }
        Ok(v)
    }

    /// Loads the 128 bits at `gpa` as two u64s, twice; a difference is
    /// [`MemoryError::Torn`].
    pub fn load_u128(&mut self, gpa: u64) -> Result<[u64; 2], MemoryError> {
        let first = self.load_pair(gpa)?;
        if self.load_pair(gpa)? != first {
            return Err(MemoryError::Torn(gpa));
        }
        Ok(first)
    }
}

/// Loads the naturally aligned u64 at `gpa` (one atomic access).
#[inline]
pub fn load_u64<M: GuestMemory>(mem: &M, gpa: u64) -> Result<u64, MemoryError> {
    if gpa & 7 != 0 {
        return Err(MemoryError::Misaligned(gpa));
    }
    let s = slice(mem, gpa, 8, Permissions::Read)?;
    s.get_atomic_ref::<AtomicU64>(0)
        .map(|a| u64::from_le(a.load(Ordering::Acquire)))
        .map_err(|_| MemoryError::Misaligned(gpa))
}

/// Stores a u64 at `gpa` (atomic). Used for status writes and queue entries.
pub fn store_u64<M: GuestMemory>(mem: &M, gpa: u64, val: u64) -> Result<(), MemoryError> {
    if gpa & 7 != 0 {
        return Err(MemoryError::Misaligned(gpa));
    }
    let s = slice(mem, gpa, 8, Permissions::Write)?;
    s.get_atomic_ref::<AtomicU64>(0)
        .map(|a| a.store(val.to_le(), Ordering::Release))
        .map_err(|_| MemoryError::Misaligned(gpa))
}

/// Stores a u32 at `gpa` (4-byte aligned). Used by wait-descriptor status writes.
pub fn store_u32<M: GuestMemory>(mem: &M, gpa: u64, val: u32) -> Result<(), MemoryError> {
    if gpa & 3 != 0 {
        return Err(MemoryError::Misaligned(gpa));
    }
    let s = slice(mem, gpa, 4, Permissions::Write)?;
    s.get_atomic_ref::<std::sync::atomic::AtomicU32>(0)
        .map(|a| a.store(val.to_le(), Ordering::Release))
        .map_err(|_| MemoryError::Misaligned(gpa))
}

/// Compare-exchange of the u64 at `gpa`; `Ok(Err(current))` when another
/// writer changed it first.
pub fn cmpxchg_u64<M: GuestMemory>(
    mem: &M,
    gpa: u64,
    old: u64,
    new: u64,
) -> Result<Result<(), u64>, MemoryError> {
    if gpa & 7 != 0 {
        return Err(MemoryError::Misaligned(gpa));
    }
    let s = slice(mem, gpa, 8, Permissions::ReadWrite)?;
    let a = s
        .get_atomic_ref::<AtomicU64>(0)
        .map_err(|_| MemoryError::Misaligned(gpa))?;
    Ok(a.compare_exchange(
        old.to_le(),
        new.to_le(),
        Ordering::AcqRel,
        Ordering::Acquire,
    )
    .map(|_| ())
    .map_err(u64::from_le))
}

/// Reads the 128 bits at `gpa` (16-byte aligned) as two u64 loads, then reads
/// them again; a difference means the entry was being written: `Torn`.
pub fn load_u128<M: GuestMemory>(mem: &M, gpa: u64) -> Result<[u64; 2], MemoryError> {
    Reader::new(mem).load_u128(gpa)
}

/// Reads a whole 4-KiB page into `buf` (for checker snapshots).
pub fn read_page<M: GuestMemory>(
    mem: &M,
    gpa: u64,
    buf: &mut [u8; 4096],
) -> Result<(), MemoryError> {
    if gpa & 0xfff != 0 {
        return Err(MemoryError::Misaligned(gpa));
    }
    let s = slice(mem, gpa, 4096, Permissions::Read)?;
    s.copy_to(&mut buf[..]);
    Ok(())
}

/// Writes bytes at `gpa` (used for page-request descriptors).
pub fn write_bytes<M: GuestMemory>(mem: &M, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
    let s = slice(mem, gpa, data.len(), Permissions::Write)?;
    s.copy_from(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    #[test]
    fn load_store_cmpxchg() {
        let m = mem();
        store_u64(&m, 0x1000, 0x1234).unwrap();
        assert_eq!(load_u64(&m, 0x1000), Ok(0x1234));
        assert_eq!(cmpxchg_u64(&m, 0x1000, 0x1234, 0x1235), Ok(Ok(())));
        assert_eq!(cmpxchg_u64(&m, 0x1000, 0x1234, 0x1), Ok(Err(0x1235)));
        store_u32(&m, 0x2004, 7).unwrap();
        assert_eq!(load_u64(&m, 0x2000), Ok(7 << 32));
        assert_eq!(load_u128(&m, 0x1000), Ok([0x1235, 0]));
        store_u64(&m, 0x1008, 0x77).unwrap();
        let mut r = Reader::new(&m);
        assert_eq!(r.load_entry128(0x1000), Ok([0x1235, 0x77]));
        assert_eq!(
            r.load_entry128(0x1008),
            Err(MemoryError::Misaligned(0x1008))
        );
        assert_eq!(r.load_entry128(0xfff0), Ok([0, 0]));
        assert_eq!(
            r.load_entry128(0x10000),
            Err(MemoryError::Unbacked(0x10000))
        );
    }

    #[test]
    fn reject_unbacked_and_misaligned() {
        let m = mem();
        assert_eq!(load_u64(&m, 0x10000), Err(MemoryError::Unbacked(0x10000)));
        assert_eq!(load_u64(&m, 0xfffc), Err(MemoryError::Misaligned(0xfffc)));
        assert_eq!(
            load_u64(&m, u64::MAX - 7),
            Err(MemoryError::Unbacked(u64::MAX - 7))
        );
        assert_eq!(
            load_u128(&m, 0xfff0 + 8),
            Err(MemoryError::Misaligned(0xfff8))
        );
        let mut page = [0u8; 4096];
        assert!(read_page(&m, 0x10000, &mut page).is_err());
    }
}
