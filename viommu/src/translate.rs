//! Translation: a device access (or ATS request, or speculative walk) through
//! the context, PASID and first-stage tables with the caches per policy, the
//! memo and last-hit fast paths (same counts, same events), the stale-walk
//! checker's hooks, fault recording, and the per-requester counts.

use vm_memory::GuestMemory;

use crate::cache::{IotlbEntry, PscEntry};
use crate::checker::{self, StaleClass, StaleWalk, Used};
use crate::config::{CachePolicy, CheckMode, Levels};
use crate::event::{self, Event, HitLevels};
use crate::fault;
use crate::memory;
use crate::regs::{self, fsts};
use crate::tables::{self, ContextEntry, PasidEntry, TableError, pgtt};
use crate::walk::{self, Access, Geometry, Leaf, Path, WalkError, WalkStart};
use crate::{
    DmaRequest, FaultReason, INTERRUPT_RANGE_END, INTERRUPT_RANGE_START, Translation,
    TranslationFault, Viommu,
};

/// Whether the leaf's page overlaps the interrupt address range.
#[inline]
fn overlaps_interrupt_range(leaf: &Leaf) -> bool {
    leaf.page <= INTERRUPT_RANGE_END && leaf.page + (leaf.size - 1) >= INTERRUPT_RANGE_START
}

/// Whether an IOTLB entry cannot serve a request by itself: a permitted
/// write through an entry whose leaf has D clear (filled by a read). The
/// unit then walks the tables as for a miss, setting D in the guest's leaf,
/// and refills the entry; a write the rights refuse faults on the entry.
#[inline]
fn needs_dirty_walk(
    e: &IotlbEntry,
    write: bool,
    rights_ok: impl Fn(&Leaf) -> Result<(), WalkError>,
) -> bool {
    write && e.leaf.value & walk::PTE_D == 0 && rights_ok(&e.leaf).is_ok()
}

/// Blocks a translation whose output for `addr` is in the interrupt range.
#[inline]
fn check_interrupt_range(leaf: &Leaf, addr: u64) -> Result<(), FaultReason> {
    let output = leaf.output(addr);
    if (INTERRUPT_RANGE_START..=INTERRUPT_RANGE_END).contains(&output) {
        return Err(FaultReason::InterruptRange { output });
    }
    Ok(())
}

/// The last requester's PASID entry as the PASID cache holds it (with the
/// context entry it came through), so an IOTLB hit skips the two cache
/// lookups. Kept only under the adversarial policy (no LRU order to update)
/// and cleared whenever the context or PASID cache changes or a command or
/// descriptor is processed; a hit through it counts as context and PASID
/// cache hits, exactly as the lookups would.
#[derive(Debug, Clone)]
pub(crate) struct Memo {
    req: Requester,
    /// The IOTLB entries the latest fast-path hits found, valid while the
    /// memo is: every IOTLB change (fill, eviction, invalidation) goes
    /// through a path that clears or rebuilds the memo. No two cover the
    /// same address.
    recent: [Option<LastHit>; RECENT_HITS],
    /// The slot the next new entry replaces (round robin).
    next: usize,
}

/// Fast-path hits the memo keeps. A device that streams through two
/// buffers at once (a copy's source and destination, a request's data and
/// its descriptors) alternates between pages; with one slot each access
/// replaced the other's entry and every checked hit walked the tables
/// again (tools/bench-sva.sh: the 2 MiB copy at 64% of memcpy with the
/// checker on, against 84% off).
const RECENT_HITS: usize = 4;

/// The memoized requester and its PASID entry's fields.
#[derive(Debug, Clone, Copy)]
struct Requester {
    rid: u16,
    req_pasid: Option<u32>,
    pasid: u32,
    did: u16,
    fs_root: u64,
    sre: bool,
    wpe: bool,
    five_level: bool,
}

impl Memo {
    /// The slot whose page holds `addr`, with its hit.
    #[inline(always)]
    fn hit_for(&self, addr: u64) -> Option<(usize, &LastHit)> {
        self.recent.iter().enumerate().find_map(|(i, h)| {
            h.as_ref()
                .filter(|h| addr & h.mask == h.base)
                .map(|h| (i, h))
        })
    }

    /// The hit in `slot`.
    #[inline(always)]
    fn hit_at(&self, slot: usize) -> Option<&LastHit> {
        self.recent.get(slot)?.as_ref()
    }

    /// Keeps `hit`, replacing any entry that overlaps its page, else the
    /// oldest.
    fn keep(&mut self, hit: LastHit) {
        let overlaps = |h: &LastHit| {
            let (a0, a1) = (h.base, h.base | !h.mask);
            let (b0, b1) = (hit.base, hit.base | !hit.mask);
            a0 <= b1 && b0 <= a1
        };
        let mut placed = false;
        for slot in self.recent.iter_mut() {
            if slot.as_ref().is_some_and(overlaps) {
                *slot = if placed { None } else { Some(hit) };
                placed = true;
            }
        }
        if !placed {
            if let Some(slot) = self.recent.get_mut(self.next) {
                *slot = Some(hit);
            }
            self.next = (self.next + 1) % RECENT_HITS;
        }
    }
}

/// One IOTLB entry with its input page and the request kinds its rights
/// allow, so a repeated hit on the same page is a compare and a bit test.
/// Only a cheaper route to the same IOTLB entry: hits through it count
/// exactly as IOTLB hits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastHit {
    /// Input page base (all 64 bits, so a match implies a canonical address).
    base: u64,
    /// `!(page size - 1)`.
    mask: u64,
    /// Bit `rights_bit(access, privileged)` set when that request kind passes
    /// the rights check (and, for privileged ones, SRE).
    allowed: u8,
    entry: IotlbEntry,
    /// The translation of the page base, for user and for privileged
    /// requests (index `privileged as usize`).
    out: [Translation; 2],
    /// What the last check of this entry read and found consistent (empty
    /// until a check succeeds); see [`checker::VerifiedWalk`].
    verified: checker::VerifiedWalk,
}

/// What a hit through the memoized requester and the IOTLB reports.
const FAST_HIT_LEVELS: HitLevels = HitLevels {
    context: true,
    pasid: true,
    iotlb: true,
    psc_level: None,
};

/// Bit of [`LastHit::allowed`] for a request kind.
#[inline]
fn rights_bit(access: Access, privileged: bool) -> u8 {
    let a = match access {
        Access::Read => 0,
        Access::Write => 1,
        Access::Execute => 2,
    };
    1 << (a * 2 + u8::from(privileged))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dma,
    Ats,
    Speculative,
}

impl Viommu {
    /// Translates a device access: caches per policy, the checker, fault
    /// recording (unless the context or PASID entry sets FPD) and the fault
    /// event.
    #[inline]
    pub fn translate<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &DmaRequest,
    ) -> Result<Translation, TranslationFault> {
        if self.fast_paths {
            if let Some(t) = self.last_hit(mem, req) {
                return Ok(t);
            }
        }
        self.translate_mode(mem, req, Mode::Dma)
    }

    /// A repeated IOTLB hit on the page of the last fast-path hit, for the
    /// memoized requester (see [`LastHit`]); counts as the full IOTLB hit.
    #[inline(always)]
    fn last_hit<M: GuestMemory>(&mut self, mem: &M, req: &DmaRequest) -> Option<Translation> {
        let m = self.memo.as_ref()?;
        if m.req.rid != req.rid || m.req.req_pasid != req.pasid {
            return None;
        }
        let (slot, h) = m.hit_for(req.addr)?;
        let privileged = req.pasid.is_some() && req.privileged;
        if h.allowed & rights_bit(req.access, privileged) == 0 {
            return None;
        }
        let o = &h.out[usize::from(privileged)];
        let t = Translation {
            addr: o.addr | (req.addr & !h.mask),
            page_size: o.page_size,
            writable: o.writable,
            executable: o.executable,
            user: o.user,
            pass_through: false,
            hits: FAST_HIT_LEVELS,
        };
        self.count_fast_hit(req);
        if self.config.check != CheckMode::Off {
            self.check_last_hit(mem, req, slot);
        }
        self.emit_fast_hit(req, &t);
        Some(t)
    }

    /// The checker for a hit through [`LastHit`]: when the entries its
    /// previous check read are all unchanged in memory the fresh walk would
    /// agree with the entry; otherwise the full check.
    #[inline(never)]
    fn check_last_hit<M: GuestMemory>(&mut self, mem: &M, req: &DmaRequest, slot: usize) {
        if self.memo.as_ref().and_then(|m| m.hit_at(slot)).is_none() || !self.check_due() {
            return;
        }
        self.counters.checked += 1;
        let Some(m) = self.memo.as_ref() else {
            return;
        };
        let (r, Some(h)) = (m.req, m.hit_at(slot)) else {
            return;
        };
        if !h.verified.is_empty() && h.verified.unchanged(&mut memory::Reader::new(mem)) {
            return;
        }
        let entry = h.entry;
        let geo = if r.five_level { self.geo5 } else { self.geo4 };
        self.check_now(
            mem,
            &geo,
            r.fs_root,
            req.rid,
            r.pasid,
            req.addr,
            &Used::Iotlb(entry),
            &Ok(entry.leaf),
        );
    }

    /// Whether the checker runs for this candidate (advances the sample
    /// counter under `sampled`).
    #[inline]
    fn check_due(&mut self) -> bool {
        match self.config.check {
            CheckMode::Off => false,
            CheckMode::Sampled => {
                self.sample += 1;
                self.sample % checker::SAMPLE_PERIOD == 0
            }
            CheckMode::All => true,
        }
    }

    #[inline]
    fn count_fast_hit(&mut self, req: &DmaRequest) {
        self.seq += 1;
        let c = &mut self.counters;
        c.translations += 1;
        self.caches.count_memo_hit();
        self.pending
            .count(&mut self.breakdowns, req.rid, req.pasid, false);
    }

    /// The translation event of a fast-path hit: what the full path emits
    /// for the same IOTLB hit.
    #[inline]
    fn emit_fast_hit(&mut self, req: &DmaRequest, t: &Translation) {
        self.emit_with(|| Event::Translation {
            rid: req.rid,
            pasid: req.pasid,
            addr: req.addr,
            access: req.access,
            privileged: req.privileged,
            speculative: false,
            result: event::TranslationOutcome::Ok {
                output: t.addr,
                size: t.page_size,
                pass_through: false,
            },
            hits: FAST_HIT_LEVELS,
        });
    }

    /// An ATS translation request: like [`translate`](Self::translate) but a
    /// fault goes back to the device only (it is counted, not recorded).
    pub fn translate_ats<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &DmaRequest,
    ) -> Result<Translation, TranslationFault> {
        self.translate_mode(mem, req, Mode::Ats)
    }

    /// A speculative walk: fills the caches per policy (paging-structure
    /// caches only: with no access there is no permission outcome for the
    /// IOTLB), runs the checker, counts nothing but cache activity and stale
    /// walks, and never faults visibly.
    pub fn speculative_walk<M: GuestMemory>(&mut self, mem: &M, req: &DmaRequest) {
        let _ = self.translate_mode(mem, req, Mode::Speculative);
    }

    /// [`speculative_walk`](Self::speculative_walk), returning where the walk
    /// ended: the leaf it reached (rights as the entries combine them; no
    /// access was checked) or the structural fault that stopped it. Nothing
    /// is recorded either way; for tools that compare outcomes.
    pub fn speculative_walk_outcome<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &DmaRequest,
    ) -> Result<Translation, TranslationFault> {
        self.translate_mode(mem, req, Mode::Speculative)
    }

    #[inline(never)]
    fn translate_mode<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &DmaRequest,
        mode: Mode,
    ) -> Result<Translation, TranslationFault> {
        if mode == Mode::Dma && self.fast_paths {
            if let Some(t) = self.iotlb_fast_path(mem, req) {
                return Ok(t);
            }
        }
        self.seq += 1;
        match mode {
            Mode::Speculative => self.counters.speculative_walks += 1,
            _ => self.counters.translations += 1,
        }
        let mut hits = HitLevels::default();
        let mut fpd = false;
        let result = self.resolve(mem, req, mode, &mut hits, &mut fpd);
        let speculative = mode == Mode::Speculative;
        let outcome = match &result {
            Ok(t) => event::TranslationOutcome::Ok {
                output: t.addr,
                size: t.page_size,
                pass_through: t.pass_through,
            },
            Err(r) => event::TranslationOutcome::Fault { reason: r.code() },
        };
        if !speculative {
            self.pending
                .count(&mut self.breakdowns, req.rid, req.pasid, result.is_err());
        }
        self.emit_with(|| Event::Translation {
            rid: req.rid,
            pasid: req.pasid,
            addr: req.addr,
            access: req.access,
            privileged: req.privileged,
            speculative,
            result: outcome,
            hits,
        });
        match result {
            Ok(t) => Ok(t),
            Err(reason) => {
                let mut recorded = false;
                if !speculative {
                    self.counters.faults += 1;
                    if mode == Mode::Dma && !fpd {
                        recorded = self.record_fault(req, &reason);
                    }
                    self.emit(&Event::Fault {
                        rid: req.rid,
                        pasid: req.pasid,
                        addr: req.addr,
                        reason: reason.code(),
                        recorded,
                    });
                }
                Err(TranslationFault {
                    rid: req.rid,
                    pasid: req.pasid,
                    addr: req.addr,
                    access: req.access,
                    reason,
                    recorded,
                })
            }
        }
    }

    /// An IOTLB hit for the memoized requester that passes the rights check;
    /// anything else (including faults) takes the full path.
    #[inline]
    fn iotlb_fast_path<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &DmaRequest,
    ) -> Option<Translation> {
        let memo = self.memo.as_ref()?;
        let m = memo.req;
        if m.rid != req.rid || m.req_pasid != req.pasid || !self.translation_enabled() {
            return None;
        }
        let memoized = memo.hit_for(req.addr).map(|(_, h)| h.entry);
        let geo = if m.five_level { self.geo5 } else { self.geo4 };
        let privileged = req.pasid.is_some() && req.privileged;
        if !geo.canonical(req.addr) || (privileged && !m.sre) {
            return None;
        }
        let e = match memoized {
            Some(e) => e,
            None => self.caches.iotlb_peek(m.did, m.pasid, req.addr)?,
        };
        walk::check_rights(&e.leaf, req.addr, req.access, privileged, m.wpe).ok()?;
        // A page overlapping the interrupt range takes the full path, which
        // blocks outputs inside it; so does a write that has to set D.
        if overlaps_interrupt_range(&e.leaf)
            || (req.access == Access::Write && e.leaf.value & walk::PTE_D == 0)
        {
            return None;
        }
        if let Some(memo) = self.memo.as_mut() {
            let mask = !(e.leaf.size - 1);
            let mut allowed = 0;
            for access in [Access::Read, Access::Write, Access::Execute] {
                for p in [false, true] {
                    let ok = (!p || m.sre)
                        && (access != Access::Write || e.leaf.value & walk::PTE_D != 0)
                        && walk::check_rights(&e.leaf, req.addr, access, p, m.wpe).is_ok();
                    if ok {
                        allowed |= rights_bit(access, p);
                    }
                }
            }
            memo.keep(LastHit {
                base: req.addr & mask,
                mask,
                allowed,
                entry: e,
                out: [false, true]
                    .map(|p| leaf_translation(&e.leaf, req.addr & mask, p, m.wpe, FAST_HIT_LEVELS)),
                verified: checker::VerifiedWalk::default(),
            });
        }
        self.count_fast_hit(req);
        if self.config.check != CheckMode::Off {
            self.maybe_check(
                mem,
                &geo,
                m.fs_root,
                req.rid,
                m.pasid,
                req.addr,
                &Used::Iotlb(e),
                &Ok(e.leaf),
            );
        }
        let t = leaf_translation(&e.leaf, req.addr, privileged, m.wpe, FAST_HIT_LEVELS);
        self.emit_fast_hit(req, &t);
        Some(t)
    }

    fn record_fault(&mut self, req: &DmaRequest, reason: &FaultReason) -> bool {
        let info = fault::FaultInfo {
            rid: req.rid,
            pasid: req.pasid,
            addr: req.addr,
            reason: reason.code(),
            access: req.access,
            privileged: req.privileged,
        };
        let pending_before = self.regs.get32(regs::FSTS) & fsts::PPF != 0;
        match self.faults.record(&mut self.regs, &info) {
            Ok(_) => {
                self.counters.faults_recorded += 1;
                if !pending_before {
                    self.fault_event();
                }
                true
            }
            Err(fault::FaultError::Overflow { .. }) => {
                self.fault_event();
                false
            }
            Err(fault::FaultError::OverflowPending) => false,
        }
    }

    pub(crate) fn context<M: GuestMemory>(
        &mut self,
        rd: &mut memory::Reader<'_, M>,
        rid: u16,
        hits: &mut HitLevels,
    ) -> Result<ContextEntry, FaultReason> {
        if self.caches.enabled() {
            if let Some(c) = self.caches.context_lookup(rid) {
                hits.context = true;
                return Ok(c);
            }
        }
        let ttm = ((self.root >> 10) & 3) as u8;
        if ttm != 1 {
            return Err(TableError::NotScalableMode { ttm }.into());
        }
        let c = tables::read_context_with(rd, self.root, rid)?;
        if self.caches.enabled() {
            self.memo = None;
            self.caches.context_fill(rid, c);
        }
        Ok(c)
    }

    fn pasid_entry<M: GuestMemory>(
        &mut self,
        rd: &mut memory::Reader<'_, M>,
        rid: u16,
        ctx: &ContextEntry,
        pasid: u32,
        hits: &mut HitLevels,
    ) -> Result<PasidEntry, FaultReason> {
        if self.caches.enabled() {
            if let Some(p) = self.caches.pasid_lookup(rid, pasid) {
                hits.pasid = true;
                return Ok(p);
            }
        }
        let p = tables::read_pasid_entry_with(rd, ctx, pasid)?;
        if self.caches.enabled() {
            self.memo = None;
            self.caches.pasid_fill(rid, pasid, p);
        }
        Ok(p)
    }

    fn resolve<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &DmaRequest,
        mode: Mode,
        hits: &mut HitLevels,
        fpd: &mut bool,
    ) -> Result<Translation, FaultReason> {
        let identity = |hits: HitLevels| Translation {
            addr: req.addr,
            page_size: 1 << 30,
            writable: true,
            executable: true,
            user: true,
            pass_through: true,
            hits,
        };
        if !self.translation_enabled() {
            return Ok(identity(*hits));
        }
        let mut rd = memory::Reader::new(mem);
        let ctx = self.context(&mut rd, req.rid, hits)?;
        *fpd = ctx.fpd;
        let pasid = match req.pasid {
            Some(p) if !ctx.pasid_enable => {
                return Err(TableError::PasidDisabled {
                    rid: req.rid,
                    pasid: p,
                }
                .into());
            }
            Some(p) => p,
            None => ctx.rid_pasid,
        };
        let pe = self.pasid_entry(&mut rd, req.rid, &ctx, pasid, hits)?;
        *fpd |= pe.fpd;
        if pe.pgtt == pgtt::PASS_THROUGH {
            if !self.config.pass_through {
                return Err(FaultReason::PassThroughUnsupported);
            }
            return Ok(identity(*hits));
        }
        if pe.levels == 5 && self.config.levels == Levels::Four {
            return Err(FaultReason::Levels { levels: 5 });
        }
        // Requests without a PASID are user requests (as Linux's first-stage
        // DMA page tables, which set U/S, assume).
        let privileged = req.pasid.is_some() && req.privileged;
        if self.config.cache == CachePolicy::Adversarial && self.fast_paths {
            self.memo = Some(Memo {
                req: Requester {
                    rid: req.rid,
                    req_pasid: req.pasid,
                    pasid,
                    did: pe.did,
                    fs_root: pe.fs_root,
                    sre: pe.sre,
                    wpe: pe.wpe,
                    five_level: pe.levels == 5,
                },
                recent: [None; RECENT_HITS],
                next: 0,
            });
        }
        let leaf = self.first_stage(&mut rd, req, pasid, &pe, privileged, mode, hits)?;
        Ok(leaf_translation(&leaf, req.addr, privileged, pe.wpe, *hits))
    }

    #[allow(clippy::too_many_arguments)]
    fn first_stage<M: GuestMemory>(
        &mut self,
        rd: &mut memory::Reader<'_, M>,
        req: &DmaRequest,
        pasid: u32,
        pe: &PasidEntry,
        privileged: bool,
        mode: Mode,
        hits: &mut HitLevels,
    ) -> Result<Leaf, FaultReason> {
        let mem = rd.memory();
        let geo = if pe.levels == 5 { self.geo5 } else { self.geo4 };
        let addr = req.addr;
        if !geo.canonical(addr) {
            return Err(WalkError::NonCanonical {
                addr,
                levels: geo.levels,
            }
            .into());
        }
        if privileged && !pe.sre {
            return Err(WalkError::SupervisorDisabled.into());
        }
        let did = pe.did;
        let check =
            |rights: &Leaf| walk::check_rights(rights, addr, req.access, privileged, pe.wpe);
        let write = mode != Mode::Speculative && req.access == Access::Write;
        if self.caches.enabled() {
            if let Some(e) = self
                .caches
                .iotlb_lookup(did, pasid, addr, |e| !needs_dirty_walk(e, write, check))
            {
                hits.iotlb = true;
                self.maybe_check(
                    mem,
                    &geo,
                    pe.fs_root,
                    req.rid,
                    pasid,
                    addr,
                    &Used::Iotlb(e),
                    &Ok(e.leaf),
                );
                if mode != Mode::Speculative {
                    check(&e.leaf)?;
                    check_interrupt_range(&e.leaf, addr)?;
                }
                return Ok(e.leaf);
            }
        }
        let mut start = geo.root(pe.fs_root);
        let mut used = None;
        if self.caches.enabled() {
            for level in 2..=geo.levels {
                if let Some(e) = self.caches.psc_lookup(level, did, pasid, addr) {
                    hits.psc_level = Some(level);
                    start = WalkStart {
                        level: level - 1,
                        table: e.table,
                        rights: e.rights,
                    };
                    used = Some(Used::Psc(level, e));
                    break;
                }
            }
        }
        let mut restarts = 0;
        loop {
            let mut path = Path::default();
            let res = walk::walk_with(rd, &geo, start, addr, &mut path);
            if restarts == 0 {
                self.fill_psc(mem, did, pasid, addr, start, &path);
                if let Some(u) = used.as_ref() {
                    self.maybe_check(mem, &geo, pe.fs_root, req.rid, pasid, addr, u, &res);
                }
            }
            let leaf = res?;
            if mode == Mode::Speculative {
                return Ok(leaf);
            }
            check(&leaf)?;
            check_interrupt_range(&leaf, addr)?;
            match walk::set_accessed_dirty(mem, &path, &leaf, req.access == Access::Write)? {
                true => {}
                false if restarts < walk::MAX_WALK_RESTARTS => {
                    restarts += 1;
                    continue;
                }
                false => return Err(WalkError::AdUpdate { gpa: leaf.gpa }.into()),
            }
            if self.caches.enabled() {
                // The entry holds the leaf as memory has it now (A, and D
                // for a write, just set), so a later write knows whether D
                // still has to be set.
                let mut leaf = leaf;
                leaf.value |= walk::PTE_A | if write { walk::PTE_D } else { 0 };
                let e = IotlbEntry {
                    leaf,
                    filled: self.seq,
                };
                self.caches.iotlb_fill(did, pasid, addr, e);
            }
            return Ok(leaf);
        }
    }

    fn fill_psc<M: GuestMemory>(
        &mut self,
        mem: &M,
        did: u16,
        pasid: u32,
        addr: u64,
        start: WalkStart,
        path: &Path,
    ) {
        if !self.caches.enabled() {
            return;
        }
        let mut rights = start.rights;
        for e in path.entries() {
            rights = rights.and_entry(e.value);
            let table = e.value & walk::PTE_ADDR;
            let snapshot = if self.config.check == CheckMode::Off {
                0
            } else {
                checker::page_hash(mem, table)
            };
            let entry = PscEntry {
                value: e.value,
                gpa: e.gpa,
                table,
                rights,
                filled: self.seq,
            };
            self.caches
                .psc_fill(e.level, did, pasid, addr, entry, snapshot);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn maybe_check<M: GuestMemory>(
        &mut self,
        mem: &M,
        geo: &Geometry,
        root: u64,
        rid: u16,
        pasid: u32,
        addr: u64,
        used: &Used,
        outcome: &Result<Leaf, WalkError>,
    ) {
        if !self.check_due() {
            return;
        }
        self.counters.checked += 1;
        self.check_now(mem, geo, root, rid, pasid, addr, used, outcome);
    }

    /// One check (already sampled and counted): stale-walk counters and event.
    #[allow(clippy::too_many_arguments)]
    fn check_now<M: GuestMemory>(
        &mut self,
        mem: &M,
        geo: &Geometry,
        root: u64,
        rid: u16,
        pasid: u32,
        addr: u64,
        used: &Used,
        outcome: &Result<Leaf, WalkError>,
    ) {
        let found = match used {
            Used::Iotlb(e) => self.check_iotlb_hit(mem, geo, root, addr, e),
            Used::Psc(level, e) => {
                let seen = self.caches.last_seen_linked(e.table);
                match checker::check_psc(mem, geo, root, addr, *level, e, outcome, seen) {
                    checker::PscCheck::Linked { snapshot, stale } => {
                        self.caches.seen_linked(e.table, snapshot);
                        stale
                    }
                    checker::PscCheck::Moved(stale) => Some(stale),
                }
            }
        };
        let Some((class, level, cached, memory, table_page)) = found else {
            return;
        };
        let s = &mut self.counters.stale_walks;
        match class {
            StaleClass::Unlinked => s.unlinked += 1,
            StaleClass::Reused => s.reused += 1,
            StaleClass::Leaf => s.leaf += 1,
        }
        self.breakdowns
            .stale_walk(rid, pasid, class == StaleClass::Reused);
        let w = StaleWalk {
            seq: self.seq,
            class,
            rid,
            pasid,
            addr,
            level,
            cached,
            memory,
            table_page,
        };
        self.emit(&Event::StaleWalk(w));
    }

    /// The memoized last hit when it holds exactly this entry for this page
    /// and table root.
    fn last_hit_for(
        &mut self,
        geo: &Geometry,
        root: u64,
        addr: u64,
        e: &IotlbEntry,
    ) -> Option<&mut LastHit> {
        let m = self.memo.as_mut()?;
        if m.req.fs_root != root || (if m.req.five_level { 5 } else { 4 }) != geo.levels {
            return None;
        }
        m.recent
            .iter_mut()
            .flatten()
            .find(|h| h.entry == *e && addr & h.mask == h.base)
    }

    /// Checks an IOTLB hit: re-reads the entries the previous check of the
    /// same memoized hit found consistent and stops there when they are all
    /// unchanged (the fresh walk would be the same); otherwise a full fresh
    /// walk from the root, remembered when it agrees with the entry.
    fn check_iotlb_hit<M: GuestMemory>(
        &mut self,
        mem: &M,
        geo: &Geometry,
        root: u64,
        addr: u64,
        e: &IotlbEntry,
    ) -> Option<(StaleClass, u8, u64, u64, u64)> {
        if let Some(h) = self.last_hit_for(geo, root, addr, e) {
            if h.verified.unchanged(&mut memory::Reader::new(mem)) {
                return None;
            }
        }
        match checker::check_iotlb(mem, geo, root, addr, e) {
            Ok(v) => {
                if let Some(h) = self.last_hit_for(geo, root, addr, e) {
                    h.verified = v;
                }
                None
            }
            Err(stale) => Some(stale),
        }
    }
}

#[inline]
fn leaf_translation(
    leaf: &Leaf,
    addr: u64,
    privileged: bool,
    wpe: bool,
    hits: HitLevels,
) -> Translation {
    // A device may use a translation up to the end of its page: a large page
    // overlapping the interrupt range is reported in 4-KiB pieces, none of
    // which reaches into the range unless its own output does (and faults).
    let page_size = if overlaps_interrupt_range(leaf) {
        1 << 12
    } else {
        leaf.size
    };
    Translation {
        addr: leaf.output(addr),
        page_size,
        writable: leaf.rights.write || (privileged && !wpe),
        executable: !leaf.rights.no_exec && (!privileged || !leaf.rights.user),
        user: leaf.rights.user,
        pass_through: false,
        hits,
    }
}
