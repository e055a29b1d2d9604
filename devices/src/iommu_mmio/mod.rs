//! The vIOMMU's front end: its VT-d register block as an MMIO bus device,
//! and the device-facing port devices use to translate DMA and send page
//! requests through it.
//!
//! Both share one `Arc<Mutex<viommu::Viommu>>`. After every register write
//! the front end drains what the unit produced — MSIs (fault event, page
//! request event, invalidation wait), page group responses and device-TLB
//! invalidations — *after* releasing the unit's lock, then delivers the
//! MSIs to the [`InterruptSink`] and routes responses and invalidations to
//! the registered [`IommuEndpoint`]s by requester id. Lock order is always
//! device, then unit; the front end never holds the unit while it calls a
//! device, so a device may call back into the unit from those callbacks.

use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::GuestMemory;

use crate::bus::BusDevice;
use crate::dma::{
    DmaFault, DmaRequest, DmaTranslate, IommuEndpoint, PageRequest, PageRequestRefused,
    PageResponse, RequestKind, ResponseCode,
};
use crate::interrupt::{InterruptSink, MsiMessage};
use viommu::prq::PrqError;
use viommu::{Viommu, prq};

// The platform map declares these (one place for the whole map).
pub use crate::layout::{VIOMMU_MMIO_BASE, VIOMMU_MMIO_SIZE};
/// Most endpoints the front end routes to: one per device number on bus 0.
pub const MAX_ENDPOINTS: usize = 32;

/// Errors wiring the front end (VMM configuration errors).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrontEndError {
    /// Too many endpoints registered.
    #[error("more than {MAX_ENDPOINTS} IOMMU endpoints")]
    TooManyEndpoints,
    /// Two endpoints with one requester id.
    #[error("requester id {0:#06x} registered twice")]
    DuplicateRequester(u16),
}

/// What the front end counted, each where it happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrontEndCounters {
    /// Page group responses for a requester no endpoint has.
    pub dropped_responses: u64,
    /// Device-TLB invalidations for a requester no endpoint has.
    pub dropped_invalidations: u64,
}

/// A shared endpoint.
pub type SharedEndpoint = Arc<Mutex<dyn IommuEndpoint>>;

fn lock_unit(v: &Mutex<Viommu>) -> MutexGuard<'_, Viommu> {
    v.lock().unwrap_or_else(|p| p.into_inner())
}

fn deliver(sink: &dyn InterruptSink, msis: Vec<viommu::Msi>) {
    for m in msis {
        sink.raise_msi(MsiMessage {
            address: m.address,
            data: m.data,
        });
    }
}

/// The VT-d register block on the MMIO bus (insert at [`VIOMMU_MMIO_BASE`],
/// [`VIOMMU_MMIO_SIZE`]).
pub struct ViommuMmio<M> {
    viommu: Arc<Mutex<Viommu>>,
    mem: M,
    sink: Arc<dyn InterruptSink>,
    endpoints: Vec<(u16, SharedEndpoint)>,
    dropped_responses: u64,
    dropped_invalidations: u64,
}

impl<M> std::fmt::Debug for ViommuMmio<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rids: Vec<String> = self
            .endpoints
            .iter()
            .map(|(r, _)| format!("{r:#06x}"))
            .collect();
        f.debug_struct("ViommuMmio")
            .field("endpoints", &rids)
            .field("dropped_responses", &self.dropped_responses)
            .field("dropped_invalidations", &self.dropped_invalidations)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemory + Send> ViommuMmio<M> {
    /// A front end for `viommu` whose table walks and queues use `mem` and
    /// whose interrupts go to `sink`.
    pub fn new(viommu: Arc<Mutex<Viommu>>, mem: M, sink: Arc<dyn InterruptSink>) -> Self {
        Self {
            viommu,
            mem,
            sink,
            endpoints: Vec::new(),
            dropped_responses: 0,
            dropped_invalidations: 0,
        }
    }

    /// Registers a device to receive page group responses and device-TLB
    /// invalidations for its requester id.
    pub fn add_endpoint(&mut self, endpoint: SharedEndpoint) -> Result<(), FrontEndError> {
        let rid = endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requester_id();
        if self.endpoints.iter().any(|(r, _)| *r == rid) {
            return Err(FrontEndError::DuplicateRequester(rid));
        }
        if self.endpoints.len() >= MAX_ENDPOINTS {
            return Err(FrontEndError::TooManyEndpoints);
        }
        self.endpoints.push((rid, endpoint));
        Ok(())
    }

    /// Responses and invalidations that matched no endpoint (counted, then
    /// dropped: a device without ATS or PRI has nothing to do with them).
    pub fn counters(&self) -> FrontEndCounters {
        FrontEndCounters {
            dropped_responses: self.dropped_responses,
            dropped_invalidations: self.dropped_invalidations,
        }
    }

    fn endpoint(&self, rid: u16) -> Option<&SharedEndpoint> {
        self.endpoints
            .iter()
            .find(|(r, _)| *r == rid)
            .map(|(_, e)| e)
    }

    /// Delivers what the unit has queued: MSIs to the sink, responses and
    /// invalidations to endpoints. Called after every register write; the
    /// vmm may also call it after device activity outside register writes.
    pub fn drain(&mut self) {
        let (msis, responses, invalidations) = {
            let mut v = lock_unit(&self.viommu);
            (
                v.take_msis(),
                v.take_page_responses(),
                v.take_devtlb_invalidations(),
            )
        };
        deliver(&*self.sink, msis);
        for r in responses {
            let resp = PageResponse {
                rid: r.rid,
                pasid: r.pasid,
                prg_index: r.group_index,
                code: match r.code {
                    prq::code::SUCCESS => ResponseCode::Success,
                    prq::code::INVALID_REQUEST => ResponseCode::InvalidRequest,
                    // Reserved codes are treated as Response Failure.
                    _ => ResponseCode::Failure,
                },
            };
            match self.endpoint(r.rid) {
                Some(e) => e
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .page_response(&resp),
                None => self.dropped_responses += 1,
            }
        }
        for inv in invalidations {
            match self.endpoint(inv.sid) {
                Some(e) => e
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .devtlb_invalidate(&inv),
                None => self.dropped_invalidations += 1,
            }
        }
        // Endpoints may have faulted or sent page requests while handling
        // those: deliver the interrupts that caused.
        let msis = lock_unit(&self.viommu).take_msis();
        deliver(&*self.sink, msis);
    }
}

impl<M: GuestMemory + Send> BusDevice for ViommuMmio<M> {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        lock_unit(&self.viommu).mmio_read(offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        lock_unit(&self.viommu).mmio_write(&self.mem, offset, data);
        self.drain();
    }
}

/// The unit as devices see it: implements [`DmaTranslate`] and delivers the
/// interrupts a translation or page request raises (fault event, page
/// request event) at once.
pub struct ViommuPort {
    viommu: Arc<Mutex<Viommu>>,
    sink: Arc<dyn InterruptSink>,
}

impl std::fmt::Debug for ViommuPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViommuPort").finish_non_exhaustive()
    }
}

impl ViommuPort {
    /// A port on `viommu` delivering its interrupts to `sink`.
    pub fn new(viommu: Arc<Mutex<Viommu>>, sink: Arc<dyn InterruptSink>) -> Self {
        Self { viommu, sink }
    }
}

impl<M: GuestMemory + Send + Sync> DmaTranslate<M> for ViommuPort {
    fn translate(&self, mem: &M, req: &DmaRequest, kind: RequestKind) -> Result<u64, DmaFault> {
        let (res, msis) = {
            let mut v = lock_unit(&self.viommu);
            let res = match kind {
                RequestKind::Untranslated => v.translate(mem, req),
                RequestKind::AtsTranslation => v.translate_ats(mem, req),
            };
            (res, v.take_msis())
        };
        deliver(&*self.sink, msis);
        res.map(|t| t.addr).map_err(|f| DmaFault {
            addr: req.addr,
            reason: f.reason.code(),
        })
    }

    fn page_request(&self, mem: &M, req: &PageRequest) -> Result<(), PageRequestRefused> {
        let (res, msis) = {
            let mut v = lock_unit(&self.viommu);
            let res = v.page_request(mem, *req);
            (res, v.take_msis())
        };
        deliver(&*self.sink, msis);
        match res {
            // On overflow the unit answers a last-in-group request itself
            // (Success, so the device retries); that response arrives like
            // any other, so the device waits for it.
            Ok(()) | Err(PrqError::Overflow { .. }) => Ok(()),
            Err(_) => Err(PageRequestRefused { addr: req.addr }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
