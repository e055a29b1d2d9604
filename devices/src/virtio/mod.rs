//! virtio 1.x devices over the modern virtio-pci transport: the transport
//! ([`transport::VirtioPci`]), the devices (block, console, entropy) and the
//! memory their DMA goes through.
//!
//! A device implements [`VirtioDevice`]: its type, feature bits, config
//! space and what to do with one queue's available buffers. Queues are
//! `virtio_queue::Queue`s. DMA goes through a [`DmaSpace`]: straight guest
//! memory ([`DirectDma`]), or guest memory seen through the vIOMMU
//! ([`ViommuDma`], vm-memory's `IommuMemory` over the model's per-requester
//! `Iommu`), switched to straight access while the guest has translation off.

pub mod blk;
pub mod chain;
pub mod console;
pub mod rng;
pub mod transport;

use std::sync::{Arc, Mutex};

use virtio_queue::Queue;
use vm_memory::{GuestMemory, GuestMemoryBackend, GuestMemoryMmap, IommuMemory};

use crate::interrupt::{InterruptSink, MsiMessage};
use viommu::{RequesterIommu, Viommu};

/// Feature bit: virtio 1.x device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit: the device's DMA goes through the platform IOMMU (the
/// driver must use DMA addresses, not guest-physical ones).
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;
/// Feature bit: indirect descriptors.
pub const VIRTIO_F_RING_INDIRECT_DESC: u64 = 1 << 28;

/// Device type: block.
pub const TYPE_BLOCK: u32 = 2;
/// Device type: console.
pub const TYPE_CONSOLE: u32 = 3;
/// Device type: entropy source.
pub const TYPE_RNG: u32 = 4;

/// One virtio device behind the transport.
pub trait VirtioDevice: Send {
    /// The virtio device type (PCI device ID is 0x1040 + type).
    fn device_type(&self) -> u32;
    /// PCI class code (base << 16 | sub << 8 | interface).
    fn class_code(&self) -> u32;
    /// Device-specific feature bits (the transport adds VERSION_1,
    /// ACCESS_PLATFORM and INDIRECT_DESC).
    fn features(&self) -> u64;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device-specific config space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific config space (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Handles the available buffers of queue `index` (at most one pass over
    /// the ring). Returns whether used buffers were added (the transport
    /// then interrupts). An error means the queue's memory is unusable and
    /// the device needs a reset.
    fn process_queue<M: GuestMemory>(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, QueueError>;
    /// Device reset by the driver.
    fn reset(&mut self) {}
    /// The device's own counters, for the end-of-run report.
    fn device_counters(&self) -> DeviceCounters;
}

/// A virtio device's own counters, by device type: each device counts its
/// figures (and the guest actions it rejects) where they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum DeviceCounters {
    /// virtio-blk.
    Block(blk::BlockCounters),
    /// virtio-console.
    Console(console::ConsoleCounters),
    /// virtio-rng.
    Rng(rng::RngCounters),
}

impl DeviceCounters {
    /// The device kind as the report names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Block(_) => "block",
            Self::Console(_) => "console",
            Self::Rng(_) => "rng",
        }
    }

    /// Guest actions the device rejected.
    pub fn rejected_guest_actions(&self) -> u64 {
        match self {
            Self::Block(c) => c.rejected_guest_actions,
            Self::Console(c) => c.rejected_guest_actions,
            Self::Rng(c) => c.rejected_guest_actions,
        }
    }
}

/// Errors that stop a queue (the transport sets DEVICE_NEEDS_RESET).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Updating the used ring failed (e.g. it is not mapped in the IOMMU).
    #[error("used ring update failed: {0}")]
    UsedRing(virtio_queue::Error),
}

/// The address space a device's DMA goes through.
pub trait DmaSpace: Send {
    /// The memory type DMA uses.
    type Mem: GuestMemory + Send + Sync;
    /// The memory for the next batch of DMA (refreshed before each batch).
    fn memory(&mut self) -> &Self::Mem;
    /// Called after each batch: delivers interrupts the DMA caused (fault
    /// events).
    fn after_dma(&mut self) {}
}

/// DMA straight to guest memory (no IOMMU on the platform).
#[derive(Debug, Clone)]
pub struct DirectDma<B>(pub B);

impl<B: GuestMemoryBackend + Send + Sync> DmaSpace for DirectDma<B> {
    type Mem = B;
    fn memory(&mut self) -> &B {
        &self.0
    }
}

/// DMA through the vIOMMU for one requester (requests without PASID), over
/// the vmm's `GuestMemoryMmap`.
///
/// [`ViommuDma::direct`] builds one that never translates, so the vmm can use
/// a single device type whether or not the platform has a vIOMMU.
pub struct ViommuDma {
    mem: IommuMemory<GuestMemoryMmap, RequesterIommu<GuestMemoryMmap>>,
    viommu: Arc<Mutex<Viommu>>,
    /// `None` for [`ViommuDma::direct`].
    sink: Option<Arc<dyn InterruptSink>>,
}

impl std::fmt::Debug for ViommuDma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViommuDma")
            .field("iommu", self.mem.iommu())
            .finish_non_exhaustive()
    }
}

impl ViommuDma {
    /// DMA for requester `rid` on `mem` through `viommu`; fault-event MSIs
    /// raised by that DMA go to `sink`.
    pub fn new(
        mem: GuestMemoryMmap,
        viommu: Arc<Mutex<Viommu>>,
        rid: u16,
        sink: Arc<dyn InterruptSink>,
    ) -> Self {
        let iommu = RequesterIommu::new(viommu.clone(), mem.clone(), rid, None);
        Self {
            mem: IommuMemory::new(mem, iommu, true, ()),
            viommu,
            sink: Some(sink),
        }
    }

    /// DMA straight to `mem`, for a platform without a vIOMMU (`--viommu
    /// off`): the unit behind it is private and never enabled.
    pub fn direct(mem: GuestMemoryMmap) -> Self {
        let viommu = Arc::new(Mutex::new(Viommu::new(viommu::Config::default())));
        let iommu = RequesterIommu::new(viommu.clone(), mem.clone(), 0, None);
        Self {
            mem: IommuMemory::new(mem, iommu, false, ()),
            viommu,
            sink: None,
        }
    }
}

impl DmaSpace for ViommuDma {
    type Mem = IommuMemory<GuestMemoryMmap, RequesterIommu<GuestMemoryMmap>>;
    fn memory(&mut self) -> &Self::Mem {
        if self.sink.is_some() {
            let on = self
                .viommu
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .translation_enabled();
            self.mem.set_iommu_enabled(on);
        }
        &self.mem
    }
    fn after_dma(&mut self) {
        let Some(sink) = &self.sink else {
            return;
        };
        let msis = self
            .viommu
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_msis();
        for m in msis {
            sink.raise_msi(MsiMessage {
                address: m.address,
                data: m.data,
            });
        }
    }
}

#[cfg(test)]
mod tests;
