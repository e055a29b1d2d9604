//! The virtio-pci modern transport (virtio 1.x, section 4.1): a PCI function
//! whose BAR0 holds the common configuration, the notification area, the
//! ISR byte and the device configuration, each announced by a vendor-specific
//! capability, plus MSI-X (one vector per queue and one for configuration
//! changes). There is no legacy interface and no INTx.
//!
//! BAR0 (32-bit, 32 KiB): common cfg 0x0000, ISR 0x1000, device cfg 0x2000,
//! notify 0x3000 (4 bytes per queue), MSI-X table 0x4000, PBA 0x5000.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};

use super::{
    DeviceCounters, DmaSpace, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_RING_INDIRECT_DESC,
    VIRTIO_F_VERSION_1, VirtioDevice,
};
use crate::interrupt::InterruptSink;
use crate::pci::PciDevice;
use crate::pci::config::{BarKind, ConfigError, PciConfig, PciIdentity};
use crate::pci::msix::{Msix, MsixError};

/// PCI vendor ID of virtio devices.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Modern device IDs are this plus the device type.
pub const VIRTIO_DEVICE_BASE: u16 = 0x1040;
/// BAR0 size.
pub const BAR0_SIZE: u64 = 0x8000;
/// Common configuration offset in BAR0.
pub const COMMON_OFFSET: u64 = 0x0000;
/// Common configuration length.
pub const COMMON_LEN: u64 = COMMON_BYTES as u64;
const COMMON_BYTES: usize = 0x38;
/// ISR offset.
pub const ISR_OFFSET: u64 = 0x1000;
/// Device configuration offset.
pub const DEVICE_OFFSET: u64 = 0x2000;
/// Device configuration window length.
pub const DEVICE_LEN: u64 = 0x1000;
/// Notification area offset.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Notify offset multiplier (bytes per queue).
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// MSI-X table offset.
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
/// MSI-X PBA offset.
pub const MSIX_PBA_OFFSET: u64 = 0x5000;
/// "No vector".
pub const NO_VECTOR: u16 = 0xffff;
/// Most queues a device may have (bounds the notify area and vectors).
pub const MAX_QUEUES: usize = 64;

/// Device status: acknowledged.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status: driver loaded.
pub const STATUS_DRIVER: u8 = 2;
/// Device status: driver ready.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status: features negotiated.
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status: device needs reset.
pub const STATUS_NEEDS_RESET: u8 = 0x40;
/// Device status: driver gave up.
pub const STATUS_FAILED: u8 = 0x80;

const CAP_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;

/// Errors building the transport (VMM configuration errors).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Config space layout failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// MSI-X setup failed.
    #[error(transparent)]
    Msix(#[from] MsixError),
    /// Bad queue count or size.
    #[error("device declares {0} queues or an invalid queue size")]
    Queues(usize),
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransportCounters {
    /// Queue notifications handled.
    pub notifications: u64,
    /// Interrupts raised (or left pending by masking).
    pub interrupts: u64,
    /// Times the device entered DEVICE_NEEDS_RESET.
    pub needs_reset: u64,
}

/// A virtio device's counters as the end-of-run report shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VirtioMetrics {
    /// Which device (`"block"`, `"console"`, `"rng"`).
    pub kind: &'static str,
    /// The transport's counters.
    pub transport: TransportCounters,
    /// The device's own counters.
    pub device_counters: DeviceCounters,
}

impl VirtioMetrics {
    /// Guest actions the transport and the device rejected (a queue the
    /// device had to stop with DEVICE_NEEDS_RESET counts once).
    pub fn rejected_guest_actions(&self) -> u64 {
        self.transport.needs_reset + self.device_counters.rejected_guest_actions()
    }
}

/// A virtio device on PCI.
pub struct VirtioPci<D, S> {
    config: PciConfig,
    msix: Msix,
    device: D,
    dma: S,
    sink: Arc<dyn InterruptSink>,
    queues: Vec<Queue>,
    queue_vectors: Vec<u16>,
    config_vector: u16,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    isr: u8,
    counters: TransportCounters,
}

impl<D, S> std::fmt::Debug for VirtioPci<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPci")
            .field("config", &self.config)
            .field("status", &self.status)
            .field(
                "driver_features",
                &format_args!("{:#x}", self.driver_features),
            )
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn vendor_cap(cfg_type: u8, offset: u64, length: u64, extra: Option<u32>) -> Vec<u8> {
    let len: u8 = if extra.is_some() { 20 } else { 16 };
    let mut c = vec![0u8; usize::from(len)];
    c[2] = len;
    c[3] = cfg_type;
    c[4] = 0; // BAR0
    c[8..12].copy_from_slice(&u32::try_from(offset).unwrap_or(0).to_le_bytes());
    c[12..16].copy_from_slice(&u32::try_from(length).unwrap_or(0).to_le_bytes());
    if let Some(x) = extra {
        c[16..20].copy_from_slice(&x.to_le_bytes());
    }
    c
}

impl<D: VirtioDevice, S: DmaSpace> VirtioPci<D, S> {
    /// Wraps `device`; its DMA goes through `dma`, its interrupts to `sink`.
    pub fn new(device: D, dma: S, sink: Arc<dyn InterruptSink>) -> Result<Self, TransportError> {
        let sizes = device.queue_max_sizes().to_vec();
        if sizes.is_empty() || sizes.len() > MAX_QUEUES {
            return Err(TransportError::Queues(sizes.len()));
        }
        let mut queues = Vec::with_capacity(sizes.len());
        for &s in &sizes {
            queues.push(Queue::new(s).map_err(|_| TransportError::Queues(sizes.len()))?);
        }
        let ty = u16::try_from(device.device_type()).unwrap_or(0);
        let mut config = PciConfig::new(PciIdentity {
            vendor_id: VIRTIO_VENDOR,
            device_id: VIRTIO_DEVICE_BASE + ty,
            revision: 1,
            class_code: device.class_code(),
            subsystem_vendor_id: VIRTIO_VENDOR,
            subsystem_id: 0x40,
        });
        config.add_bar(0, BAR0_SIZE, BarKind::Memory32, false)?;
        let notify_len = NOTIFY_MULTIPLIER as u64 * sizes.len() as u64;
        for cap in [
            vendor_cap(CFG_COMMON, COMMON_OFFSET, COMMON_LEN, None),
            vendor_cap(
                CFG_NOTIFY,
                NOTIFY_OFFSET,
                notify_len,
                Some(NOTIFY_MULTIPLIER),
            ),
            vendor_cap(CFG_ISR, ISR_OFFSET, 4, None),
            vendor_cap(CFG_DEVICE, DEVICE_OFFSET, DEVICE_LEN, None),
        ] {
            config.add_capability(CAP_VENDOR, &cap, &[], &[])?;
        }
        let vectors = u16::try_from(sizes.len() + 1).unwrap_or(1);
        let table = u32::try_from(MSIX_TABLE_OFFSET).unwrap_or(0);
        let pba = u32::try_from(MSIX_PBA_OFFSET).unwrap_or(0);
        let msix = Msix::new(&mut config, vectors, 0, table, 0, pba)?;
        Ok(Self {
            config,
            msix,
            device,
            dma,
            sink,
            queue_vectors: vec![NO_VECTOR; queues.len()],
            queues,
            config_vector: NO_VECTOR,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            isr: 0,
            counters: TransportCounters::default(),
        })
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (e.g. to feed console input before [`Self::kick`]).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Transport counters.
    pub fn counters(&self) -> TransportCounters {
        self.counters
    }

    /// The transport's and the device's counters.
    pub fn metrics(&self) -> VirtioMetrics {
        let device_counters = self.device.device_counters();
        VirtioMetrics {
            kind: device_counters.kind(),
            transport: self.counters,
            device_counters,
        }
    }

    /// The device status byte.
    pub fn status(&self) -> u8 {
        self.status
    }

    fn offered(&self) -> u64 {
        self.device.features()
            | VIRTIO_F_VERSION_1
            | VIRTIO_F_ACCESS_PLATFORM
            | VIRTIO_F_RING_INDIRECT_DESC
    }

    fn selected(&self) -> Option<usize> {
        let q = usize::from(self.queue_select);
        (q < self.queues.len()).then_some(q)
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.queue_vectors.fill(NO_VECTOR);
        self.config_vector = NO_VECTOR;
        self.driver_features = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.queue_select = 0;
        self.isr = 0;
        self.status = 0;
    }

    fn interrupt(&mut self, vector: u16, isr_bit: u8) {
        self.isr |= isr_bit;
        self.counters.interrupts += 1;
        if self.msix.enabled() && vector != NO_VECTOR {
            self.msix.notify(vector, &*self.sink);
        }
    }

    /// Processes queue `index` as if the driver had notified it (for device
    /// input arriving from the host side). Does nothing unless the driver
    /// has set DRIVER_OK and the queue is enabled.
    pub fn kick(&mut self, index: usize) {
        let ok = self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_NEEDS_RESET == 0;
        if !ok || index >= self.queues.len() || !self.queues[index].ready() {
            return;
        }
        let result = {
            let Self {
                device,
                dma,
                queues,
                ..
            } = self;
            let mem = dma.memory();
            device.process_queue(index, &mut queues[index], mem)
        };
        self.dma.after_dma();
        match result {
            Ok(true) => self.interrupt(self.queue_vectors[index], 1),
            Ok(false) => {}
            Err(e) => {
                log::debug!(
                    "virtio {:#06x}: queue {index}: {e}",
                    self.config.read_u16(2)
                );
                self.counters.needs_reset += 1;
                self.status |= STATUS_NEEDS_RESET;
                self.interrupt(self.config_vector, 2);
            }
        }
    }

    fn common_image(&self) -> [u8; COMMON_BYTES] {
        let mut c = [0u8; COMMON_BYTES];
        let put = |c: &mut [u8], off: usize, v: &[u8]| c[off..off + v.len()].copy_from_slice(v);
        put(&mut c, 0x00, &self.device_feature_select.to_le_bytes());
        let feat = match self.device_feature_select {
            0 => self.offered() & 0xffff_ffff,
            1 => self.offered() >> 32,
            _ => 0,
        };
        put(
            &mut c,
            0x04,
            &u32::try_from(feat).unwrap_or(0).to_le_bytes(),
        );
        put(&mut c, 0x08, &self.driver_feature_select.to_le_bytes());
        let dfeat = match self.driver_feature_select {
            0 => self.driver_features & 0xffff_ffff,
            1 => self.driver_features >> 32,
            _ => 0,
        };
        put(
            &mut c,
            0x0c,
            &u32::try_from(dfeat).unwrap_or(0).to_le_bytes(),
        );
        put(&mut c, 0x10, &self.config_vector.to_le_bytes());
        put(
            &mut c,
            0x12,
            &u16::try_from(self.queues.len()).unwrap_or(0).to_le_bytes(),
        );
        c[0x14] = self.status;
        c[0x15] = 0;
        put(&mut c, 0x16, &self.queue_select.to_le_bytes());
        if let Some(q) = self.selected() {
            let queue = &self.queues[q];
            put(&mut c, 0x18, &queue.size().to_le_bytes());
            put(&mut c, 0x1a, &self.queue_vectors[q].to_le_bytes());
            put(&mut c, 0x1c, &u16::from(queue.ready()).to_le_bytes());
            put(&mut c, 0x1e, &u16::try_from(q).unwrap_or(0).to_le_bytes());
            put(&mut c, 0x20, &queue.desc_table().to_le_bytes());
            put(&mut c, 0x28, &queue.avail_ring().to_le_bytes());
            put(&mut c, 0x30, &queue.used_ring().to_le_bytes());
        }
        c
    }

    fn common_read(&self, off: u64, data: &mut [u8]) {
        let img = self.common_image();
        let start = usize::try_from(off).unwrap_or(usize::MAX);
        match start.checked_add(data.len()).filter(|&e| e <= img.len()) {
            Some(end) => data.copy_from_slice(&img[start..end]),
            None => data.fill(0),
        }
    }

    fn write_status(&mut self, v: u8) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v;
        if v & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            let ok = self.driver_features & !self.offered() == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                v &= !STATUS_FEATURES_OK;
            }
        }
        // NEEDS_RESET is the device's to set.
        self.status = (v & !STATUS_NEEDS_RESET) | (self.status & STATUS_NEEDS_RESET);
    }

    fn common_write(&mut self, off: u64, data: &[u8]) {
        let mut b = [0u8; 8];
        let n = data.len().min(8);
        b[..n].copy_from_slice(&data[..n]);
        let v = u64::from_le_bytes(b);
        let v32 = u32::try_from(v & 0xffff_ffff).unwrap_or(0);
        let v16 = u16::try_from(v & 0xffff).unwrap_or(0);
        let features_open = self.status & STATUS_FEATURES_OK == 0;
        match (off, data.len()) {
            (0x00, 4) => self.device_feature_select = v32,
            (0x08, 4) => self.driver_feature_select = v32,
            (0x0c, 4) if features_open => match self.driver_feature_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v32),
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(v32) << 32)
                }
                _ => {}
            },
            (0x10, 2) => self.config_vector = self.valid_vector(v16),
            (0x14, 1) => self.write_status(data[0]),
            (0x16, 2) => self.queue_select = v16,
            _ => self.queue_write(off, data.len(), v),
        }
    }

    fn valid_vector(&self, v: u16) -> u16 {
        if u64::from(v) < self.msix.table_len() / 16 {
            v
        } else {
            NO_VECTOR
        }
    }

    fn queue_write(&mut self, off: u64, len: usize, v: u64) {
        let Some(q) = self.selected() else {
            return;
        };
        let v16 = u16::try_from(v & 0xffff).unwrap_or(0);
        let lo = Some(u32::try_from(v & 0xffff_ffff).unwrap_or(0));
        let hi = Some(u32::try_from(v >> 32).unwrap_or(0));
        if off == 0x1a && len == 2 {
            self.queue_vectors[q] = self.valid_vector(v16);
            return;
        }
        let queue = &mut self.queues[q];
        // A queue's layout is fixed once it is enabled.
        if queue.ready() {
            return;
        }
        match (off, len) {
            (0x18, 2) => queue.set_size(v16),
            (0x1c, 2) => queue.set_ready(v16 == 1),
            (0x20, 4) => queue.set_desc_table_address(lo, None),
            (0x24, 4) => queue.set_desc_table_address(None, lo),
            (0x20, 8) => queue.set_desc_table_address(lo, hi),
            (0x28, 4) => queue.set_avail_ring_address(lo, None),
            (0x2c, 4) => queue.set_avail_ring_address(None, lo),
            (0x28, 8) => queue.set_avail_ring_address(lo, hi),
            (0x30, 4) => queue.set_used_ring_address(lo, None),
            (0x34, 4) => queue.set_used_ring_address(None, lo),
            (0x30, 8) => queue.set_used_ring_address(lo, hi),
            _ => {}
        }
    }
}

impl<D: VirtioDevice, S: DmaSpace> PciDevice for VirtioPci<D, S> {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
        self.msix.config_written(&self.config, &*self.sink);
    }
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != 0 {
            data.fill(0xff);
            return;
        }
        let len = data.len() as u64;
        let inside =
            |start: u64, size: u64| offset >= start && offset.saturating_add(len) <= start + size;
        if inside(COMMON_OFFSET, COMMON_LEN) {
            self.common_read(offset - COMMON_OFFSET, data);
        } else if inside(ISR_OFFSET, 4) {
            data.fill(0);
            data[0] = if offset == ISR_OFFSET {
                std::mem::take(&mut self.isr)
            } else {
                0
            };
        } else if inside(DEVICE_OFFSET, DEVICE_LEN) {
            self.device.read_config(offset - DEVICE_OFFSET, data);
        } else if inside(MSIX_TABLE_OFFSET, self.msix.table_len()) {
            self.msix.table_read(offset - MSIX_TABLE_OFFSET, data);
        } else if inside(MSIX_PBA_OFFSET, self.msix.pba_len()) {
            self.msix.pba_read(offset - MSIX_PBA_OFFSET, data);
        } else {
            data.fill(0);
        }
    }
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != 0 {
            return;
        }
        let len = data.len() as u64;
        let inside =
            |start: u64, size: u64| offset >= start && offset.saturating_add(len) <= start + size;
        let notify_len = u64::from(NOTIFY_MULTIPLIER) * self.queues.len() as u64;
        if inside(COMMON_OFFSET, COMMON_LEN) {
            self.common_write(offset - COMMON_OFFSET, data);
        } else if inside(DEVICE_OFFSET, DEVICE_LEN) {
            self.device.write_config(offset - DEVICE_OFFSET, data);
        } else if inside(NOTIFY_OFFSET, notify_len) {
            let q = usize::try_from((offset - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER))
                .unwrap_or(usize::MAX);
            self.counters.notifications += 1;
            self.kick(q);
        } else if inside(MSIX_TABLE_OFFSET, self.msix.table_len()) {
            self.msix
                .table_write(offset - MSIX_TABLE_OFFSET, data, &*self.sink);
        }
    }
}
