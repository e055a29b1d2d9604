//! The device side of the vIOMMU: the requests a DMA-capable device makes
//! (translation, page requests) and the messages it receives back (page
//! group responses, device-TLB invalidations).
//!
//! Devices are written against [`DmaTranslate`] and [`IommuEndpoint`] so
//! that they can be tested with a small fake; `crate::iommu_mmio` provides
//! the implementation over `viommu::Viommu` and routes responses and
//! invalidations to endpoints by requester id.

/// The access a DMA request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read.
    Read,
    /// Write.
    Write,
}

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

/// One device request for one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRequest {
    /// Requester id (bus << 8 | device << 3 | function).
    pub rid: u16,
    /// PASID, or `None` for a request without PASID (RID_PASID).
    pub pasid: Option<u32>,
    /// The I/O virtual address.
    pub addr: u64,
    /// Read or write.
    pub access: Access,
    /// Supervisor (privileged) request; only meaningful with a PASID.
    pub privileged: bool,
    /// Untranslated or ATS translation request.
    pub kind: RequestKind,
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

/// A page request (PCIe PRI) as the device sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Requester id.
    pub rid: u16,
    /// PASID, if the faulting request had one.
    pub pasid: Option<u32>,
    /// Page address (4 KiB aligned).
    pub addr: u64,
    /// Read access requested.
    pub read: bool,
    /// Write access requested.
    pub write: bool,
    /// Privileged mode requested.
    pub privileged: bool,
    /// Page request group index (9 bits).
    pub prg_index: u16,
    /// Last request in the group.
    pub last: bool,
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

/// A device-TLB (ATS) invalidation routed to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevTlbInvalidation {
    /// Requester id (source id) it is for.
    pub rid: u16,
    /// PASID, or `None` for an invalidation without PASID, which (as in the
    /// PCIe ATS specification) covers entries of every PASID.
    pub pasid: Option<u32>,
    /// First byte of the invalidated range.
    pub addr: u64,
    /// Size of the range in bytes (`u64::MAX` for everything).
    pub size: u64,
}

impl DevTlbInvalidation {
    /// Whether this invalidation covers the page at `page` of `pasid`.
    pub fn covers(&self, pasid: Option<u32>, page: u64) -> bool {
        let pasid_ok = self.pasid.is_none() || self.pasid == pasid;
        let end = self.addr.saturating_add(self.size);
        pasid_ok && page < end && page.saturating_add(4096) > self.addr
    }
}

/// What a device needs from the IOMMU to do DMA: translation of one
/// address and page requests. `M` is the guest memory the IOMMU walks.
pub trait DmaTranslate<M>: Send + Sync {
    /// Translates `req.addr` to a guest-physical address.
    fn translate(&self, mem: &M, req: &DmaRequest) -> Result<u64, DmaFault>;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devtlb_invalidation_ranges_and_pasids() {
        let inv = DevTlbInvalidation {
            rid: 1,
            pasid: Some(5),
            addr: 0x2000,
            size: 0x2000,
        };
        assert!(inv.covers(Some(5), 0x2000));
        assert!(inv.covers(Some(5), 0x3000));
        assert!(!inv.covers(Some(5), 0x4000));
        assert!(!inv.covers(Some(5), 0x1000));
        assert!(!inv.covers(Some(6), 0x2000));
        assert!(!inv.covers(None, 0x2000));
        let all = DevTlbInvalidation {
            rid: 1,
            pasid: None,
            addr: 0,
            size: u64::MAX,
        };
        assert!(all.covers(Some(9), !0xfff));
        assert!(all.covers(None, 0));
    }
}
