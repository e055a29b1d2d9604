//! The stale-walk checker. For every translation (or speculative walk) that
//! used a cached leaf or paging-structure entry, it walks the current tables
//! from the PASID entry's root and compares: the translation is stale if the
//! outcome (fault vs. output page, size and rights) or the table page reached
//! below the deepest cached entry differs. Class `leaf` if the IOTLB supplied
//! the result, else `reused` if the page the cached entry points to changed
//! since it was last seen linked, else `unlinked`. "Last seen linked" is the
//! latest walk (a fill) or check that found an entry in memory pointing at the
//! page; its contents then are kept as a hash with the Accessed/Dirty bits the
//! IOMMU itself sets masked out (see `Caches::seen_linked`), so a table that
//! gains entries while linked and is then unlinked but not reused is
//! `unlinked`, never a false `reused`.
//! The device still gets the cached result; the checker only observes.

use serde::Serialize;
use vm_memory::GuestMemory;

use crate::cache::{IotlbEntry, PscEntry};
use crate::memory;
use crate::walk::{self, Geometry, Leaf, PTE_A, PTE_ADDR, PTE_D, Path, WalkError};

/// Under `sampled`, one candidate translation in this many is checked.
pub const SAMPLE_PERIOD: u64 = 16;

/// Stale-walk classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleClass {
    /// The cached entry's page is no longer linked there but is unchanged.
    Unlinked,
    /// The cached entry's page changed since it was cached: freed and reused.
    Reused,
    /// A cached leaf differs from memory.
    Leaf,
}

/// One stale walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StaleWalk {
    /// Sequence number (translations + speculative walks so far).
    pub seq: u64,
    /// Class.
    pub class: StaleClass,
    /// Requester id.
    pub rid: u16,
    /// PASID used (RID_PASID for requests without one).
    pub pasid: u32,
    /// Input address.
    pub addr: u64,
    /// Level of the cached entry (1 for an IOTLB leaf).
    pub level: u8,
    /// The cached entry value.
    pub cached: u64,
    /// The entry at that level in memory now (0 if the walk stops above it).
    pub memory: u64,
    /// The table page the cached entry points to (for a leaf: the page
    /// holding the leaf entry).
    pub table_page: u64,
}

/// The cached entry a translation used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    /// An IOTLB leaf.
    Iotlb(IotlbEntry),
    /// A paging-structure entry at a level (5..2).
    Psc(u8, PscEntry),
}

/// Hash of a table page with the A and D bits of every entry cleared.
/// `0` stands for "unreadable".
pub fn page_hash<M: GuestMemory>(mem: &M, page: u64) -> u64 {
    let mut buf = [0u8; 4096];
    if memory::read_page(mem, page & !0xfff, &mut buf).is_err() {
        return 0;
    }
    // Four independent lanes keep the multiplier busy; each entry is mixed
    // with its position so swapping entries changes the hash.
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lanes = [
        0x243f_6a88_85a3_08d3u64,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    for (i, chunk) in buf.chunks_exact(32).enumerate() {
        for (j, lane) in lanes.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&chunk[j * 8..j * 8 + 8]);
            let v = u64::from_le_bytes(w) & !(PTE_A | PTE_D);
            *lane = (*lane ^ v ^ (i as u64)).wrapping_mul(K).rotate_left(31);
        }
    }
    let h = lanes
        .iter()
        .fold(0u64, |acc, l| (acc ^ l).wrapping_mul(K).rotate_left(27));
    h | 1
}

fn same_outcome(a: &Result<Leaf, WalkError>, b: &Result<Leaf, WalkError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x.page == y.page && x.size == y.size && x.rights == y.rights,
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

/// The table entries (address and value, top down, leaf last) a check of an
/// IOTLB hit read and found consistent with the cached leaf. A walk is a
/// function of the values it reads (each value selects the next address), so
/// when every one of these addresses still holds the same value, a fresh walk
/// would read exactly them again and reach the same leaf: the next check of
/// the same entry reads them all again from memory and compares, instead of
/// decoding a walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifiedWalk {
    gpas: [u64; 5],
    values: [u64; 5],
    len: u8,
}

impl VerifiedWalk {
    /// From a successful walk's path and leaf.
    pub fn new(path: &Path, leaf: &Leaf) -> Self {
        let mut v = VerifiedWalk::default();
        for e in path
            .entries()
            .iter()
            .chain(std::iter::once(&walk::PathEntry {
                level: leaf.level,
                gpa: leaf.gpa,
                value: leaf.value,
            }))
        {
            if let (Some(g), Some(x)) = (
                v.gpas.get_mut(usize::from(v.len)),
                v.values.get_mut(usize::from(v.len)),
            ) {
                *g = e.gpa;
                *x = e.value;
                v.len += 1;
            }
        }
        v
    }

    /// Reads every recorded entry from memory again; true when all still
    /// hold the recorded values.
    #[inline]
    pub fn unchanged<M: GuestMemory>(&self, reader: &mut memory::Reader<'_, M>) -> bool {
        let n = usize::from(self.len).min(5);
        for i in 0..n {
            if reader.load_u64(self.gpas[i]) != Ok(self.values[i]) {
                return false;
            }
        }
        n > 0
    }

    /// True before any successful check was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// [`check`] of an IOTLB hit that also returns, when the hit is not stale,
/// the entries the fresh walk read (for [`VerifiedWalk::unchanged`]).
pub fn check_iotlb<M: GuestMemory>(
    mem: &M,
    geo: &Geometry,
    root: u64,
    addr: u64,
    e: &IotlbEntry,
) -> Result<VerifiedWalk, (StaleClass, u8, u64, u64, u64)> {
    let mut path = Path::default();
    let fresh = walk::walk(mem, geo, geo.root(root), addr, &mut path);
    match &fresh {
        Ok(l) if l.page == e.leaf.page && l.size == e.leaf.size && l.rights == e.leaf.rights => {
            Ok(VerifiedWalk::new(&path, l))
        }
        _ => Err((
            StaleClass::Leaf,
            e.leaf.level,
            e.leaf.value,
            fresh.as_ref().map(|l| l.value).unwrap_or(0),
            e.leaf.gpa & !0xfff,
        )),
    }
}

/// A stale walk found by a check: class, level of the cached entry, cached
/// value, value in memory now, table page.
pub type Stale = (StaleClass, u8, u64, u64, u64);

/// What a check of a paging-structure-cache hit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PscCheck {
    /// The entry in memory still points at the cached table page: the page
    /// is seen linked now, with contents hashing to `snapshot` (the caller
    /// records it as the page's "last seen linked" state). `stale` only when
    /// the outcome differs anyway (rights combined above the entry changed);
    /// its class is then `unlinked`, as the page itself is where it was.
    Linked {
        /// [`page_hash`] of the table page now.
        snapshot: u64,
        /// A stale walk through changed upper-level rights.
        stale: Option<Stale>,
    },
    /// The entry no longer points at the cached table page: `reused` when
    /// the page changed since it was last seen linked, else `unlinked`.
    Moved(Stale),
}

/// Re-walks memory for `addr` from `root` and compares with what a walk that
/// started below the cached paging-structure entry `e` at `level` produced
/// (`cached_outcome`). `last_seen_linked` is the [`page_hash`] of `e.table`
/// when a walk or check last found it linked. Never writes guest memory.
#[allow(clippy::too_many_arguments)]
pub fn check_psc<M: GuestMemory>(
    mem: &M,
    geo: &Geometry,
    root: u64,
    addr: u64,
    level: u8,
    e: &PscEntry,
    cached_outcome: &Result<Leaf, WalkError>,
    last_seen_linked: u64,
) -> PscCheck {
    let mut path = Path::default();
    let fresh = walk::walk(mem, geo, geo.root(root), addr, &mut path);
    let mem_entry = path
        .entries()
        .iter()
        .find(|p| p.level == level)
        .map(|p| p.value);
    // The entry at that level now: a link (in the path), a leaf, or
    // something that ended the walk there.
    let mem_value = mem_entry.or(match &fresh {
        Ok(l) if l.level == level => Some(l.value),
        Err(WalkError::Reserved {
            level: l, value, ..
        }) if *l == level => Some(*value),
        _ => None,
    });
    let linked = mem_entry.is_some_and(|v| v & PTE_ADDR == e.table);
    if linked {
        let stale = (!same_outcome(&fresh, cached_outcome)).then_some((
            StaleClass::Unlinked,
            level,
            e.value,
            mem_value.unwrap_or(0),
            e.table,
        ));
        return PscCheck::Linked {
            snapshot: page_hash(mem, e.table),
            stale,
        };
    }
    let class = if page_hash(mem, e.table) != last_seen_linked {
        StaleClass::Reused
    } else {
        StaleClass::Unlinked
    };
    PscCheck::Moved((class, level, e.value, mem_value.unwrap_or(0), e.table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::store_u64;
    use crate::walk::{Rights, index};
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    #[test]
    fn hash_ignores_accessed_dirty() {
        let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        store_u64(&m, 0x1008, 0x5007).unwrap();
        let h = page_hash(&m, 0x1000);
        store_u64(&m, 0x1008, 0x5007 | PTE_A | PTE_D).unwrap();
        assert_eq!(page_hash(&m, 0x1000), h);
        store_u64(&m, 0x1008, 0x6007).unwrap();
        assert_ne!(page_hash(&m, 0x1000), h);
        assert_eq!(page_hash(&m, 0x10000), 0);
    }

    /// Changes a reuse makes are seen: entries swapped (within a lane and
    /// across lanes), the same top bit flipped in two entries.
    #[test]
    fn hash_sees_moves_and_paired_changes() {
        let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        for i in 0..512 {
            store_u64(&m, 0x1000 + i * 8, 0x10_0000 + i * 0x1007).unwrap();
        }
        let base = page_hash(&m, 0x1000);
        let mut seen = vec![base];
        let swap = |a: u64, b: u64| {
            let (x, y) = (
                crate::memory::load_u64(&m, 0x1000 + a * 8).unwrap(),
                crate::memory::load_u64(&m, 0x1000 + b * 8).unwrap(),
            );
            store_u64(&m, 0x1000 + a * 8, y).unwrap();
            store_u64(&m, 0x1000 + b * 8, x).unwrap();
        };
        for (a, b) in [(0, 8), (3, 4), (10, 500)] {
            swap(a, b);
            seen.push(page_hash(&m, 0x1000));
            swap(a, b);
        }
        assert_eq!(page_hash(&m, 0x1000), base);
        for (a, b) in [(1, 17), (2, 66)] {
            for i in [a, b] {
                let v = crate::memory::load_u64(&m, 0x1000 + i * 8).unwrap();
                store_u64(&m, 0x1000 + i * 8, v ^ (1 << 63)).unwrap();
            }
            seen.push(page_hash(&m, 0x1000));
        }
        let mut uniq = seen.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), seen.len(), "{seen:x?}");
    }

    #[test]
    fn unchanged_pde_is_not_stale_but_relinked_one_is() {
        let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100000)]).unwrap();
        let geo = Geometry::new(4, 48, true);
        let va = 0x1000;
        store_u64(&m, 0x10000 + index(va, 4) * 8, 0x11000 | 7).unwrap();
        store_u64(&m, 0x11000 + index(va, 3) * 8, 0x12000 | 7).unwrap();
        store_u64(&m, 0x12000 + index(va, 2) * 8, 0x13000 | 7).unwrap();
        store_u64(&m, 0x13000 + index(va, 1) * 8, 0x50000 | 7).unwrap();
        let pde = PscEntry {
            value: 0x13000 | 7,
            gpa: 0x12000,
            table: 0x13000,
            rights: Rights::ALL,
            filled: 0,
        };
        let seen = page_hash(&m, 0x13000);
        let mut path = Path::default();
        let start = walk::WalkStart {
            level: 1,
            table: 0x13000,
            rights: Rights::ALL,
        };
        let cached = walk::walk(&m, &geo, start, va, &mut path);
        let check =
            |m: &GuestMemoryMmap<()>, seen| check_psc(m, &geo, 0x10000, va, 2, &pde, &cached, seen);
        assert_eq!(
            check(&m, seen),
            PscCheck::Linked {
                snapshot: seen,
                stale: None
            }
        );
        // The linked page gains an entry: still linked, the new contents are
        // what the caller records as last seen linked.
        store_u64(&m, 0x13000 + 16, 0x51000 | 7).unwrap();
        let PscCheck::Linked {
            snapshot: grown,
            stale: None,
        } = check(&m, seen)
        else {
            panic!("a grown, linked page is not stale");
        };
        assert_ne!(grown, seen);
        // Unlink: the PDE now points elsewhere, old page untouched since it
        // was last seen linked (grown).
        store_u64(&m, 0x14000 + index(va, 1) * 8, 0x50000 | 7).unwrap();
        store_u64(&m, 0x12000, 0x14000 | 7).unwrap();
        let PscCheck::Moved(r) = check(&m, grown) else {
            panic!("relinked PDE is stale");
        };
        assert_eq!(
            (r.0, r.1, r.3, r.4),
            (StaleClass::Unlinked, 2, 0x14000 | 7, 0x13000)
        );
        // Against the fill-time contents the same page looks changed.
        assert!(matches!(
            check(&m, seen),
            PscCheck::Moved((StaleClass::Reused, ..))
        ));
        // Reuse: the old page gets new contents.
        store_u64(&m, 0x13000 + 8, 0x66000 | 7).unwrap();
        assert!(matches!(
            check(&m, grown),
            PscCheck::Moved((StaleClass::Reused, ..))
        ));
    }
}
