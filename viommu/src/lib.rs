//! A virtual Intel VT-d IOMMU in scalable mode, built to find stale walks.
//!
//! It models the register block, scalable-mode root/context/PASID tables,
//! first-stage translation (4- and 5-level), queued invalidation, fault
//! recording, page requests, and — the point of it — paging-structure caches
//! that hold entries the way hardware may (adversarially, if asked), a count
//! of every invalidation the guest sends, and a checker that re-walks memory
//! after every cached translation to report walks through stale entries.
//! Pure logic over [`vm_memory::GuestMemory`]: no KVM, no threads, no I/O.
//!
//! The entry point is [`Viommu`]; see `docs/ARCHITECTURE.md` for how the
//! other crates use it.

#![deny(missing_docs)]
// Guest input must never panic the VMM: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "iommu")]
pub mod ats;
pub mod breakdown;
pub mod cache;
pub mod checker;
pub mod config;
pub mod counters;
pub mod descriptor;
pub mod event;
pub mod fault;
pub mod memory;
pub mod prq;
pub mod qi;
pub mod regs;
pub mod tables;
pub mod walk;

use std::fmt;

use serde::Serialize;
use vm_memory::GuestMemory;

use crate::cache::{Caches, IotlbEntry, PscEntry};
use crate::checker::{StaleClass, Used};
use crate::fault::FaultUnit;
use crate::prq::{PageRequestUnit, PrqError};
use crate::regs::{RegisterFile, WriteEffect, fsts, gcmd};
use crate::tables::{ContextEntry, PasidEntry, TableError, pgtt};
use crate::walk::{Geometry, Leaf, Path, WalkError, WalkStart};

#[cfg(feature = "iommu")]
pub use crate::ats::RequesterIommu;
pub use crate::breakdown::{Breakdown, Breakdowns, MAX_BREAKDOWN_KEYS};
pub use crate::checker::StaleWalk;
pub use crate::config::{CachePolicy, CheckMode, Config, ConfigError, Levels};
pub use crate::counters::Counters;
pub use crate::descriptor::{Descriptor, DevTlbInvalidation};
pub use crate::event::{Event, EventSink, HitLevels};
pub use crate::fault::Msi;
pub use crate::prq::{PageRequest, PageResponse};
pub use crate::regs::REGISTER_BLOCK_SIZE;
pub use crate::walk::Access;

/// Most interrupts kept until [`Viommu::take_msis`]; beyond it new ones are
/// dropped (and counted), as a guest that never lets the VMM drain them must
/// not grow memory.
pub const MAX_PENDING_MSIS: usize = 4096;
/// Most page responses kept until [`Viommu::take_page_responses`].
pub const MAX_PENDING_RESPONSES: usize = 4096;
/// Most device-TLB invalidations kept until
/// [`Viommu::take_devtlb_invalidations`]; when reached, pending ones collapse
/// into one "everything" invalidation per device (at most 65536 devices).
pub const MAX_PENDING_DEVTLB: usize = 1 << 17;

/// A device access to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct DmaRequest {
    /// Requester id (bus << 8 | devfn).
    pub rid: u16,
    /// PASID, if the request carries one.
    pub pasid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// Access kind.
    pub access: Access,
    /// Privileged (supervisor) request; only meaningful with a PASID.
    pub privileged: bool,
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Translation {
    /// Output (guest-physical) address.
    pub addr: u64,
    /// Size of the page (or pass-through window) holding it.
    pub page_size: u64,
    /// Writes allowed.
    pub writable: bool,
    /// Instruction fetches allowed.
    pub executable: bool,
    /// User-accessible page.
    pub user: bool,
    /// Not translated: translation disabled or a pass-through PASID entry.
    pub pass_through: bool,
    /// Caches that supplied entries.
    pub hits: HitLevels,
}

impl Translation {
    /// Bytes from `addr` to the end of its page.
    pub fn remaining_in_page(&self) -> u64 {
        self.page_size - (self.addr & (self.page_size - 1))
    }
}

/// Why a translation faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum FaultReason {
    /// Root, context or PASID table problem.
    #[error(transparent)]
    Table(#[from] TableError),
    /// First-stage walk or rights problem.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The PASID entry asks for 5-level paging, which the unit does not report.
    #[error("PASID entry uses {levels}-level paging, unsupported")]
    Levels {
        /// Levels asked for.
        levels: u8,
    },
    /// A pass-through PASID entry although ECAP.PT is not reported.
    #[error("pass-through PASID entry but ECAP.PT=0")]
    PassThroughUnsupported,
    /// The translation's output lies in the interrupt address range
    /// (0xFEE00000-0xFEEFFFFF), which DMA may never reach (VT-d SGN.8).
    #[error("output address {output:#x} in the interrupt address range")]
    InterruptRange {
        /// The output address.
        output: u64,
    },
}

/// First address of the interrupt address range.
pub const INTERRUPT_RANGE_START: u64 = 0xfee0_0000;
/// Last address of the interrupt address range.
pub const INTERRUPT_RANGE_END: u64 = 0xfeef_ffff;

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

impl FaultReason {
    /// VT-d fault reason code.
    pub fn code(&self) -> u8 {
        match self {
            FaultReason::Table(t) => t.reason_code(),
            FaultReason::Walk(w) => w.reason_code(),
            FaultReason::Levels { .. } | FaultReason::PassThroughUnsupported => 0x5b,
            FaultReason::InterruptRange { .. } => 0x87,
        }
    }
}

/// A faulting translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("DMA fault: rid {rid:#06x} pasid {pasid:?} addr {addr:#x} {access:?}: {reason}")]
pub struct TranslationFault {
    /// Requester id.
    pub rid: u16,
    /// PASID, if any.
    pub pasid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// Access kind.
    pub access: Access,
    /// Why.
    pub reason: FaultReason,
    /// Whether a fault recording register got it.
    pub recorded: bool,
}

/// The last requester's PASID entry as the PASID cache holds it (with the
/// context entry it came through), so an IOTLB hit skips the two cache
/// lookups. Kept only under the adversarial policy (no LRU order to update)
/// and cleared whenever the context or PASID cache changes or a command or
/// descriptor is processed; a hit through it counts as context and PASID
/// cache hits, exactly as the lookups would.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memo {
    rid: u16,
    req_pasid: Option<u32>,
    pasid: u32,
    did: u16,
    fs_root: u64,
    sre: bool,
    wpe: bool,
    five_level: bool,
    /// The IOTLB entry the last fast-path hit found, valid while the memo is:
    /// every IOTLB change (fill, eviction, invalidation) goes through a path
    /// that clears or rebuilds the memo.
    last: Option<LastHit>,
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

/// The virtual IOMMU.
pub struct Viommu {
    config: Config,
    geo4: Geometry,
    geo5: Geometry,
    pub(crate) regs: RegisterFile,
    pub(crate) caches: Caches,
    faults: FaultUnit,
    pub(crate) prq: PageRequestUnit,
    pub(crate) counters: Counters,
    pub(crate) sink: Option<Box<dyn EventSink>>,
    msis: Vec<Msi>,
    pub(crate) page_responses: Vec<PageResponse>,
    devtlb: Vec<DevTlbInvalidation>,
    /// RTADDR latched by the last SRTP.
    root: u64,
    seq: u64,
    sample: u64,
    pub(crate) memo: Option<Memo>,
    /// Per-device and per-PASID counts for the report (no sink needed).
    pub(crate) breakdowns: Breakdowns,
    /// The current run of translations by one requester and PASID, not yet
    /// in `breakdowns`.
    pending: breakdown::PendingTranslations,
    /// The memo and last-hit fast paths are taken (always, outside tests:
    /// the differential test turns them off to compare with the full path).
    fast_paths: bool,
}

impl fmt::Debug for Viommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Viommu")
            .field("config", &self.config)
            .field("root", &format_args!("{:#x}", self.root))
            .field("translation_enabled", &self.translation_enabled())
            .field("cache_sizes", &self.caches.sizes())
            .field("event_sink", &self.sink.is_some())
            .field("fast_paths", &self.fast_paths)
            .finish_non_exhaustive()
    }
}

impl Viommu {
    /// A unit at reset. An invalid config value (fault record count) is clamped.
    pub fn new(config: Config) -> Self {
        let haw = u32::try_from(config.mgaw()).unwrap_or(47) + 1;
        let fl1gp = config.first_level_1g;
        let counters = Counters {
            checker: Some(config.check),
            ..Counters::default()
        };
        Viommu {
            geo4: Geometry::new(4, haw, fl1gp),
            geo5: Geometry::new(5, haw, fl1gp),
            regs: RegisterFile::new(&config),
            caches: Caches::new(config.cache),
            faults: FaultUnit::default(),
            prq: PageRequestUnit::default(),
            counters,
            sink: None,
            msis: Vec::new(),
            page_responses: Vec::new(),
            devtlb: Vec::new(),
            root: 0,
            seq: 0,
            sample: 0,
            memo: None,
            breakdowns: Breakdowns::default(),
            pending: breakdown::PendingTranslations::default(),
            fast_paths: true,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// All counters (the cache statistics as the caches counted them).
    pub fn counters(&self) -> Counters {
        Counters {
            cache: self.caches.stats(),
            ..self.counters.clone()
        }
    }

    /// Whether GSTS.TES is set.
    pub fn translation_enabled(&self) -> bool {
        self.regs.get32(regs::GSTS) & gcmd::TE != 0
    }

    /// Per-device and per-PASID counts (translations, faults, stale walks,
    /// PASID-based IOTLB invalidations), bounded by [`MAX_BREAKDOWN_KEYS`].
    pub fn breakdowns(&self) -> Breakdowns {
        let mut b = self.breakdowns.clone();
        self.pending.clone().flush(&mut b);
        b
    }

    /// Installs (or removes) the event sink. Only what is emitted depends on
    /// it, never which path a translation or invalidation takes, nor any
    /// counter.
    pub fn set_event_sink(&mut self, sink: Option<Box<dyn EventSink>>) {
        self.sink = sink;
    }

    /// Turns the memo and last-hit fast paths off (or on again), so a test
    /// can check that they count and emit exactly what the full path does.
    #[cfg(test)]
    pub(crate) fn set_fast_paths(&mut self, on: bool) {
        self.fast_paths = on;
        self.memo = None;
    }

    /// The caches (read-only; for tests and tools).
    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    pub(crate) fn emit(&mut self, e: &Event) {
        if let Some(s) = self.sink.as_mut() {
            s.event(e);
        }
    }

    /// Emits the event `f` builds, building it only when a sink listens.
    #[inline]
    pub(crate) fn emit_with(&mut self, f: impl FnOnce() -> Event) {
        if let Some(s) = self.sink.as_mut() {
            s.event(&f());
        }
    }

    pub(crate) fn push_msi(&mut self, m: Msi) {
        self.counters.msis += 1;
        if self.msis.len() < MAX_PENDING_MSIS {
            self.msis.push(m);
        }
    }

    pub(crate) fn push_devtlb(&mut self, inv: DevTlbInvalidation) {
        if self.devtlb.len() >= MAX_PENDING_DEVTLB {
            let mut sids: Vec<u16> = self.devtlb.iter().map(|d| d.sid).collect();
            sids.sort_unstable();
            sids.dedup();
            self.devtlb = sids
                .into_iter()
                .map(|sid| DevTlbInvalidation {
                    sid,
                    pasid: None,
                    addr: 0,
                    size: u64::MAX,
                    global: true,
                })
                .collect();
        }
        self.devtlb.push(inv);
    }

    pub(crate) fn fault_event(&mut self) {
        if let Some(m) = fault::signal(&mut self.regs, regs::FECTL) {
            self.push_msi(m);
        }
    }

    /// Interrupts to deliver (fault event, page request, invalidation wait).
    pub fn take_msis(&mut self) -> Vec<Msi> {
        std::mem::take(&mut self.msis)
    }

    /// Page group responses for devices.
    pub fn take_page_responses(&mut self) -> Vec<PageResponse> {
        std::mem::take(&mut self.page_responses)
    }

    /// Device-TLB invalidations for devices' address translation caches.
    pub fn take_devtlb_invalidations(&mut self) -> Vec<DevTlbInvalidation> {
        std::mem::take(&mut self.devtlb)
    }

    // ---------------------------------------------------------------- MMIO

    /// A guest read of the register block (4- or 8-byte accesses).
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        self.regs.read(offset, data);
    }

    /// A guest write to the register block (4- or 8-byte accesses).
    pub fn mmio_write<M: GuestMemory>(&mut self, mem: &M, offset: u64, data: &[u8]) {
        match self.regs.write(offset, data) {
            WriteEffect::None => {}
            WriteEffect::Gcmd(v) => self.global_command(v),
            WriteEffect::ContextCommand(v) => self.context_command(mem, v),
            WriteEffect::IotlbCommand(v) => self.iotlb_command(mem, v),
            WriteEffect::QueueTail => self.process_queue(mem),
            WriteEffect::FaultStatus | WriteEffect::FaultRecord => {
                fault::refresh_pending(&mut self.regs);
                if !fault::event_condition(&self.regs) {
                    self.regs.update32(regs::FECTL, regs::CTL_IP, false);
                }
                self.process_queue(mem);
            }
            WriteEffect::FaultControl => {
                let want = fault::event_condition(&self.regs);
                if let Some(m) = fault::on_control_write(&mut self.regs, regs::FECTL, want) {
                    self.push_msi(m);
                }
            }
            WriteEffect::InvalidationControl => {
                let want = self.regs.get32(regs::ICS) & 1 != 0;
                if let Some(m) = fault::on_control_write(&mut self.regs, regs::IECTL, want) {
                    self.push_msi(m);
                }
            }
            WriteEffect::PageRequestControl => {
                let want = self.regs.get32(regs::PRS) & 1 != 0;
                if let Some(m) = fault::on_control_write(&mut self.regs, regs::PECTL, want) {
                    self.push_msi(m);
                }
            }
        }
    }

    fn global_command(&mut self, v: u32) {
        self.memo = None;
        let mut gsts = self.regs.get32(regs::GSTS);
        if v & gcmd::TE != 0 {
            gsts |= gcmd::TE;
        } else {
            gsts &= !gcmd::TE;
        }
        if v & gcmd::SRTP != 0 {
            self.root = self.regs.get64(regs::RTADDR);
            gsts |= gcmd::SRTP;
        }
        if v & gcmd::QIE != 0 {
            if gsts & gcmd::QIE == 0 {
                self.regs.set64(regs::IQH, 0);
                gsts |= gcmd::QIE;
            }
        } else {
            gsts &= !gcmd::QIE;
        }
        // WBF: CAP.RWBF=0, there is no write buffer to flush. IRE/SIRTP:
        // interrupt remapping is not reported, so they are ignored.
        self.regs.set32(regs::GSTS, gsts);
    }

    fn context_command<M: GuestMemory>(&mut self, mem: &M, v: u64) {
        let cirg = (v >> 61) & 3;
        let did = (v & 0xffff) as u16;
        let granularity = match cirg {
            1 => Some(descriptor::ContextGranularity::Global),
            2 => Some(descriptor::ContextGranularity::Domain { did }),
            3 => Some(descriptor::ContextGranularity::Device {
                did,
                sid: ((v >> 16) & 0xffff) as u16,
                fm: ((v >> 32) & 3) as u8,
            }),
            _ => None,
        };
        let caig = match granularity {
            Some(granularity) => {
                let _ = self.execute(mem, Descriptor::ContextCache { granularity }, None);
                cirg
            }
            None => 0,
        };
        let nv = (v & !(1 << 63) & !(3 << 59)) | (caig << 59);
        self.regs.set64(regs::CCMD, nv);
    }

    fn iotlb_command<M: GuestMemory>(&mut self, mem: &M, v: u64) {
        let iirg = (v >> 60) & 3;
        let did = ((v >> 32) & 0xffff) as u16;
        let iva = self.regs.get64(regs::IVA);
        let granularity = match iirg {
            1 => Some(descriptor::IotlbGranularity::Global),
            2 => Some(descriptor::IotlbGranularity::Domain { did }),
            3 => Some(descriptor::IotlbGranularity::Page {
                did,
                addr: iva & !0xfff,
                am: (iva & 0x3f) as u8,
                ih: iva & (1 << 6) != 0,
            }),
            _ => None,
        };
        let iaig = match granularity {
            Some(granularity) => {
                let d = Descriptor::Iotlb {
                    granularity,
                    dr: v & (1 << 49) != 0,
                    dw: v & (1 << 48) != 0,
                };
                let _ = self.execute(mem, d, None);
                iirg
            }
            None => 0,
        };
        let nv = (v & !(1 << 63) & !(3 << 57)) | (iaig << 57);
        self.regs.set64(regs::IOTLB, nv);
    }

    /// Reports that a device did not complete a device-TLB invalidation
    /// (`timeout`: ITE) or completed it with an error (ICE), as hardware
    /// would: FSTS and IQER are set, the queue stops (ITE) and the fault
    /// event fires.
    pub fn devtlb_invalidation_failed(&mut self, sid: u16, timeout: bool) {
        let iqer = self.regs.get64(regs::IQER);
        let (bit, iqer, kind) = if timeout {
            (
                fsts::ITE,
                (iqer & !(0xffff << 32)) | (u64::from(sid) << 32),
                "ite",
            )
        } else {
            (
                fsts::ICE,
                (iqer & !(0xffff << 48)) | (u64::from(sid) << 48),
                "ice",
            )
        };
        self.regs.set64(regs::IQER, iqer);
        self.regs.update32(regs::FSTS, bit, true);
        self.counters.queue_errors += 1;
        let head = u32::try_from(self.regs.get64(regs::IQH) >> 4).unwrap_or(u32::MAX);
        self.emit(&Event::QueueError { kind, head, iqer });
        self.fault_event();
    }

    // ---------------------------------------------------------- translation

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
        let h = m.last.as_ref()?;
        if req.addr & h.mask != h.base || m.rid != req.rid || m.req_pasid != req.pasid {
            return None;
        }
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
            self.check_last_hit(mem, req);
        }
        self.emit_fast_hit(req, &t);
        Some(t)
    }

    /// The checker for a hit through [`LastHit`]: when the entries its
    /// previous check read are all unchanged in memory the fresh walk would
    /// agree with the entry; otherwise the full check.
    #[inline(never)]
    fn check_last_hit<M: GuestMemory>(&mut self, mem: &M, req: &DmaRequest) {
        if self.memo.as_ref().and_then(|m| m.last.as_ref()).is_none() || !self.check_due() {
            return;
        }
        self.counters.checked += 1;
        if let Some(h) = self.memo.as_ref().and_then(|m| m.last.as_ref()) {
            if !h.verified.is_empty() && h.verified.unchanged(&mut memory::Reader::new(mem)) {
                return;
            }
        }
        let Some(m) = self.memo else {
            return;
        };
        let Some(h) = m.last else {
            return;
        };
        let geo = if m.five_level { self.geo5 } else { self.geo4 };
        self.check_now(
            mem,
            &geo,
            m.fs_root,
            req.rid,
            m.pasid,
            req.addr,
            &Used::Iotlb(h.entry),
            &Ok(h.entry.leaf),
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
        let m = self.memo?;
        if m.rid != req.rid || m.req_pasid != req.pasid || !self.translation_enabled() {
            return None;
        }
        let geo = if m.five_level { self.geo5 } else { self.geo4 };
        let privileged = req.pasid.is_some() && req.privileged;
        if !geo.canonical(req.addr) || (privileged && !m.sre) {
            return None;
        }
        let e = match m.last {
            Some(h) if req.addr & h.mask == h.base => h.entry,
            _ => self.caches.iotlb_peek(m.did, m.pasid, req.addr)?,
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
            memo.last = Some(LastHit {
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

    fn context<M: GuestMemory>(
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
                rid: req.rid,
                req_pasid: req.pasid,
                pasid,
                did: pe.did,
                fs_root: pe.fs_root,
                sre: pe.sre,
                wpe: pe.wpe,
                five_level: pe.levels == 5,
                last: None,
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
        if m.fs_root != root || (if m.five_level { 5 } else { 4 }) != geo.levels {
            return None;
        }
        m.last
            .as_mut()
            .filter(|h| h.entry == *e && addr & h.mask == h.base)
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

    // ------------------------------------------------------- page requests

    /// A device's page request: written to the guest's page-request queue
    /// (PRS.PPR, page-request MSI). A full queue sets PRO and, for a
    /// last-in-group request, answers it at once with Success (so the device
    /// retries), as hardware does.
    pub fn page_request<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: PageRequest,
    ) -> Result<(), PrqError> {
        let res = self.page_request_inner(mem, &req);
        match res {
            Ok(fire) => {
                self.counters.page_requests.queued += 1;
                if fire {
                    if let Some(m) = fault::signal(&mut self.regs, regs::PECTL) {
                        self.push_msi(m);
                    }
                }
            }
            Err(PrqError::Overflow { .. }) => {
                self.counters.page_requests.overflows += 1;
                if req.last && self.page_responses.len() < MAX_PENDING_RESPONSES {
                    self.page_responses.push(PageResponse {
                        rid: req.rid,
                        pasid: req.pasid,
                        group_index: req.group_index & 0x1ff,
                        code: prq::code::SUCCESS,
                    });
                }
            }
            Err(_) => self.counters.page_requests.refused += 1,
        }
        self.emit(&Event::PageRequest {
            request: req,
            queued: res.is_ok(),
        });
        res.map(|_| ())
    }

    fn page_request_inner<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &PageRequest,
    ) -> Result<bool, PrqError> {
        if !self.config.page_requests {
            return Err(PrqError::NotSupported);
        }
        if !self.translation_enabled() {
            return Err(PrqError::NotEnabled { rid: req.rid });
        }
        let mut hits = HitLevels::default();
        let ctx = self
            .context(&mut memory::Reader::new(mem), req.rid, &mut hits)
            .map_err(|_| PrqError::NotEnabled { rid: req.rid })?;
        if !ctx.pre {
            return Err(PrqError::NotEnabled { rid: req.rid });
        }
        if self.page_responses.len() >= MAX_PENDING_RESPONSES {
            return Err(PrqError::TooManyOutstanding);
        }
        self.prq.submit(&mut self.regs, mem, req)
    }

    // --------------------------------------------------------------- hints

    /// The guest's "page-table page at `gpa` freed" hint: counts
    /// `freed_while_cached` if any cached entry points at that page.
    pub fn hint_pgtable_freed(&mut self, gpa: u64) {
        let page = gpa & !0xfff;
        self.counters.free_hints += 1;
        let cached = self.caches.points_at(page);
        if cached {
            self.counters.freed_while_cached += 1;
        }
        self.emit(&Event::Hint { gpa: page, cached });
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

#[cfg(test)]
mod tests;
