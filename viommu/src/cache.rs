//! The unit's caches: context cache (by requester), PASID cache (by requester
//! and PASID, carrying the DID), IOTLB (leaf translations) and one
//! paging-structure cache per non-leaf level (PML5E, PML4E, PDPE, PDE), the
//! last three tagged by DID + PASID + address prefix. Each entry is split into
//! its tag (the map key) and outputs (the value); capacity and replacement
//! follow the [`CachePolicy`]. Invalidation functions are named after the VT-d
//! descriptors; range invalidations walk an ordered index so their cost scales
//! with the entries removed, not with the size of the range. Each cache counts
//! its own statistics ([`CacheStats`]: a lookup is a hit or a miss, fills,
//! evictions, entries removed by invalidations); `peek` and `points_at` look
//! without counting, for the checker and the free hint.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::config::CachePolicy;
use crate::tables::{ContextEntry, PasidEntry};
use crate::walk::{Leaf, Rights};

/// Entries per cache under the adversarial policy. Adversarial means "never
/// evict", but a guest could otherwise grow host memory without bound by
/// touching ever more addresses; at this size the oldest entry goes.
pub const ADVERSARIAL_MAX_ENTRIES: usize = 1 << 18;

/// Input-address bits kept in tags (57-bit space; 4-level sign-extended
/// addresses keep bits 56:48 set, consistently for lookups and invalidations).
pub const TAG_ADDR_MASK: u64 = (1 << 57) - 1;

/// A small multiplicative hasher for integer tags (the std SipHash costs more
/// than the rest of an IOTLB hit).
///
/// Every written word goes through MurmurHash3's 64-bit finalizer on its
/// own: every output bit depends on every input bit, so the low bits
/// hashbrown indexes with are spread even when tags differ only in a few
/// page-number bits, and a tag written as several words (domain and PASID,
/// then address) has no simple collisions: the guest chooses those fields,
/// and tags sharing one hash value would turn its look-ups into long probe
/// sequences. The mix is fixed, not seeded, so map iteration order (and so
/// the order of invalidation events) is the same on every run.
#[derive(Debug, Default, Clone, Copy)]
pub struct TagHasher(u64);

impl Hasher for TagHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = fmix64(self.0 ^ v);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// MurmurHash3's 64-bit finalizer.
#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Pages per IOTLB hash cluster (see [`ClusteredTagHasher`]): one hashbrown
/// group's worth. Larger clusters save little more on streams (one random
/// bucket per 16 pages is already rare) but make long runs of full buckets,
/// which look-ups of absent tags (every IOTLB miss) probe to the end of:
/// under cachegrind, 512-page clusters cost 26% more instructions than 16
/// on a streaming pattern and 25% more on random look-ups.
const CLUSTER_PAGES: u64 = 16;

/// The IOTLB's hasher: neighbouring pages of one 16-page cluster get
/// neighbouring hash values, so they land in neighbouring hashbrown buckets.
///
/// Why: a device streaming through memory (the SVA device's COPY, virtio
/// buffers) looks up consecutive pages. With every bit mixed, each lookup in
/// an IOTLB of tens of thousands of entries is a cache miss on a random
/// bucket, which cost most of a 4 KiB copy's time; clustered, consecutive
/// lookups read consecutive buckets and the hardware prefetcher keeps them
/// in cache. Clusters themselves are placed by the full mix, as are the
/// control bytes' top bits (plus the position, so the up to 16 candidates one
/// group compares are distinct), so probe sequences stay nearly as short as
/// with [`TagHasher`] (cachegrind: 4% more instructions, 43% fewer L1 data
/// misses on a two-stream pattern; 3.5% more instructions on random
/// look-ups).
///
/// The protocol: `write_u64` calls identify the cluster (each mixed as in
/// [`TagHasher`]), one `write_u16` gives the position inside it
/// (`0..CLUSTER_PAGES`). Only [`IotlbTag`] hashes into it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusteredTagHasher {
    cluster: u64,
    position: u64,
}

impl Hasher for ClusteredTagHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let p = self.position % CLUSTER_PAGES;
        self.cluster.wrapping_add(p) ^ (p << 57)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.position = u64::from(v);
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.cluster = fmix64(self.cluster ^ v);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<TagHasher>>;

/// Activity of one cache (or one paging-structure level).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Entries inserted.
    pub fills: u64,
    /// Entries removed to make room (LRU, or the adversarial bound).
    pub evictions: u64,
    /// Entries removed by invalidations.
    pub invalidated: u64,
}

#[derive(Debug, Clone)]
struct Slot<V> {
    value: V,
    stamp: u64,
}

/// One cache: a hash map for lookups, an ordered index of tags for range
/// invalidation, and a stamp queue for replacement (oldest first; entries
/// made obsolete by a later touch or a removal are skipped lazily and
/// compacted away, so the queue stays within a constant factor of the map).
#[derive(Debug, Clone)]
pub struct Store<K: Ord + Hash + Copy, V, H = TagHasher> {
    map: HashMap<K, Slot<V>, BuildHasherDefault<H>>,
    index: BTreeSet<K>,
    order: VecDeque<(u64, K)>,
    stamp: u64,
    capacity: usize,
    touch_on_hit: bool,
    stats: CacheStats,
}

impl<K: Ord + Hash + Copy, V, H: Hasher + Default> Store<K, V, H> {
    /// A store following `policy`.
    pub fn new(policy: CachePolicy) -> Self {
        let (capacity, touch_on_hit) = match policy {
            CachePolicy::Adversarial => (ADVERSARIAL_MAX_ENTRIES, false),
            CachePolicy::Lru(n) => (n.get(), true),
            CachePolicy::None => (0, false),
        };
        Store {
            map: HashMap::default(),
            index: BTreeSet::new(),
            order: VecDeque::new(),
            stamp: 0,
            capacity,
            touch_on_hit,
            stats: CacheStats::default(),
        }
    }

    /// What this cache counted.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Removes every entry (a global invalidation), counting them.
    pub fn clear(&mut self) {
        self.stats.invalidated += self.map.len() as u64;
        self.map.clear();
        self.index.clear();
        self.order.clear();
    }

    /// Counts one lookup that probed without counting (a cache whose one
    /// lookup is several probes: the IOTLB's page sizes).
    #[inline]
    fn count_lookup(&mut self, hit: bool) {
        if hit {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Looks `k` up without changing replacement state or statistics.
    #[inline]
    pub fn peek(&self, k: &K) -> Option<&V> {
        if self.map.is_empty() {
            return None;
        }
        self.map.get(k).map(|s| &s.value)
    }

    fn compact(&mut self) {
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(s, k)| map.get(k).is_some_and(|slot| slot.stamp == *s));
        }
    }

    /// Looks `k` up, counting a hit or a miss; under LRU marks it most
    /// recently used.
    #[inline]
    pub fn lookup(&mut self, k: &K) -> Option<&V> {
        let hit = self.probe(k);
        self.count_lookup(hit);
        if hit {
            self.map.get(k).map(|s| &s.value)
        } else {
            None
        }
    }

    /// A lookup that updates replacement state but not statistics; true on
    /// a hit.
    #[inline]
    fn probe(&mut self, k: &K) -> bool {
        if !self.touch_on_hit {
            return self.peek(k).is_some();
        }
        let Some(slot) = self.map.get_mut(k) else {
            return false;
        };
        self.stamp += 1;
        slot.stamp = self.stamp;
        self.order.push_back((self.stamp, *k));
        self.compact();
        true
    }

    /// Inserts (or replaces), counting a fill; returns the replaced entry
    /// and the entries evicted to make room (counted as evictions).
    pub fn insert(&mut self, k: K, v: V, evicted: &mut Vec<(K, V)>) {
        if self.capacity == 0 {
            return;
        }
        self.stats.fills += 1;
        self.stamp += 1;
        if let Some(old) = self.map.insert(
            k,
            Slot {
                value: v,
                stamp: self.stamp,
            },
        ) {
            evicted.push((k, old.value));
        } else {
            self.index.insert(k);
        }
        self.order.push_back((self.stamp, k));
        // Bounded: every pass pops one queue element.
        while self.map.len() > self.capacity {
            let Some((s, victim)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&victim).is_some_and(|slot| slot.stamp == s) {
                if let Some(slot) = self.map.remove(&victim) {
                    self.index.remove(&victim);
                    self.stats.evictions += 1;
                    evicted.push((victim, slot.value));
                }
            }
        }
        self.compact();
    }

    /// Removes `k` (an invalidation), counting it.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let slot = self.map.remove(k)?;
        self.index.remove(k);
        self.stats.invalidated += 1;
        Some(slot.value)
    }

    /// Removes every entry whose tag is in `lo..=hi` and satisfies `pred`.
    pub fn remove_range(
        &mut self,
        lo: K,
        hi: K,
        mut pred: impl FnMut(&K, &V) -> bool,
        out: &mut Vec<(K, V)>,
    ) {
        if lo > hi || self.map.is_empty() {
            return;
        }
        let keys: Vec<K> = self.index.range(lo..=hi).copied().collect();
        for k in keys {
            let hit = self.map.get(&k).is_some_and(|s| pred(&k, &s.value));
            if hit {
                if let Some(v) = self.remove(&k) {
                    out.push((k, v));
                }
            }
        }
    }

    /// Removes every entry satisfying `pred` (a full scan).
    pub fn remove_where(&mut self, mut pred: impl FnMut(&K, &V) -> bool, out: &mut Vec<(K, V)>) {
        let keys: Vec<K> = self
            .map
            .iter()
            .filter(|(k, s)| pred(k, &s.value))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(v) = self.remove(&k) {
                out.push((k, v));
            }
        }
    }

    /// Iterates over all entries.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }
}

/// Tag of an IOTLB entry: DID, PASID, page number of the page base, and the
/// leaf level (so a 4-KiB and a 2-MiB page at the same base do not collide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IotlbTag {
    /// Domain id.
    pub did: u16,
    /// PASID (RID_PASID for requests without one).
    pub pasid: u32,
    /// Page number (masked input address >> 12) of the page base.
    pub vpn: u64,
    /// Leaf level: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB.
    pub level: u8,
}

// Hashed for [`ClusteredTagHasher`]: the cluster as two words (domain,
// PASID and level packed, then the cluster's number), then the page's
// position in its cluster, counted in pages of the leaf's own size so 2-MiB
// and 1-GiB leaves cluster too.
impl Hash for IotlbTag {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let id =
            (u64::from(self.pasid) << 16) | u64::from(self.did) | (u64::from(self.level) << 36);
        let page = self.vpn >> (9 * u32::from(self.level.saturating_sub(1)).min(2));
        state.write_u64(id);
        state.write_u64(page / CLUSTER_PAGES);
        state.write_u16((page % CLUSTER_PAGES) as u16);
    }
}

// Two words: domain and PASID packed, then the address prefix.
impl Hash for PscTag {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(self.pasid) << 16) | u64::from(self.did));
        state.write_u64(self.prefix);
    }
}

/// Outputs of an IOTLB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IotlbEntry {
    /// The leaf as walked (output page, size, combined rights, entry).
    pub leaf: Leaf,
    /// Fill sequence number.
    pub filled: u64,
}

/// Tag of a paging-structure cache entry: DID, PASID and the input-address
/// bits that select the entry (masked address >> the region shift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PscTag {
    /// Domain id.
    pub did: u16,
    /// PASID.
    pub pasid: u32,
    /// Address prefix.
    pub prefix: u64,
}

/// Outputs of a paging-structure cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PscEntry {
    /// Entry value when cached.
    pub value: u64,
    /// Entry address.
    pub gpa: u64,
    /// The table page it points to.
    pub table: u64,
    /// Rights combined over this and the upper levels.
    pub rights: Rights,
    /// Fill sequence number.
    pub filled: u64,
}

/// Region shift of a paging-structure entry at `level` (5..2): 48, 39, 30, 21.
#[inline]
pub fn region_shift(level: u8) -> u32 {
    12 + 9 * u32::from(level - 1)
}

/// Paging-structure-cache tag for `addr` at `level`.
#[inline]
pub fn psc_tag(did: u16, pasid: u32, addr: u64, level: u8) -> PscTag {
    PscTag {
        did,
        pasid,
        prefix: (addr & TAG_ADDR_MASK) >> region_shift(level),
    }
}

/// Most tags a range invalidation of one PASID probes one by one (per
/// cache) before it scans the ordered index instead: a page-selective
/// invalidation of a few pages then costs a few hash probes, and a large one
/// still costs per entry removed, never per page of the range.
const PROBE_LIMIT: u64 = 8;

/// Leaf levels and their page shifts.
const LEAF_LEVELS: [(u8, u32); 3] = [(1, 12), (2, 21), (3, 30)];

/// Counts of what an invalidation removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Context-cache entries.
    pub context: u64,
    /// PASID-cache entries.
    pub pasid: u64,
    /// IOTLB entries.
    pub iotlb: u64,
    /// Paging-structure entries per level, index level - 2.
    pub psc: [u64; 4],
}

/// The unit's caches.
#[derive(Debug)]
pub struct Caches {
    policy: CachePolicy,
    context: Store<u16, ContextEntry>,
    pasid: Store<(u16, u32), PasidEntry>,
    iotlb: Store<IotlbTag, IotlbEntry, ClusteredTagHasher>,
    /// Leaf levels currently present in the IOTLB (bit level-1), so a hit
    /// does not probe page sizes that are absent.
    iotlb_sizes: [u64; 3],
    /// Paging-structure caches, named after the entries they hold.
    pde: Store<PscTag, PscEntry>,
    pdpe: Store<PscTag, PscEntry>,
    pml4e: Store<PscTag, PscEntry>,
    pml5e: Store<PscTag, PscEntry>,
    /// How many paging-structure entries (and PASID-cache roots) point at each
    /// table page (answers the page-freed hint in O(1)), with the page's
    /// contents when it was last seen linked (for the checker).
    table_refs: FastMap<u64, TableRef>,
}

/// A table page some cached entry points at.
#[derive(Debug, Clone, Copy, Default)]
struct TableRef {
    /// Cached entries (and PASID-cache roots) pointing at the page.
    refs: u32,
    /// [`checker::page_hash`](crate::checker::page_hash) of the page when a
    /// walk or check last found a paging-structure entry pointing at it in
    /// memory ("last seen linked"); 0 when never taken.
    seen_linked: u64,
}

impl Caches {
    /// Empty caches following `policy`.
    pub fn new(policy: CachePolicy) -> Self {
        Caches {
            policy,
            context: Store::new(policy),
            pasid: Store::new(policy),
            iotlb: Store::new(policy),
            iotlb_sizes: [0; 3],
            pde: Store::new(policy),
            pdpe: Store::new(policy),
            pml4e: Store::new(policy),
            pml5e: Store::new(policy),
            table_refs: FastMap::default(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> CachePolicy {
        self.policy
    }

    /// The paging-structure cache of `level` (2: PDE .. 5: PML5E).
    fn level(&self, level: u8) -> Option<&Store<PscTag, PscEntry>> {
        match level {
            2 => Some(&self.pde),
            3 => Some(&self.pdpe),
            4 => Some(&self.pml4e),
            5 => Some(&self.pml5e),
            _ => None,
        }
    }

    fn level_mut(&mut self, level: u8) -> Option<&mut Store<PscTag, PscEntry>> {
        match level {
            2 => Some(&mut self.pde),
            3 => Some(&mut self.pdpe),
            4 => Some(&mut self.pml4e),
            5 => Some(&mut self.pml5e),
            _ => None,
        }
    }

    /// What every cache counted.
    pub fn stats(&self) -> CacheCounters {
        CacheCounters {
            context: self.context.stats(),
            pasid: self.pasid.stats(),
            iotlb: self.iotlb.stats(),
            pml5e: self.pml5e.stats(),
            pml4e: self.pml4e.stats(),
            pdpe: self.pdpe.stats(),
            pde: self.pde.stats(),
        }
    }

    /// A translation served by the unit's memo of the last requester's
    /// context and PASID entries and IOTLB entry: it stands for a context,
    /// a PASID and an IOTLB lookup that would each have hit (and, under the
    /// adversarial policy the memo requires, touched nothing).
    #[inline]
    pub fn count_memo_hit(&mut self) {
        self.context.stats.hits += 1;
        self.pasid.stats.hits += 1;
        self.iotlb.stats.hits += 1;
    }

    /// Whether anything may be cached at all.
    pub fn enabled(&self) -> bool {
        self.policy != CachePolicy::None
    }

    fn ref_table(&mut self, page: u64) {
        let r = self.table_refs.entry(page).or_default();
        r.refs = r.refs.saturating_add(1);
    }

    fn unref_table(&mut self, page: u64) {
        if let Some(r) = self.table_refs.get_mut(&page) {
            r.refs = r.refs.saturating_sub(1);
            if r.refs == 0 {
                self.table_refs.remove(&page);
            }
        }
    }

    /// Records that a walk or check found an entry in memory pointing at the
    /// cached table page `page`, whose contents now hash to `snapshot`: the
    /// page's "last seen linked" state (kept only while an entry points at
    /// it).
    pub fn seen_linked(&mut self, page: u64, snapshot: u64) {
        if let Some(r) = self.table_refs.get_mut(&(page & !0xfff)) {
            r.seen_linked = snapshot;
        }
    }

    /// The hash of `page` when it was last seen linked (0 if never taken or
    /// no cached entry points at it).
    pub fn last_seen_linked(&self, page: u64) -> u64 {
        self.table_refs
            .get(&(page & !0xfff))
            .map_or(0, |r| r.seen_linked)
    }

    /// Whether any cached entry points at the table page `page`.
    pub fn points_at(&self, page: u64) -> bool {
        self.table_refs.contains_key(&(page & !0xfff))
    }

    // ---- context cache ----

    /// Context-cache lookup.
    #[inline]
    pub fn context_lookup(&mut self, rid: u16) -> Option<ContextEntry> {
        self.context.lookup(&rid).copied()
    }

    /// Context-cache fill.
    pub fn context_fill(&mut self, rid: u16, e: ContextEntry) {
        let mut ev = Vec::new();
        self.context.insert(rid, e, &mut ev);
    }

    /// Context-cache invalidation, global.
    pub fn context_global(&mut self) -> u64 {
        let n = self.context.len() as u64;
        self.context.clear();
        n
    }

    /// Context-cache invalidation, domain-selective. Scalable-mode context
    /// entries carry no DID, so this removes every entry (hardware may
    /// invalidate more than asked).
    pub fn context_domain(&mut self, _did: u16) -> u64 {
        self.context_global()
    }

    /// Context-cache invalidation, device-selective: SID with function mask
    /// FM (0: none, 1: bit 2, 2: bits 2:1, 3: bits 2:0 of the function).
    pub fn context_device(&mut self, sid: u16, fm: u8) -> u64 {
        let mask: u16 = match fm & 3 {
            0 => 0,
            1 => 0b100,
            2 => 0b110,
            _ => 0b111,
        };
        let mut out = Vec::new();
        self.context
            .remove_where(|rid, _| rid & !mask == sid & !mask, &mut out);
        out.len() as u64
    }

    // ---- PASID cache ----

    /// PASID-cache lookup.
    #[inline]
    pub fn pasid_lookup(&mut self, rid: u16, pasid: u32) -> Option<PasidEntry> {
        self.pasid.lookup(&(rid, pasid)).copied()
    }

    /// PASID-cache fill.
    pub fn pasid_fill(&mut self, rid: u16, pasid: u32, e: PasidEntry) {
        if self.policy == CachePolicy::None {
            return;
        }
        let mut ev = Vec::new();
        self.pasid.insert((rid, pasid), e, &mut ev);
        self.ref_table(e.fs_root);
        for (_, old) in &ev {
            self.unref_table(old.fs_root);
        }
    }

    fn pasid_remove(&mut self, mut pred: impl FnMut(&(u16, u32), &PasidEntry) -> bool) -> u64 {
        let mut out = Vec::new();
        self.pasid.remove_where(|k, v| pred(k, v), &mut out);
        for (_, v) in &out {
            self.unref_table(v.fs_root);
        }
        out.len() as u64
    }

    /// PASID-cache invalidation, global.
    pub fn pasid_cache_global(&mut self) -> u64 {
        self.pasid_remove(|_, _| true)
    }

    /// PASID-cache invalidation, all PASIDs of a domain.
    pub fn pasid_cache_domain(&mut self, did: u16) -> u64 {
        self.pasid_remove(|_, v| v.did == did)
    }

    /// PASID-cache invalidation, one PASID of a domain.
    pub fn pasid_cache_pasid(&mut self, did: u16, pasid: u32) -> u64 {
        self.pasid_remove(|k, v| v.did == did && k.1 == pasid)
    }

    // ---- IOTLB ----

    /// IOTLB lookup for the page holding `addr`, one lookup over every page
    /// size: a hit when an entry is found that `usable` accepts for the
    /// request (a write cannot use an entry whose D is clear: the unit walks
    /// to set it, so that counts as a miss), else a miss.
    #[inline]
    pub fn iotlb_lookup(
        &mut self,
        did: u16,
        pasid: u32,
        addr: u64,
        usable: impl Fn(&IotlbEntry) -> bool,
    ) -> Option<IotlbEntry> {
        match self.iotlb_find(did, pasid, addr).filter(|(_, e)| usable(e)) {
            Some((tag, e)) => {
                self.iotlb.probe(&tag);
                self.iotlb.count_lookup(true);
                Some(e)
            }
            None => {
                self.iotlb.count_lookup(false);
                None
            }
        }
    }

    /// The IOTLB entry for the page holding `addr`, without counting or
    /// touching anything.
    #[inline]
    pub fn iotlb_peek(&self, did: u16, pasid: u32, addr: u64) -> Option<IotlbEntry> {
        self.iotlb_find(did, pasid, addr).map(|(_, e)| e)
    }

    #[inline]
    fn iotlb_find(&self, did: u16, pasid: u32, addr: u64) -> Option<(IotlbTag, IotlbEntry)> {
        let a = addr & TAG_ADDR_MASK;
        for (i, (level, shift)) in LEAF_LEVELS.iter().enumerate() {
            if self.iotlb_sizes[i] == 0 {
                continue;
            }
            let tag = IotlbTag {
                did,
                pasid,
                vpn: (a >> shift) << (shift - 12),
                level: *level,
            };
            if let Some(e) = self.iotlb.peek(&tag) {
                return Some((tag, *e));
            }
        }
        None
    }

    /// IOTLB fill; returns evictions.
    pub fn iotlb_fill(&mut self, did: u16, pasid: u32, addr: u64, e: IotlbEntry) -> u64 {
        if self.policy == CachePolicy::None {
            return 0;
        }
        let level = e.leaf.level.clamp(1, 3);
        let shift = 12 + 9 * u32::from(level - 1);
        let tag = IotlbTag {
            did,
            pasid,
            vpn: ((addr & TAG_ADDR_MASK) >> shift) << (shift - 12),
            level,
        };
        let mut ev = Vec::new();
        let existed = self.iotlb.peek(&tag).is_some();
        self.iotlb.insert(tag, e, &mut ev);
        if !existed {
            self.iotlb_sizes[usize::from(level - 1)] += 1;
        }
        let mut evicted = 0;
        for (k, _) in &ev {
            if *k != tag {
                let slot = &mut self.iotlb_sizes[usize::from(k.level.clamp(1, 3) - 1)];
                *slot = slot.saturating_sub(1);
                evicted += 1;
            }
        }
        evicted
    }

    fn iotlb_removed(&mut self, out: &[(IotlbTag, IotlbEntry)]) -> u64 {
        for (k, _) in out {
            let slot = &mut self.iotlb_sizes[usize::from(k.level.clamp(1, 3) - 1)];
            *slot = slot.saturating_sub(1);
        }
        out.len() as u64
    }

    fn psc_removed(&mut self, level: u8, out: &[(PscTag, PscEntry)], removed: &mut Removed) {
        for (_, v) in out {
            self.unref_table(v.table);
        }
        if let Some(n) = removed.psc.get_mut(usize::from(level.wrapping_sub(2))) {
            *n += out.len() as u64;
        }
    }

    // ---- paging-structure caches ----

    /// Paging-structure cache lookup at `level` (5..2), counted.
    #[inline]
    pub fn psc_lookup(&mut self, level: u8, did: u16, pasid: u32, addr: u64) -> Option<PscEntry> {
        let store = self.level_mut(level)?;
        store.lookup(&psc_tag(did, pasid, addr, level)).copied()
    }

    /// Paging-structure cache fill at `level` by a walk that just read the
    /// entry from memory, so its table page is seen linked with contents
    /// hashing to `snapshot` (0: not taken); returns evictions.
    pub fn psc_fill(
        &mut self,
        level: u8,
        did: u16,
        pasid: u32,
        addr: u64,
        e: PscEntry,
        snapshot: u64,
    ) -> u64 {
        if self.policy == CachePolicy::None || !(2..=5).contains(&level) {
            return 0;
        }
        let tag = psc_tag(did, pasid, addr, level);
        let mut ev = Vec::new();
        let Some(store) = self.level_mut(level) else {
            return 0;
        };
        store.insert(tag, e, &mut ev);
        self.ref_table(e.table);
        self.seen_linked(e.table, snapshot);
        let mut evicted = 0;
        for (k, old) in &ev {
            self.unref_table(old.table);
            if *k != tag {
                evicted += 1;
            }
        }
        evicted
    }

    /// All paging-structure entries at `level` (for the hint and tests).
    pub fn psc_entries(&self, level: u8) -> impl Iterator<Item = (&PscTag, &PscEntry)> {
        self.level(level).into_iter().flat_map(|s| s.iter())
    }

    /// Entries held: (context, PASID, IOTLB, paging-structure per level 2..5).
    pub fn sizes(&self) -> (usize, usize, usize, [usize; 4]) {
        (
            self.context.len(),
            self.pasid.len(),
            self.iotlb.len(),
            [
                self.pde.len(),
                self.pdpe.len(),
                self.pml4e.len(),
                self.pml5e.len(),
            ],
        )
    }

    /// Removes IOTLB and (unless `leaf_only`) paging-structure entries of
    /// `did` (all PASIDs when `pasid` is None) intersecting `[lo, hi]`
    /// (masked input addresses, inclusive).
    fn remove_span(
        &mut self,
        did: u16,
        pasid: Option<u32>,
        lo: u64,
        hi: u64,
        leaf_only: bool,
    ) -> Removed {
        let mut removed = Removed::default();
        let (p_lo, p_hi) = match pasid {
            Some(p) => (p, p),
            None => (0, u32::MAX),
        };
        let mut out = Vec::new();
        // A leaf up to 1 GiB may start before `lo` and still cover it.
        let vlo = (lo >> 30) << 18;
        let vhi = hi >> 12;
        let span_lo = IotlbTag {
            did,
            pasid: p_lo,
            vpn: if pasid.is_some() { vlo } else { 0 },
            level: 0,
        };
        let span_hi = IotlbTag {
            did,
            pasid: p_hi,
            vpn: if pasid.is_some() { vhi } else { u64::MAX },
            level: u8::MAX,
        };
        // A small range of one PASID: probe the tags that can intersect it
        // (per page size present) instead of scanning the ordered index.
        let probes = LEAF_LEVELS
            .iter()
            .zip(self.iotlb_sizes)
            .filter(|(_, n)| *n != 0)
            .map(|((_, shift), _)| ((hi >> shift) - (lo >> shift)).saturating_add(1))
            .fold(0u64, u64::saturating_add);
        match pasid {
            Some(pasid) if probes <= PROBE_LIMIT => {
                for (i, (level, shift)) in LEAF_LEVELS.iter().enumerate() {
                    if self.iotlb_sizes[i] == 0 {
                        continue;
                    }
                    for v in (lo >> shift)..=(hi >> shift) {
                        let tag = IotlbTag {
                            did,
                            pasid,
                            vpn: v << (shift - 12),
                            level: *level,
                        };
                        if let Some(e) = self.iotlb.remove(&tag) {
                            out.push((tag, e));
                        }
                    }
                }
            }
            _ => self.iotlb.remove_range(
                span_lo,
                span_hi,
                |k, e| {
                    let base = k.vpn << 12;
                    let end = base.saturating_add(e.leaf.size - 1);
                    base <= hi && end >= lo
                },
                &mut out,
            ),
        }
        removed.iotlb = self.iotlb_removed(&out);
        if leaf_only {
            return removed;
        }
        for level in 2..=5u8 {
            let shift = region_shift(level);
            let (klo, khi) = (lo >> shift, hi >> shift);
            let span_lo = PscTag {
                did,
                pasid: p_lo,
                prefix: if pasid.is_some() { klo } else { 0 },
            };
            let span_hi = PscTag {
                did,
                pasid: p_hi,
                prefix: if pasid.is_some() { khi } else { u64::MAX },
            };
            let mut out = Vec::new();
            let Some(store) = self.level_mut(level) else {
                continue;
            };
            if store.is_empty() {
                continue;
            }
            match pasid {
                Some(pasid) if khi - klo < PROBE_LIMIT => {
                    for prefix in klo..=khi {
                        let tag = PscTag { did, pasid, prefix };
                        if let Some(e) = store.remove(&tag) {
                            out.push((tag, e));
                        }
                    }
                }
                _ => store.remove_range(
                    span_lo,
                    span_hi,
                    |k, _| k.prefix >= klo && k.prefix <= khi,
                    &mut out,
                ),
            }
            self.psc_removed(level, &out, &mut removed);
        }
        removed
    }

    /// Splits a 64-bit inclusive input-address range into the tag spans of
    /// the addresses in it that can be cached. Only canonical addresses are
    /// (4-level ones are canonical at 57 bits too), and the tag of a
    /// canonical address is its low 57 bits, so the address is the tag
    /// sign-extended from bit 56: the lower half `[0, 2^56)` has tags
    /// `[0, 2^56)`, the upper half `[2^64 - 2^56, 2^64)` tags `[2^56, 2^57)`.
    /// The non-canonical middle holds nothing. No span ever reaches a tag
    /// whose address is outside `[lo, hi]`.
    fn spans(lo: u64, hi: u64) -> ([(u64, u64); 2], usize) {
        const LOWER_END: u64 = (1 << 56) - 1;
        const UPPER_START: u64 = !LOWER_END;
        let mut out = [(0, 0); 2];
        let mut n = 0;
        if lo > hi {
            return (out, 0);
        }
        if lo <= LOWER_END {
            out[n] = (lo, hi.min(LOWER_END));
            n += 1;
        }
        if hi >= UPPER_START {
            out[n] = (lo.max(UPPER_START) & TAG_ADDR_MASK, hi & TAG_ADDR_MASK);
            n += 1;
        }
        (out, n)
    }

    /// IOTLB invalidation, global: IOTLB and all paging-structure caches.
    pub fn iotlb_global(&mut self) -> Removed {
        let mut removed = Removed {
            iotlb: self.iotlb.len() as u64,
            ..Removed::default()
        };
        self.iotlb.clear();
        self.iotlb_sizes = [0; 3];
        for (i, s) in [
            &mut self.pde,
            &mut self.pdpe,
            &mut self.pml4e,
            &mut self.pml5e,
        ]
        .into_iter()
        .enumerate()
        {
            removed.psc[i] = s.len() as u64;
            s.clear();
        }
        // Only PASID-cache roots still point at tables.
        self.table_refs.clear();
        let roots: Vec<u64> = self.pasid.iter().map(|(_, v)| v.fs_root).collect();
        // (The snapshots go too: no paging-structure entry is left to use them.)
        for r in roots {
            self.ref_table(r);
        }
        removed
    }

    /// IOTLB invalidation, domain-selective (every PASID of `did`).
    pub fn iotlb_domain(&mut self, did: u16) -> Removed {
        self.remove_span(did, None, 0, TAG_ADDR_MASK, false)
    }

    /// IOTLB invalidation, page-selective within domain: every PASID of `did`,
    /// `[addr, addr + 2^(am+12))`; IH=1 keeps the paging-structure caches.
    pub fn iotlb_page(&mut self, did: u16, addr: u64, am: u8, ih: bool) -> Removed {
        self.page_range(did, None, addr, am, ih)
    }

    /// PASID-based IOTLB invalidation, PASID-selective.
    pub fn piotlb_pasid(&mut self, did: u16, pasid: u32) -> Removed {
        self.remove_span(did, Some(pasid), 0, TAG_ADDR_MASK, false)
    }

    /// PASID-based IOTLB invalidation, page-selective within PASID.
    pub fn piotlb_page(&mut self, did: u16, pasid: u32, addr: u64, am: u8, ih: bool) -> Removed {
        self.page_range(did, Some(pasid), addr, am, ih)
    }

    fn page_range(&mut self, did: u16, pasid: Option<u32>, addr: u64, am: u8, ih: bool) -> Removed {
        let (lo, hi) = page_range_bounds(addr, am);
        let mut total = Removed::default();
        let (spans, n) = Self::spans(lo, hi);
        for &(a, b) in &spans[..n] {
            let r = self.remove_span(did, pasid, a, b, ih);
            total.iotlb += r.iotlb;
            for i in 0..4 {
                total.psc[i] += r.psc[i];
            }
        }
        total
    }
}

/// The inclusive input-address range of a page-selective invalidation, over
/// the full 64-bit input address: `[addr, addr + 2^(am+12))` with `addr`
/// aligned down to the size, for every AM (52 and beyond cover everything).
pub fn page_range_bounds(addr: u64, am: u8) -> (u64, u64) {
    let shift = 12 + u32::from(am);
    if shift >= 64 {
        return (0, u64::MAX);
    }
    let size = 1u64 << shift;
    let lo = addr & !(size - 1);
    (lo, lo | (size - 1))
}

/// Cache activity per cache, as the caches count it themselves
/// ([`Caches::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheCounters {
    /// Context cache.
    pub context: CacheStats,
    /// PASID cache.
    pub pasid: CacheStats,
    /// IOTLB (leaves).
    pub iotlb: CacheStats,
    /// PML5E cache.
    pub pml5e: CacheStats,
    /// PML4E cache.
    pub pml4e: CacheStats,
    /// PDPE cache.
    pub pdpe: CacheStats,
    /// PDE cache.
    pub pde: CacheStats,
}

impl CacheCounters {
    /// The paging-structure cache stats for `level` (5..2).
    pub fn level_mut(&mut self, level: u8) -> &mut CacheStats {
        match level {
            5 => &mut self.pml5e,
            4 => &mut self.pml4e,
            3 => &mut self.pdpe,
            _ => &mut self.pde,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    fn leaf(level: u8, page: u64) -> Leaf {
        let size = 1u64 << (12 + 9 * u32::from(level - 1));
        Leaf {
            level,
            gpa: 0x1000,
            value: page | 7,
            page,
            size,
            rights: Rights::ALL,
        }
    }

    fn psc(table: u64) -> PscEntry {
        PscEntry {
            value: table | 7,
            gpa: 0x2000,
            table,
            rights: Rights::ALL,
            filled: 0,
        }
    }

    /// Each cache counts its own statistics: one lookup is one hit or one
    /// miss (the IOTLB's page sizes included), peeks count nothing, fills,
    /// evictions and invalidations count where they happen.
    #[test]
    fn caches_count_their_own_statistics() {
        let mut c = Caches::new(CachePolicy::Lru(NonZeroUsize::new(1).unwrap()));
        let e = |page| IotlbEntry {
            leaf: leaf(1, page),
            filled: 0,
        };
        assert!(c.iotlb_lookup(1, 5, 0x1000, |_| true).is_none());
        c.iotlb_fill(1, 5, 0x1000, e(0xa000));
        c.iotlb_fill(1, 5, 0x20_0000, e(0xb000)); // evicts the first
        assert!(c.iotlb_peek(1, 5, 0x20_0000).is_some());
        assert!(c.iotlb_lookup(1, 5, 0x20_0000, |_| true).is_some());
        // Found but not usable for the request: a miss.
        assert!(c.iotlb_lookup(1, 5, 0x20_0000, |_| false).is_none());
        assert_eq!(c.iotlb_page(1, 0x20_0000, 0, true).iotlb, 1);
        c.psc_fill(2, 1, 5, 0x1000, psc(0x13000), 0);
        assert!(c.psc_lookup(2, 1, 5, 0x1000).is_some());
        assert!(c.psc_lookup(3, 1, 5, 0x1000).is_none());
        assert_eq!(c.iotlb_global().psc[0], 1);
        let s = c.stats();
        assert_eq!(
            s.iotlb,
            CacheStats {
                hits: 1,
                misses: 2,
                fills: 2,
                evictions: 1,
                invalidated: 1
            }
        );
        assert_eq!((s.pde.hits, s.pde.fills, s.pde.invalidated), (1, 1, 1));
        assert_eq!((s.pdpe.misses, s.pdpe.hits), (1, 0));
        assert_eq!(s.pml4e, CacheStats::default());
    }

    #[test]
    fn iotlb_hits_each_page_size() {
        let mut c = Caches::new(CachePolicy::Adversarial);
        c.iotlb_fill(
            1,
            5,
            0x1000,
            IotlbEntry {
                leaf: leaf(1, 0xa000),
                filled: 0,
            },
        );
        c.iotlb_fill(
            1,
            5,
            0x40_0000,
            IotlbEntry {
                leaf: leaf(2, 0x20_0000),
                filled: 0,
            },
        );
        c.iotlb_fill(
            1,
            5,
            0x8000_0000,
            IotlbEntry {
                leaf: leaf(3, 0x4000_0000),
                filled: 0,
            },
        );
        assert_eq!(c.iotlb_peek(1, 5, 0x1fff).unwrap().leaf.page, 0xa000);
        assert_eq!(c.iotlb_peek(1, 5, 0x5f_ffff).unwrap().leaf.page, 0x20_0000);
        assert_eq!(
            c.iotlb_peek(1, 5, 0xbfff_ffff).unwrap().leaf.page,
            0x4000_0000
        );
        assert!(c.iotlb_peek(1, 6, 0x1000).is_none());
        assert!(c.iotlb_peek(2, 5, 0x1000).is_none());
        assert!(c.iotlb_peek(1, 5, 0x2000).is_none());
    }

    #[test]
    fn piotlb_page_ih_controls_psc() {
        let mut c = Caches::new(CachePolicy::Adversarial);
        c.iotlb_fill(
            1,
            5,
            0x1000,
            IotlbEntry {
                leaf: leaf(1, 0xa000),
                filled: 0,
            },
        );
        c.psc_fill(2, 1, 5, 0x1000, psc(0x13000), 0);
        c.psc_fill(4, 1, 5, 0x1000, psc(0x11000), 0);
        assert!(c.points_at(0x13000));
        let r = c.piotlb_page(1, 5, 0x1000, 0, true);
        assert_eq!((r.iotlb, r.psc), (1, [0; 4]));
        assert!(c.psc_lookup(2, 1, 5, 0x1000).is_some());
        let r = c.piotlb_page(1, 5, 0x1000, 0, false);
        assert_eq!(r.psc, [1, 0, 1, 0]);
        assert!(!c.points_at(0x13000));
    }

    #[test]
    fn range_invalidation_scales_with_entries() {
        let mut c = Caches::new(CachePolicy::Adversarial);
        for i in 0..100u64 {
            c.iotlb_fill(
                1,
                1,
                i << 12,
                IotlbEntry {
                    leaf: leaf(1, i << 12),
                    filled: 0,
                },
            );
        }
        // A huge range over the kernel half removes nothing and is cheap.
        let r = c.piotlb_page(1, 1, 0xffff_8000_0000_0000, 30, false);
        assert_eq!(r.iotlb, 0);
        let r = c.piotlb_page(1, 1, 0x10000, 4, false);
        assert_eq!(r.iotlb, 16);
        assert_eq!(c.sizes().2, 84);
        let r = c.piotlb_page(1, 1, 0, 63, false);
        assert_eq!(r.iotlb, 84);
    }

    /// Small ranges of one PASID (probed tag by tag) remove exactly what the
    /// ordered-index scan of the same range over every PASID removes when
    /// only that PASID is cached.
    #[test]
    fn probed_small_ranges_match_index_scan() {
        let fill = |c: &mut Caches| {
            for i in 0..40u64 {
                let level = [1u8, 1, 2, 3][usize::try_from(i % 4).unwrap()];
                let addr = (i * 0x1f_3000) & !((1u64 << (12 + 9 * (u32::from(level) - 1))) - 1);
                let e = IotlbEntry {
                    leaf: leaf(level, 0x4000_0000),
                    filled: 0,
                };
                c.iotlb_fill(1, 5, addr, e);
                for l in 2..=4u8 {
                    c.psc_fill(l, 1, 5, i * 0x1f_3000, psc(0x3000 + (i << 12)), 0);
                }
            }
        };
        let (mut removed_iotlb, mut removed_psc) = (0, 0);
        for (addr, am, ih) in [
            (0x1f_3000u64, 0u8, false),
            (0x20_0000, 2, false),
            (0x3e_6000, 1, true),
            (0x4000_0000, 3, false),
            (0, 9, false),
        ] {
            let (mut a, mut b) = (
                Caches::new(CachePolicy::Adversarial),
                Caches::new(CachePolicy::Adversarial),
            );
            fill(&mut a);
            fill(&mut b);
            let ra = a.piotlb_page(1, 5, addr, am, ih);
            let rb = b.iotlb_page(1, addr, am, ih);
            assert_eq!(ra, rb, "addr {addr:#x} am {am}");
            assert_eq!(a.sizes(), b.sizes());
            removed_iotlb += ra.iotlb;
            removed_psc += ra.psc.iter().sum::<u64>();
        }
        assert!(removed_iotlb >= 5 && removed_psc >= 5);
    }

    #[test]
    fn large_leaf_starting_before_range_is_removed() {
        let mut c = Caches::new(CachePolicy::Adversarial);
        c.iotlb_fill(
            1,
            1,
            0x4000_0000,
            IotlbEntry {
                leaf: leaf(3, 0x4000_0000),
                filled: 0,
            },
        );
        let r = c.piotlb_page(1, 1, 0x4010_0000, 0, true);
        assert_eq!(r.iotlb, 1);
    }

    #[test]
    fn domain_and_pasid_selective() {
        let mut c = Caches::new(CachePolicy::Adversarial);
        for p in 1..4 {
            c.iotlb_fill(
                1,
                p,
                0x1000,
                IotlbEntry {
                    leaf: leaf(1, 0xa000),
                    filled: 0,
                },
            );
            c.psc_fill(2, 1, p, 0x1000, psc(0x13000), 0);
        }
        c.iotlb_fill(
            2,
            1,
            0x1000,
            IotlbEntry {
                leaf: leaf(1, 0xa000),
                filled: 0,
            },
        );
        let r = c.piotlb_pasid(1, 2);
        assert_eq!((r.iotlb, r.psc[0]), (1, 1));
        let r = c.iotlb_domain(1);
        assert_eq!((r.iotlb, r.psc[0]), (2, 2));
        assert!(c.iotlb_peek(2, 1, 0x1000).is_some());
        let r = c.iotlb_page(2, 0x1000, 0, false);
        assert_eq!(r.iotlb, 1);
        c.psc_fill(3, 9, 9, 0, psc(0x5000), 0);
        assert_eq!(c.iotlb_global().psc[1], 1);
    }

    #[test]
    fn context_and_pasid_cache_invalidations() {
        let mut c = Caches::new(CachePolicy::Adversarial);
        let ctx = ContextEntry::decode([0x3009, 0]).unwrap();
        for rid in [0x20u16, 0x21, 0x25, 0x30] {
            c.context_fill(rid, ctx);
        }
        assert_eq!(c.context_device(0x20, 0), 1);
        assert_eq!(
            c.context_device(0x21, 1),
            2,
            "0x21 and 0x25 differ only in bit 2"
        );
        assert_eq!(c.context_domain(1), 1);
        let pe = PasidEntry::decode([1 | (1 << 6), 3, 0x9000, 0], 1)
            .unwrap()
            .unwrap();
        c.pasid_fill(0x20, 1, pe);
        c.pasid_fill(0x20, 2, pe);
        assert!(c.points_at(0x9000));
        assert_eq!(c.pasid_cache_pasid(3, 1), 1);
        assert_eq!(c.pasid_cache_domain(4), 0);
        assert_eq!(c.pasid_cache_global(), 1);
        assert!(!c.points_at(0x9000));
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut c = Caches::new(CachePolicy::Lru(NonZeroUsize::new(2).unwrap()));
        c.iotlb_fill(
            1,
            1,
            0x1000,
            IotlbEntry {
                leaf: leaf(1, 0xa000),
                filled: 0,
            },
        );
        c.iotlb_fill(
            1,
            1,
            0x2000,
            IotlbEntry {
                leaf: leaf(1, 0xb000),
                filled: 0,
            },
        );
        assert!(c.iotlb_lookup(1, 1, 0x1000, |_| true).is_some());
        assert_eq!(
            c.iotlb_fill(
                1,
                1,
                0x3000,
                IotlbEntry {
                    leaf: leaf(1, 0xc000),
                    filled: 0
                }
            ),
            1
        );
        assert!(c.iotlb_peek(1, 1, 0x1000).is_some());
        assert!(c.iotlb_peek(1, 1, 0x2000).is_none());
    }

    #[test]
    fn replacement_queue_stays_bounded() {
        let mut st: Store<u64, u64> = Store::new(CachePolicy::Lru(NonZeroUsize::new(2).unwrap()));
        let mut ev = Vec::new();
        st.insert(1, 1, &mut ev);
        st.insert(2, 2, &mut ev);
        for _ in 0..10_000 {
            assert!(st.lookup(&1).is_some());
            assert!(st.lookup(&2).is_some());
        }
        assert!(st.order.len() <= 2 * 2 + 64 + 1);
        st.insert(3, 3, &mut ev);
        assert_eq!(ev, [(1, 1)], "1 was used least recently");
        assert_eq!(st.len(), 2);
        assert!(st.peek(&2).is_some() && st.peek(&3).is_some());
    }

    #[test]
    fn none_policy_caches_nothing() {
        let mut c = Caches::new(CachePolicy::None);
        c.iotlb_fill(
            1,
            1,
            0x1000,
            IotlbEntry {
                leaf: leaf(1, 0xa000),
                filled: 0,
            },
        );
        c.psc_fill(2, 1, 1, 0x1000, psc(0x13000), 0);
        assert!(c.iotlb_peek(1, 1, 0x1000).is_none());
        assert!(c.psc_lookup(2, 1, 1, 0x1000).is_none());
        assert!(!c.points_at(0x13000));
    }

    #[test]
    fn page_range_bounds_align_and_saturate() {
        assert_eq!(
            page_range_bounds(0x1234_5000, 0),
            (0x1234_5000, 0x1234_5fff)
        );
        assert_eq!(
            page_range_bounds(0x1234_5000, 4),
            (0x1234_0000, 0x1234_ffff)
        );
        assert_eq!(page_range_bounds(0xffff_8000_0000_0000, 52), (0, u64::MAX));
        assert_eq!(page_range_bounds(5, 63), (0, u64::MAX));
    }

    /// The 64-bit input address a tag's masked address stands for.
    fn untag(masked: u64) -> u64 {
        sign_extend(masked, 57)
    }

    /// `v` sign-extended from bit `bits - 1`.
    fn sign_extend(v: u64, bits: u32) -> u64 {
        let top = 1u64 << (bits - 1);
        let low = v & ((top << 1) - 1);
        if low & top != 0 {
            low | !((top << 1) - 1)
        } else {
            low
        }
    }

    /// Every cached entry as (kind, first, last input address).
    fn cached_ranges(c: &Caches) -> Vec<(u8, u64, u64)> {
        let mut v: Vec<(u8, u64, u64)> = c
            .iotlb
            .iter()
            .map(|(k, e)| {
                let base = untag(k.vpn << 12);
                (1, base, base + (e.leaf.size - 1))
            })
            .collect();
        for level in 2..=5u8 {
            let shift = region_shift(level);
            for (k, _) in c.psc_entries(level) {
                let base = untag(k.prefix << shift);
                v.push((level, base, base + ((1u64 << shift) - 1)));
            }
        }
        v.sort_unstable();
        v
    }

    /// A canonical address (4- or 5-level) from random bits.
    fn canonical(bits: u64, five: bool) -> u64 {
        sign_extend(bits, if five { 57 } else { 48 })
    }

    /// The cases the independent model found: an address differing from a
    /// cached kernel one only in bits 63:57, and an AM reaching past the
    /// 57-bit tag space from 0, both used to remove kernel-half entries.
    #[test]
    fn page_selective_never_removes_outside_its_range() {
        let kva = 0xffff_8880_0020_0000u64;
        let fill = |c: &mut Caches| {
            c.psc_fill(2, 1, 5, kva, psc(0x13000), 0);
            c.iotlb_fill(
                1,
                5,
                kva,
                IotlbEntry {
                    leaf: leaf(1, 0xa000),
                    filled: 0,
                },
            );
        };
        let mut c = Caches::new(CachePolicy::Adversarial);
        fill(&mut c);
        // Bits 63:57 differ: a non-canonical range nothing cached lies in.
        let r = c.piotlb_page(1, 5, kva & !(0x7f << 57), 0, false);
        assert_eq!((r.iotlb, r.psc), (0, [0; 4]));
        // AM 45 from 0: the whole lower half, nothing of the upper.
        let r = c.piotlb_page(1, 5, 0, 45, false);
        assert_eq!((r.iotlb, r.psc), (0, [0; 4]));
        assert_eq!(cached_ranges(&c).len(), 2);
        // AM 52 from anywhere covers everything.
        let r = c.piotlb_page(1, 5, 0x1000, 52, false);
        assert_eq!((r.iotlb, r.psc), (1, [1, 0, 0, 0]));
    }

    proptest::proptest! {
        /// Every AM up to 52, any 64-bit address: a page-selective
        /// invalidation removes exactly the cached entries intersecting the
        /// range it denotes.
        #[test]
        fn page_selective_removes_exactly_its_range(
            entries in proptest::collection::vec((proptest::prelude::any::<u64>(), 1u8..=5, proptest::prelude::any::<bool>()), 1..24),
            addr in proptest::prelude::any::<u64>(),
            near in proptest::prelude::any::<Option<usize>>(),
            am in 0u8..=52,
            pasid_selective in proptest::prelude::any::<bool>(),
        ) {
            let mut c = Caches::new(CachePolicy::Adversarial);
            let mut addrs = Vec::new();
            for (bits, level, five) in &entries {
                let a = canonical(*bits, *five);
                addrs.push(a);
                if *level <= 3 {
                    let size = 1u64 << (12 + 9 * u32::from(level - 1));
                    c.iotlb_fill(1, 5, a, IotlbEntry { leaf: leaf(*level, 0x4000_0000 & !(size - 1)), filled: 0 });
                } else {
                    c.psc_fill(*level, 1, 5, a, psc(0x13000), 0);
                }
                if *level <= 3 {
                    c.psc_fill(2, 1, 5, a, psc(0x14000), 0);
                }
            }
            // Half the time aim at a cached address, possibly with its top
            // bits flipped.
            let addr = match near {
                Some(i) => addrs[i % addrs.len()] ^ (addr & (0x7f << 57)),
                None => addr,
            };
            let before = cached_ranges(&c);
            let (lo, hi) = page_range_bounds(addr, am);
            if pasid_selective {
                c.piotlb_page(1, 5, addr, am, false);
            } else {
                c.iotlb_page(1, addr, am, false);
            }
            let after = cached_ranges(&c);
            let expected: Vec<_> = before
                .iter()
                .copied()
                .filter(|(_, a, b)| *b < lo || *a > hi)
                .collect();
            proptest::prop_assert_eq!(after, expected);
        }
    }

    fn iotlb_hash(did: u16, pasid: u32, vpn: u64, level: u8) -> u64 {
        use std::hash::BuildHasher;
        BuildHasherDefault::<ClusteredTagHasher>::default().hash_one(IotlbTag {
            did,
            pasid,
            vpn,
            level,
        })
    }

    #[test]
    fn iotlb_hash_keeps_a_cluster_together_and_spreads_clusters() {
        // Neighbouring 4-KiB pages of one cluster: neighbouring bucket
        // indexes (low bits), distinct control-byte bits (top 7).
        let base = iotlb_hash(1, 5, 0x4_0000, 1);
        for p in 1..CLUSTER_PAGES {
            let h = iotlb_hash(1, 5, 0x4_0000 + p, 1);
            assert_eq!(h.wrapping_sub(base) & 0xffff_ffff, p, "page {p}");
            if p < 128 {
                assert_ne!(h >> 57, base >> 57, "page {p}");
            }
        }
        // 2-MiB leaves cluster by 2-MiB page.
        let big = iotlb_hash(1, 5, 0x4_0000, 2);
        assert_eq!(
            iotlb_hash(1, 5, 0x4_0200, 2).wrapping_sub(big) & 0xffff_ffff,
            1
        );
        // Another cluster, PASID, DID or level lands far away.
        for other in [
            iotlb_hash(1, 5, 0x4_0000 + CLUSTER_PAGES, 1),
            iotlb_hash(1, 6, 0x4_0000, 1),
            iotlb_hash(2, 5, 0x4_0000, 1),
            big,
        ] {
            let d = other.wrapping_sub(base) & 0xffff_ffff;
            assert!(d > 1 << 16 && d < (1 << 32) - (1 << 16), "{other:#x}");
        }
    }

    #[test]
    fn guest_chosen_tags_do_not_share_hashes() {
        // With PASID and page packed into one word before mixing, PASID bits
        // 8-19 could be traded against page bits: 4096 tags with one hash.
        // Each field is mixed on its own now.
        let mut seen = std::collections::HashSet::new();
        for k in 0..4096u64 {
            let pasid = u32::try_from(k << 8).unwrap();
            assert!(
                seen.insert(iotlb_hash(3, pasid, k * CLUSTER_PAGES, 1)),
                "{k}"
            );
        }
        let psc = |pasid: u32, prefix: u64| {
            use std::hash::BuildHasher;
            BuildHasherDefault::<TagHasher>::default().hash_one(PscTag {
                did: 3,
                pasid,
                prefix,
            })
        };
        let mut seen = std::collections::HashSet::new();
        for k in 0..256u64 {
            let pasid = u32::try_from(k << 12).unwrap();
            assert!(seen.insert(psc(pasid, k)), "{k}");
        }
    }
}
