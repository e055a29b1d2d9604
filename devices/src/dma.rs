//! The device side of the vIOMMU: the requests a DMA-capable device makes
//! (translation, page requests) and the messages it receives back (page
//! group responses, device-TLB invalidations).
//!
//! Devices are written against [`DmaTranslate`] and [`IommuEndpoint`] so
//! that they can be tested with a small fake; `crate::iommu_mmio` provides
//! the implementation over `viommu::Viommu` and routes responses and
//! invalidations to endpoints by requester id.
//!
//! The requests themselves are the model's types ([`DmaRequest`],
//! [`Access`], [`PageRequest`], [`DevTlbInvalidation`]), re-exported here, so
//! a request a device builds is the request the unit translates. What is
//! device-side only is here: how a request is asked ([`RequestKind`]), the
//! fault as the device sees it, and the decoded page group response.

pub use viommu::{Access, DevTlbInvalidation, DmaRequest, PageRequest};

/// How the device asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// An ordinary (untranslated) memory request: faults are recorded by
    /// the IOMMU.
    Untranslated,
    /// An ATS translation request: the result goes to the device's ATC and
    /// a failure is reported to the device only (not recorded as a fault).
    AtsTranslation,
}

/// Why a translation failed, as the device sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DMA to {addr:#x} faulted (VT-d reason {reason:#x})")]
pub struct DmaFault {
    /// The faulting address.
    pub addr: u64,
    /// The VT-d fault reason code.
    pub reason: u8,
}

/// The IOMMU refused a page request (page requests disabled for the
/// device, queue full, ...); the device treats the access as faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("page request for {addr:#x} refused by the IOMMU")]
pub struct PageRequestRefused {
    /// The page the request was for.
    pub addr: u64,
}

/// The response code of a page group response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseCode {
    /// The pages are now mapped: retry.
    Success,
    /// The request was invalid: the access fails.
    InvalidRequest,
    /// Catastrophic failure: the device must stop sending page requests.
    Failure,
}

/// A page group response routed to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageResponse {
    /// Requester id it is for.
    pub rid: u16,
    /// PASID, if the response carries one.
    pub pasid: Option<u32>,
    /// Page request group index.
    pub prg_index: u16,
    /// The outcome.
    pub code: ResponseCode,
}

/// What a device needs from the IOMMU to do DMA: translation of one
/// address and page requests. `M` is the guest memory the IOMMU walks.
pub trait DmaTranslate<M>: Send + Sync {
    /// Translates `req.addr` to a guest-physical address, asked as `kind`.
    fn translate(&self, mem: &M, req: &DmaRequest, kind: RequestKind) -> Result<u64, DmaFault>;
    /// Queues a page request in the guest's page request queue.
    fn page_request(&self, mem: &M, req: &PageRequest) -> Result<(), PageRequestRefused>;
}

/// A device that receives what the IOMMU sends to devices. The vIOMMU front
/// end calls these after each register write, for the endpoint whose
/// requester id matches.
pub trait IommuEndpoint: Send {
    /// The endpoint's requester id.
    fn requester_id(&self) -> u16;
    /// A page group response for this endpoint.
    fn page_response(&mut self, resp: &PageResponse);
    /// A device-TLB invalidation for this endpoint.
    fn devtlb_invalidate(&mut self, inv: &DevTlbInvalidation);
}

/// DMA without an IOMMU: device addresses are guest-physical addresses, and
/// page requests have nowhere to go.
#[derive(Debug, Default)]
pub struct NoIommu;

impl<M: Send + Sync> DmaTranslate<M> for NoIommu {
    fn translate(&self, _mem: &M, req: &DmaRequest, _kind: RequestKind) -> Result<u64, DmaFault> {
        Ok(req.addr)
    }

    fn page_request(&self, _mem: &M, req: &PageRequest) -> Result<(), PageRequestRefused> {
        Err(PageRequestRefused { addr: req.addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_iommu_is_identity_and_refuses_page_requests() {
        let req = DmaRequest {
            rid: 0x20,
            pasid: None,
            addr: 0x1234_5000,
            access: Access::Read,
            privileged: false,
        };
        let t: &dyn DmaTranslate<()> = &NoIommu;
        assert_eq!(
            t.translate(&(), &req, RequestKind::Untranslated),
            Ok(0x1234_5000)
        );
        let pr = PageRequest {
            rid: 0x20,
            pasid: Some(1),
            addr: 0x5000,
            read: true,
            write: false,
            exec: false,
            privileged: false,
            last: true,
            group_index: 0,
            private_data: 0,
        };
        assert_eq!(
            t.page_request(&(), &pr),
            Err(PageRequestRefused { addr: 0x5000 })
        );
    }
}
