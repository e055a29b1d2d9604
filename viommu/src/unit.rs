//! The unit's state and its register front end: construction, accessors,
//! pending interrupts, page responses and device-TLB invalidations, MMIO
//! reads and writes (global, context and IOTLB commands, fault and
//! invalidation event control), page requests and the page-freed hint.

use vm_memory::GuestMemory;

use crate::breakdown::{self, Breakdowns};
use crate::cache::Caches;
use crate::config::Config;
use crate::counters::Counters;
use crate::descriptor::{self, DevTlbInvalidation};
use crate::event::{Event, EventSink, HitLevels};
use crate::fault::{self, FaultUnit, Msi};
use crate::memory;
use crate::prq::{self, PageRequest, PageRequestUnit, PageResponse, PrqError};
use crate::regs::{self, RegisterFile, WriteEffect, fsts, gcmd};
use crate::walk::Geometry;
use crate::{MAX_PENDING_DEVTLB, MAX_PENDING_MSIS, MAX_PENDING_RESPONSES, Viommu};

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
        // CAIG reports the granularity done: the one asked for, or 0.
        let caig = match descriptor::from_ccmd(v) {
            Some(d) => {
                let _ = self.execute(mem, d, None);
                (v >> 61) & 3
            }
            None => 0,
        };
        let nv = (v & !(1 << 63) & !(3 << 59)) | (caig << 59);
        self.regs.set64(regs::CCMD, nv);
    }

    fn iotlb_command<M: GuestMemory>(&mut self, mem: &M, v: u64) {
        // IAIG reports the granularity done: the one asked for, or 0.
        let iaig = match descriptor::from_iotlb_register(v, self.regs.get64(regs::IVA)) {
            Some(d) => {
                let _ = self.execute(mem, d, None);
                (v >> 60) & 3
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
