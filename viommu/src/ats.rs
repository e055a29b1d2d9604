//! A device's view of the unit as a [`vm_memory::Iommu`]: one requester (and
//! optionally one PASID) whose DMA, made through `vm_memory::IommuMemory`
//! (as virtio-queue does), is translated page by page by the shared
//! [`Viommu`], so every access goes through its caches, checker and faults.
//! The vm-memory IOTLB handed back is rebuilt for each call and holds only
//! that call's pages: the model, not this adapter, is the only cache.

use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::iommu::{Error as IommuError, IovaRange};
use vm_memory::{GuestAddress, GuestMemoryBackend, Iommu, Iotlb, Permissions};

use crate::{Access, DmaRequest, Viommu};

/// Most pages one `translate` call may span (16 MiB of 4-KiB pages): a
/// device-supplied length must not make one call loop for long.
pub const MAX_PAGES_PER_CALL: usize = 4096;

/// One requester's IOMMU: the shared unit, a handle on guest memory for the
/// table walks, and the per-call IOTLB.
pub struct RequesterIommu<M: GuestMemoryBackend> {
    viommu: Arc<Mutex<Viommu>>,
    mem: M,
    rid: u16,
    pasid: Option<u32>,
    privileged: bool,
    iotlb: Mutex<Iotlb>,
}

impl<M: GuestMemoryBackend> std::fmt::Debug for RequesterIommu<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequesterIommu")
            .field("rid", &format_args!("{:#06x}", self.rid))
            .field("pasid", &self.pasid)
            .field("privileged", &self.privileged)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemoryBackend> RequesterIommu<M> {
    /// A view for requester `rid` with `pasid` (None: requests without PASID).
    pub fn new(viommu: Arc<Mutex<Viommu>>, mem: M, rid: u16, pasid: Option<u32>) -> Self {
        RequesterIommu {
            viommu,
            mem,
            rid,
            pasid,
            privileged: false,
            iotlb: Mutex::new(Iotlb::new()),
        }
    }

    /// Makes later requests privileged (supervisor) ones.
    pub fn with_privileged(mut self, privileged: bool) -> Self {
        self.privileged = privileged;
        self
    }

    fn fail(iova: GuestAddress, length: usize, reason: String) -> IommuError {
        IommuError::CannotResolve {
            iova_range: IovaRange { base: iova, length },
            reason,
        }
    }
}

fn accesses(p: Permissions) -> &'static [Access] {
    match p {
        Permissions::No => &[],
        Permissions::Read => &[Access::Read],
        Permissions::Write => &[Access::Write],
        Permissions::ReadWrite => &[Access::Read, Access::Write],
    }
}

impl<M: GuestMemoryBackend + Send + Sync> Iommu for RequesterIommu<M> {
    type IotlbGuard<'a>
        = MutexGuard<'a, Iotlb>
    where
        Self: 'a;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<vm_memory::iommu::IotlbIterator<Self::IotlbGuard<'_>>, IommuError> {
        let len64 = u64::try_from(length)
            .map_err(|_| Self::fail(iova, length, "length too large".into()))?;
        let end = iova
            .0
            .checked_add(len64)
            .ok_or_else(|| Self::fail(iova, length, "range wraps".into()))?;
        let mut tlb = self
            .iotlb
            .lock()
            .map_err(|_| IommuError::IommuMisconfigured {
                reason: "IOTLB lock poisoned".into(),
            })?;
        tlb.invalidate_all();
        {
            let mut unit = self
                .viommu
                .lock()
                .map_err(|_| IommuError::IommuMisconfigured {
                    reason: "vIOMMU lock poisoned".into(),
                })?;
            let mut addr = iova.0;
            let mut pages = 0usize;
            while addr < end {
                pages += 1;
                if pages > MAX_PAGES_PER_CALL {
                    return Err(Self::fail(
                        iova,
                        length,
                        format!("more than {MAX_PAGES_PER_CALL} pages"),
                    ));
                }
                let mut chunk: Option<(u64, u64, bool)> = None;
                for acc in accesses(access) {
                    let req = DmaRequest {
                        rid: self.rid,
                        pasid: self.pasid,
                        addr,
                        access: *acc,
                        privileged: self.privileged,
                    };
                    let t = unit
                        .translate(&self.mem, &req)
                        .map_err(|e| Self::fail(GuestAddress(addr), length, e.to_string()))?;
                    let n = t.remaining_in_page().min(end - addr);
                    chunk = Some((t.addr, n, t.writable));
                }
                let Some((out, n, _)) = chunk else {
                    return Err(Self::fail(iova, length, "no access requested".into()));
                };
                let n_usize = usize::try_from(n)
                    .map_err(|_| Self::fail(iova, length, "page too large".into()))?;
                tlb.set_mapping(GuestAddress(addr), GuestAddress(out), n_usize, access)?;
                addr += n;
            }
        }
        Iotlb::lookup(tlb, iova, length, access).map_err(|fails| {
            Self::fail(
                iova,
                length,
                format!("unresolved after translation: {fails:?}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::fixture::ScalableUnit as Harness;
    use vm_memory::{Bytes, GuestMemory, GuestMemoryMmap, IommuMemory};

    #[test]
    fn dma_through_iommu_memory() {
        let mut h = Harness::new(Config::default());
        h.map_user(0x7000_0000, 0x30_0000, true);
        h.bind(1, false);
        let mem: GuestMemoryMmap<()> = h.mem.clone();
        let unit = Arc::new(Mutex::new(std::mem::replace(
            &mut h.unit,
            Viommu::new(Config::default()),
        )));
        let iommu = RequesterIommu::new(unit.clone(), mem.clone(), crate::fixture::RID, Some(1));
        let dma = IommuMemory::new(mem.clone(), iommu, true, ());
        dma.write_obj(0x1122_3344u32, GuestAddress(0x7000_0ffe))
            .unwrap_err();
        dma.write_obj(0x1122_3344u32, GuestAddress(0x7000_0010))
            .unwrap();
        let v: u32 = mem.read_obj(GuestAddress(0x30_0010)).unwrap();
        assert_eq!(v, 0x1122_3344);
        let back: u32 = dma.read_obj(GuestAddress(0x7000_0010)).unwrap();
        assert_eq!(back, v);
        assert!(unit.lock().unwrap().counters().translations >= 2);
        // Unmapped IOVA: the DMA fails and the unit records a fault.
        assert!(dma.read_obj::<u32>(GuestAddress(0x6000_0000)).is_err());
        assert!(!dma.check_range(GuestAddress(0x6000_0000), 4, Permissions::Read));
        assert!(unit.lock().unwrap().counters().faults >= 1);
    }

    #[test]
    fn reject_wrapping_and_huge_ranges() {
        let h = Harness::new(Config::default());
        let unit = Arc::new(Mutex::new(Viommu::new(Config::default())));
        let iommu = RequesterIommu::new(unit, h.mem.clone(), 0x20, None);
        assert!(
            iommu
                .translate(GuestAddress(u64::MAX - 1), 4, Permissions::Read)
                .is_err()
        );
        assert!(
            iommu
                .translate(GuestAddress(0), usize::MAX, Permissions::Read)
                .is_err()
        );
    }
}
