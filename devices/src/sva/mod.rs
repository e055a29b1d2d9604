//! The SVA DMA test device: a root-complex integrated endpoint that does DMA
//! on (process) virtual addresses through the vIOMMU, with a PASID, the way
//! Intel DSA and other SVA accelerators do, and that can also touch any
//! address on request (a buggy or malicious device).
//!
//! The register, descriptor and completion layouts are in
//! `docs/DEVICES.md`. The device has no thread: a doorbell (TAIL write)
//! processes up to [`BATCH_LIMIT`] descriptors synchronously; an operation
//! that sends a page request parks the ring until the vIOMMU front end
//! delivers the page group response through [`IommuEndpoint::page_response`],
//! which finishes the operation and resumes the ring.

pub mod atc;
pub mod descriptor;
pub mod engine;

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::dma::{
    Access, DevTlbInvalidation, DmaFault, DmaRequest, DmaTranslate, IommuEndpoint, PageRequest,
    PageResponse, RequestKind, ResponseCode,
};
use crate::interrupt::InterruptSink;
use crate::pci::PciDevice;
use crate::pci::capability::{
    self, ATS_CTRL_ENABLE, DEVCAP2_END_END_TLP_PREFIX, DEVCAP2_MAX_END_END_PREFIXES_1,
    PASID_CTRL_ENABLE, PASID_CTRL_PRIV, PCIE_TYPE_RC_INTEGRATED_ENDPOINT, PRI_CTRL_ENABLE,
    PRI_STATUS_RESPONSE_FAILURE, PRI_STATUS_UPRGI,
};
use crate::pci::config::{BarKind, ConfigError, PciConfig, PciIdentity};
use crate::pci::msi::Msi;
use crate::pci::msix::{Msix, MsixError};
use atc::Atc;
use descriptor::{
    CFLAG_PAGE_REQUESTED, CFLAG_RETRIED, COMPLETION_OFFSET, DESCRIPTOR_SIZE, MAX_TRANSFER, Op,
    OpError, STATUS_SUCCESS,
};
use engine::{Engine, Outcome, PAGE_SIZE};

/// PCI vendor ID (private to stalewalk, not PCI-SIG assigned).
pub const VENDOR_ID: u16 = 0x5357;
/// PCI device ID.
pub const DEVICE_ID: u16 = 0x5641;
/// Value of the ID register ("SVA1").
pub const ID_VALUE: u32 = 0x5356_4131;
/// Size of BAR0.
pub const BAR0_SIZE: u64 = 0x4000;
/// Largest ring (slots).
pub const MAX_RING_ENTRIES: u32 = 4096;
/// Descriptors processed per doorbell write: bounds the work one guest MMIO
/// write can cause (at most this many times [`MAX_TRANSFER`] bytes).
pub const BATCH_LIMIT: u32 = 64;
/// Page requests one operation may send (each for a different page): bounds
/// how long a guest that keeps answering "success" without mapping can keep
/// an operation alive.
pub const MAX_PAGE_REQUESTS_PER_OP: u32 = 16;
/// Outstanding page request capacity advertised in the PRI capability.
pub const PRI_CAPACITY: u32 = 16;
/// MSI-X vector for completions.
pub const VECTOR_COMPLETION: u16 = 0;
/// MSI-X vector for ring errors.
pub const VECTOR_ERROR: u16 = 1;
/// Offset of the MSI-X table in BAR0.
pub const MSIX_TABLE_OFFSET: u64 = 0x2000;
/// Offset of the MSI-X PBA in BAR0.
pub const MSIX_PBA_OFFSET: u64 = 0x3000;
/// PRG index space (9 bits).
const PRG_INDEXES: u16 = 512;

/// BAR0 register offsets.
pub mod regs {
    /// ID.
    pub const ID: u64 = 0x00;
    /// Max ring entries.
    pub const MAX_RING_ENTRIES: u64 = 0x04;
    /// Max transfer.
    pub const MAX_TRANSFER: u64 = 0x08;
    /// Batch limit.
    pub const BATCH_LIMIT: u64 = 0x0c;
    /// Ring base (u64).
    pub const RING_BASE: u64 = 0x10;
    /// Ring entries.
    pub const RING_ENTRIES: u64 = 0x18;
    /// Control.
    pub const CTRL: u64 = 0x1c;
    /// Head.
    pub const HEAD: u64 = 0x20;
    /// Tail (doorbell).
    pub const TAIL: u64 = 0x24;
    /// Status.
    pub const STATUS: u64 = 0x28;
    /// Error.
    pub const ERROR: u64 = 0x2c;
    /// First counter (u64 each, 8 of them).
    pub const COUNTERS: u64 = 0x30;
    /// CTRL: enable.
    pub const CTRL_ENABLE: u32 = 1;
    /// STATUS: enabled.
    pub const STATUS_ENABLED: u32 = 1;
    /// STATUS: waiting for a page group response.
    pub const STATUS_WAITING: u32 = 2;
    /// STATUS: halted by a ring error.
    pub const STATUS_HALTED: u32 = 4;
}

/// Ring-level errors (the ERROR register's value is derived from the
/// variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// RING_BASE/RING_ENTRIES invalid at enable.
    #[error("bad ring configuration: base {base:#x}, {entries} entries")]
    BadConfig {
        /// Ring base.
        base: u64,
        /// Entries.
        entries: u32,
    },
    /// TAIL beyond the ring.
    #[error("tail {0} beyond the ring")]
    BadTail(u32),
    /// Fetching a descriptor faulted or hit non-memory.
    #[error("descriptor fetch at {0:#x} failed")]
    Fetch(u64),
    /// Writing a completion faulted or hit non-memory.
    #[error("completion write at {0:#x} failed")]
    Completion(u64),
    /// Doorbell while bus mastering is off.
    #[error("doorbell with bus mastering disabled")]
    BusMasterOff,
}

impl RingError {
    /// The ERROR register code.
    pub fn code(&self) -> u32 {
        match self {
            Self::BadConfig { .. } => 1,
            Self::BadTail(_) => 2,
            Self::Fetch(_) => 3,
            Self::Completion(_) => 4,
            Self::BusMasterOff => 5,
        }
    }
}

/// Errors building the device (VMM configuration errors).
#[derive(Debug, thiserror::Error)]
pub enum SvaError {
    /// Config space layout failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// MSI-X setup failed.
    #[error(transparent)]
    Msix(#[from] MsixError),
    /// Device numbers are 1..32.
    #[error("invalid device number {0}")]
    DeviceNumber(u8),
}

/// Counters for the end-of-run report (also readable in BAR0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SvaCounters {
    /// Operations completed (any status).
    pub ops_completed: u64,
    /// Operations completed with an error status.
    pub ops_failed: u64,
    /// Page requests sent.
    pub page_requests: u64,
    /// Page group responses received.
    pub page_responses: u64,
    /// ATC entries currently held.
    pub atc_entries: u64,
    /// Device-TLB invalidations received.
    pub atc_invalidations: u64,
    /// ATC entries removed by invalidations.
    pub atc_removed: u64,
    /// Doorbells that did no work.
    pub doorbells_ignored: u64,
    /// Ring errors.
    pub ring_errors: u64,
    /// Page responses that matched no outstanding request.
    pub unexpected_responses: u64,
    /// Guest actions the device refused, each counted once where it is
    /// refused: ring errors, doorbells that did no work, unexpected page
    /// responses.
    pub rejected_guest_actions: u64,
}

#[derive(Clone, Copy, Debug)]
struct Waiting {
    slot: u32,
    op: Op,
    progress: u64,
    page: u64,
    fault: DmaFault,
    prg_index: u16,
    requests: u32,
    cflags: u16,
}

/// The SVA DMA test device.
pub struct SvaDevice<M> {
    config: PciConfig,
    msix: Msix,
    msi: Msi,
    pasid_cap: u16,
    ats_cap: u16,
    pri_cap: u16,
    rid: u16,
    mem: M,
    iommu: Arc<dyn DmaTranslate<M>>,
    sink: Arc<dyn InterruptSink>,
    ring_base: u64,
    ring_entries: u32,
    enabled: bool,
    head: u32,
    tail: u32,
    halted: bool,
    error: u32,
    waiting: Option<Waiting>,
    next_prg: u16,
    atc: Atc,
    counters: SvaCounters,
}

impl<M> std::fmt::Debug for SvaDevice<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvaDevice")
            .field("rid", &format_args!("{:#06x}", self.rid))
            .field("ring_base", &format_args!("{:#x}", self.ring_base))
            .field("ring_entries", &self.ring_entries)
            .field("head", &self.head)
            .field("tail", &self.tail)
            .field("waiting", &self.waiting.is_some())
            .field("counters", &self.counters)
            .finish()
    }
}

impl<M: GuestMemory + Send + Sync> SvaDevice<M> {
    /// A device at 00:`device_number`.0 doing DMA on `mem` through `iommu`
    /// and raising MSI-X through `sink`.
    pub fn new(
        device_number: u8,
        mem: M,
        iommu: Arc<dyn DmaTranslate<M>>,
        sink: Arc<dyn InterruptSink>,
    ) -> Result<Self, SvaError> {
        if device_number == 0 || device_number >= 32 {
            return Err(SvaError::DeviceNumber(device_number));
        }
        let mut config = PciConfig::new(PciIdentity {
            vendor_id: VENDOR_ID,
            device_id: DEVICE_ID,
            revision: 1,
            class_code: 0x08_80_00,
            subsystem_vendor_id: VENDOR_ID,
            subsystem_id: DEVICE_ID,
        });
        config.add_bar(0, BAR0_SIZE, BarKind::Memory32, false)?;
        capability::add_pcie(
            &mut config,
            PCIE_TYPE_RC_INTEGRATED_ENDPOINT,
            DEVCAP2_END_END_TLP_PREFIX | DEVCAP2_MAX_END_END_PREFIXES_1,
        )?;
        let table = u32::try_from(MSIX_TABLE_OFFSET).unwrap_or(0);
        let pba = u32::try_from(MSIX_PBA_OFFSET).unwrap_or(0);
        let msix = Msix::new(&mut config, 2, 0, table, 0, pba)?;
        let msi = Msi::new(&mut config)?;
        let pasid_cap = capability::add_pasid(&mut config, 20, true)?;
        let ats_cap = capability::add_ats(&mut config)?;
        let pri_cap = capability::add_pri(&mut config, PRI_CAPACITY)?;
        Ok(Self {
            config,
            msix,
            msi,
            pasid_cap,
            ats_cap,
            pri_cap,
            rid: u16::from(device_number) << 3,
            mem,
            iommu,
            sink,
            ring_base: 0,
            ring_entries: 0,
            enabled: false,
            head: 0,
            tail: 0,
            halted: false,
            error: 0,
            waiting: None,
            next_prg: 0,
            atc: Atc::default(),
            counters: SvaCounters::default(),
        })
    }

    /// The device's counters.
    pub fn counters(&self) -> SvaCounters {
        SvaCounters {
            atc_entries: self.atc.len() as u64,
            ..self.counters
        }
    }

    fn prefix(&self) -> String {
        format!("sva 00:{:02x}.0", self.rid >> 3)
    }

    fn pasid_ctrl(&self) -> u16 {
        self.config.read_u16(self.pasid_cap + 6)
    }

    fn ats_enabled(&self) -> bool {
        self.config.read_u16(self.ats_cap + 6) & ATS_CTRL_ENABLE != 0
    }

    fn pri_usable(&self) -> bool {
        let ctrl = self.config.read_u16(self.pri_cap + 4);
        let status = self.config.read_u16(self.pri_cap + 6);
        let alloc = self.config.read_u32(self.pri_cap + 12);
        ctrl & PRI_CTRL_ENABLE != 0 && status & PRI_STATUS_RESPONSE_FAILURE == 0 && alloc > 0
    }

    fn set_pri_status_bits(&mut self, bits: u16) {
        let st = self.config.read_u16(self.pri_cap + 6) | bits;
        self.config.set_u16(self.pri_cap + 6, st);
    }

    fn sync_pri(&mut self) {
        capability::pri_apply_reset(&mut self.config, self.pri_cap, self.waiting.is_some());
    }

    fn ring_error(&mut self, e: RingError, halt: bool) {
        log::debug!("{}: {e}", self.prefix());
        self.error = e.code();
        self.counters.ring_errors += 1;
        self.counters.rejected_guest_actions += 1;
        if halt {
            self.halted = true;
        }
        self.interrupt(VECTOR_ERROR);
    }

    /// Signals `vector` through MSI-X when it is enabled, else through the
    /// single MSI vector (shared by completion and error), else not at all.
    fn interrupt(&mut self, vector: u16) {
        if self.msix.enabled() {
            self.msix.notify(vector, &*self.sink);
        } else {
            self.msi.notify(&mut self.config, &*self.sink);
        }
    }

    fn slot_addr(&self, slot: u32) -> Option<u64> {
        self.ring_base
            .checked_add(u64::from(slot) * DESCRIPTOR_SIZE)
    }

    fn ring_request(&self, addr: u64, access: Access) -> DmaRequest {
        DmaRequest {
            rid: self.rid,
            pasid: None,
            addr,
            access,
            privileged: false,
        }
    }

    fn fetch(&self, addr: u64) -> Result<[u8; 64], RingError> {
        let gpa = self
            .iommu
            .translate(
                &self.mem,
                &self.ring_request(addr, Access::Read),
                RequestKind::Untranslated,
            )
            .map_err(|_| RingError::Fetch(addr))?;
        let mut raw = [0u8; 64];
        self.mem
            .read_slice(&mut raw, GuestAddress(gpa))
            .map_err(|_| RingError::Fetch(addr))?;
        Ok(raw)
    }

    fn write_completion(&self, slot: u32, record: [u8; 16]) -> Result<(), RingError> {
        let addr = self
            .slot_addr(slot)
            .and_then(|a| a.checked_add(COMPLETION_OFFSET))
            .ok_or(RingError::Completion(0))?;
        let gpa = self
            .iommu
            .translate(
                &self.mem,
                &self.ring_request(addr, Access::Write),
                RequestKind::Untranslated,
            )
            .map_err(|_| RingError::Completion(addr))?;
        // Everything but the status byte first, then the status byte, so a
        // polling driver never sees a status with a stale result.
        let status_gpa = GuestAddress(gpa);
        let rest = status_gpa
            .0
            .checked_add(1)
            .ok_or(RingError::Completion(addr))?;
        self.mem
            .write_slice(&record[1..], GuestAddress(rest))
            .map_err(|_| RingError::Completion(addr))?;
        self.mem
            .write_slice(&record[..1], status_gpa)
            .map_err(|_| RingError::Completion(addr))?;
        Ok(())
    }

    /// Writes the completion of `slot`, advances HEAD and interrupts.
    fn complete(&mut self, slot: u32, irq: bool, result: Result<(u64, u16), (OpError, u16)>) {
        let record = match result {
            Ok((value, flags)) => descriptor::completion(STATUS_SUCCESS, 0, flags, value),
            Err((e, flags)) => {
                log::debug!("{}: slot {slot}: {e}", self.prefix());
                self.counters.ops_failed += 1;
                descriptor::completion(e.status(), e.fault_reason(), flags, e.result())
            }
        };
        self.counters.ops_completed += 1;
        if let Err(e) = self.write_completion(slot, record) {
            self.ring_error(e, true);
            return;
        }
        self.head = (slot + 1) % self.ring_entries.max(1);
        if irq {
            self.interrupt(VECTOR_COMPLETION);
        }
    }

    fn engine_run(&mut self, op: &Op, progress: u64) -> Outcome {
        let ats = self.ats_enabled();
        let engine = Engine {
            mem: &self.mem,
            iommu: &*self.iommu,
            rid: self.rid,
        };
        engine.run(op, progress, &mut self.atc, ats)
    }

    /// Settles one run of an operation: completes it or parks it waiting
    /// for a page response.
    fn settle(
        &mut self,
        slot: u32,
        op: Op,
        outcome: Outcome,
        cflags: u16,
        last_page: Option<u64>,
        requests: u32,
    ) {
        match outcome {
            Outcome::Done { result, flags } => {
                let retried = if cflags & CFLAG_PAGE_REQUESTED != 0 {
                    CFLAG_RETRIED
                } else {
                    0
                };
                self.complete(slot, op.irq, Ok((result, flags | cflags | retried)));
            }
            Outcome::Failed(e) => self.complete(slot, op.irq, Err((e, cflags))),
            Outcome::Faulted {
                fault,
                access,
                progress,
            } => {
                let page = fault.addr & !(PAGE_SIZE - 1);
                if self.pri_usable()
                    && last_page != Some(page)
                    && requests < MAX_PAGE_REQUESTS_PER_OP
                {
                    let prg_index = self.next_prg;
                    let req = PageRequest {
                        rid: self.rid,
                        pasid: op.pasid,
                        addr: page,
                        read: access == Access::Read,
                        write: access == Access::Write,
                        exec: false,
                        privileged: op.privileged,
                        last: true,
                        group_index: prg_index,
                        private_data: 0,
                    };
                    match self.iommu.page_request(&self.mem, &req) {
                        Ok(()) => {
                            self.next_prg = (prg_index + 1) % PRG_INDEXES;
                            self.counters.page_requests += 1;
                            self.waiting = Some(Waiting {
                                slot,
                                op,
                                progress,
                                page,
                                fault,
                                prg_index,
                                requests: requests + 1,
                                cflags: cflags | CFLAG_PAGE_REQUESTED,
                            });
                            self.sync_pri();
                            return;
                        }
                        Err(e) => log::debug!("{}: {e}", self.prefix()),
                    }
                }
                self.complete(
                    slot,
                    op.irq,
                    Err((OpError::TranslationFault(fault), cflags)),
                );
            }
        }
    }

    /// Processes ring slots HEAD..TAIL, at most [`BATCH_LIMIT`].
    fn process(&mut self) {
        for _ in 0..BATCH_LIMIT {
            if !self.enabled || self.halted || self.waiting.is_some() || self.head == self.tail {
                return;
            }
            let slot = self.head;
            let Some(addr) = self.slot_addr(slot) else {
                self.ring_error(RingError::Fetch(self.ring_base), true);
                return;
            };
            let raw = match self.fetch(addr) {
                Ok(r) => r,
                Err(e) => {
                    self.ring_error(e, true);
                    return;
                }
            };
            match descriptor::parse(&raw).and_then(|op| self.check_enables(op)) {
                Ok(op) => {
                    let outcome = self.engine_run(&op, 0);
                    self.settle(slot, op, outcome, 0, None, 0);
                }
                Err(e) => self.complete(slot, descriptor::wants_irq(&raw), Err((e, 0))),
            }
        }
    }

    /// Checks the PASID and privileged-mode enables for `op`.
    fn check_enables(&self, op: Op) -> Result<Op, OpError> {
        let ctrl = self.pasid_ctrl();
        if op.pasid.is_some() && ctrl & PASID_CTRL_ENABLE == 0 {
            return Err(OpError::PasidDisabled);
        }
        if op.privileged && ctrl & PASID_CTRL_PRIV == 0 {
            return Err(OpError::PasidDisabled);
        }
        Ok(op)
    }

    fn counter(&self, index: u64) -> u64 {
        let c = self.counters();
        match index {
            0 => c.ops_completed,
            1 => c.ops_failed,
            2 => c.page_requests,
            3 => c.page_responses,
            4 => c.atc_entries,
            5 => c.atc_invalidations,
            6 => c.atc_removed,
            7 => c.doorbells_ignored,
            _ => 0,
        }
    }

    fn status(&self) -> u32 {
        let mut s = 0;
        if self.enabled {
            s |= regs::STATUS_ENABLED;
        }
        if self.waiting.is_some() {
            s |= regs::STATUS_WAITING;
        }
        if self.halted {
            s |= regs::STATUS_HALTED;
        }
        s
    }

    fn read32(&self, off: u64) -> u32 {
        match off {
            regs::ID => ID_VALUE,
            regs::MAX_RING_ENTRIES => MAX_RING_ENTRIES,
            regs::MAX_TRANSFER => u32::try_from(MAX_TRANSFER).unwrap_or(u32::MAX),
            regs::BATCH_LIMIT => BATCH_LIMIT,
            0x10 => low32(self.ring_base),
            0x14 => high32(self.ring_base),
            regs::RING_ENTRIES => self.ring_entries,
            regs::CTRL => u32::from(self.enabled),
            regs::HEAD => self.head,
            regs::TAIL => self.tail,
            regs::STATUS => self.status(),
            regs::ERROR => self.error,
            0x30..=0x6c => {
                let v = self.counter((off - regs::COUNTERS) / 8);
                if off % 8 == 0 { low32(v) } else { high32(v) }
            }
            _ => 0,
        }
    }

    fn write32(&mut self, off: u64, v: u32) {
        match off {
            0x10 if !self.enabled => {
                self.ring_base = (self.ring_base & !0xffff_ffff) | u64::from(v)
            }
            0x14 if !self.enabled => {
                self.ring_base = (self.ring_base & 0xffff_ffff) | (u64::from(v) << 32)
            }
            regs::RING_ENTRIES if !self.enabled => self.ring_entries = v,
            regs::CTRL => self.write_ctrl(v),
            regs::TAIL => self.doorbell(v),
            regs::ERROR => self.error = 0,
            _ => {}
        }
    }

    fn write_ctrl(&mut self, v: u32) {
        let enable = v & regs::CTRL_ENABLE != 0;
        if enable && !self.enabled {
            let entries = self.ring_entries;
            let size_ok = entries.is_power_of_two() && (2..=MAX_RING_ENTRIES).contains(&entries);
            let fits = self
                .ring_base
                .checked_add(u64::from(entries) * DESCRIPTOR_SIZE)
                .is_some();
            if !size_ok || !fits || self.ring_base % DESCRIPTOR_SIZE != 0 {
                self.ring_error(
                    RingError::BadConfig {
                        base: self.ring_base,
                        entries,
                    },
                    false,
                );
                return;
            }
            self.enabled = true;
            self.head = 0;
            self.tail = 0;
            self.halted = false;
        } else if !enable && self.enabled {
            self.enabled = false;
            self.halted = false;
            if self.waiting.take().is_some() {
                log::debug!(
                    "{}: disabled while waiting for a page response",
                    self.prefix()
                );
            }
            self.sync_pri();
        }
    }

    fn doorbell(&mut self, tail: u32) {
        if !self.enabled {
            self.counters.doorbells_ignored += 1;
            self.counters.rejected_guest_actions += 1;
            return;
        }
        if tail >= self.ring_entries {
            self.counters.doorbells_ignored += 1;
            self.ring_error(RingError::BadTail(tail), false);
            return;
        }
        if !self.config.bus_master() {
            self.counters.doorbells_ignored += 1;
            self.ring_error(RingError::BusMasterOff, false);
            return;
        }
        self.tail = tail;
        if self.halted || self.waiting.is_some() {
            self.counters.doorbells_ignored += 1;
            self.counters.rejected_guest_actions += 1;
            return;
        }
        self.process();
    }

    fn regs_read(&self, off: u64, data: &mut [u8]) {
        match data.len() {
            4 if off % 4 == 0 => data.copy_from_slice(&self.read32(off).to_le_bytes()),
            8 if off % 8 == 0 => {
                let v = u64::from(self.read32(off)) | (u64::from(self.read32(off + 4)) << 32);
                data.copy_from_slice(&v.to_le_bytes());
            }
            _ => data.fill(0),
        }
    }

    fn regs_write(&mut self, off: u64, data: &[u8]) {
        match data.len() {
            4 if off % 4 == 0 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.write32(off, u32::from_le_bytes(b));
            }
            8 if off % 8 == 0 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(data);
                let v = u64::from_le_bytes(b);
                self.write32(off, low32(v));
                self.write32(off + 4, high32(v));
            }
            _ => {}
        }
    }
}

fn low32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

fn high32(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

impl<M: GuestMemory + Send + Sync> PciDevice for SvaDevice<M> {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
        self.msix.config_written(&self.config, &*self.sink);
        self.msi.config_written(&mut self.config, &*self.sink);
        self.sync_pri();
    }
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != 0 {
            data.fill(0xff);
            return;
        }
        let table_end = MSIX_TABLE_OFFSET + self.msix.table_len();
        let pba_end = MSIX_PBA_OFFSET + self.msix.pba_len();
        match offset {
            0..0x1000 => self.regs_read(offset, data),
            o if (MSIX_TABLE_OFFSET..table_end).contains(&o) => {
                self.msix.table_read(o - MSIX_TABLE_OFFSET, data)
            }
            o if (MSIX_PBA_OFFSET..pba_end).contains(&o) => {
                self.msix.pba_read(o - MSIX_PBA_OFFSET, data)
            }
            _ => data.fill(0),
        }
    }
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != 0 {
            return;
        }
        let table_end = MSIX_TABLE_OFFSET + self.msix.table_len();
        match offset {
            0..0x1000 => self.regs_write(offset, data),
            o if (MSIX_TABLE_OFFSET..table_end).contains(&o) => {
                self.msix
                    .table_write(o - MSIX_TABLE_OFFSET, data, &*self.sink)
            }
            _ => {}
        }
    }
}

impl<M: GuestMemory + Send + Sync> IommuEndpoint for SvaDevice<M> {
    fn requester_id(&self) -> u16 {
        self.rid
    }

    fn page_response(&mut self, resp: &PageResponse) {
        if resp.rid != self.rid {
            return;
        }
        self.counters.page_responses += 1;
        let matches = |w: &Waiting| {
            w.prg_index == resp.prg_index && (resp.pasid.is_none() || resp.pasid == w.op.pasid)
        };
        let Some(w) = self.waiting.filter(matches) else {
            log::debug!(
                "{}: unexpected page response for group {}",
                self.prefix(),
                resp.prg_index
            );
            self.counters.unexpected_responses += 1;
            self.counters.rejected_guest_actions += 1;
            self.set_pri_status_bits(PRI_STATUS_UPRGI);
            return;
        };
        self.waiting = None;
        match resp.code {
            ResponseCode::Success => {
                let outcome = self.engine_run(&w.op, w.progress);
                self.settle(w.slot, w.op, outcome, w.cflags, Some(w.page), w.requests);
            }
            ResponseCode::InvalidRequest => {
                self.complete(
                    w.slot,
                    w.op.irq,
                    Err((OpError::TranslationFault(w.fault), w.cflags)),
                );
            }
            ResponseCode::Failure => {
                self.set_pri_status_bits(PRI_STATUS_RESPONSE_FAILURE);
                self.complete(
                    w.slot,
                    w.op.irq,
                    Err((OpError::PageResponseFailure { addr: w.page }, w.cflags)),
                );
            }
        }
        self.sync_pri();
        if self.config.bus_master() {
            self.process();
        }
    }

    fn devtlb_invalidate(&mut self, inv: &DevTlbInvalidation) {
        if inv.sid != self.rid {
            return;
        }
        self.counters.atc_invalidations += 1;
        self.counters.atc_removed += self.atc.invalidate(inv) as u64;
    }
}

#[cfg(test)]
mod tests;
