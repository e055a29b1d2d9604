//! The platform's devices wired together without KVM: the one builder the
//! vmm and the fuzz harness share, so the fuzzers test the platform that
//! ships.
//!
//! [`build`] places every device at its address in [`crate::layout`] on a
//! port bus and an MMIO bus: COM1, the i8042, the debug-exit port, the PCIe
//! root (host bridge, ECAM, the 0xcf8 ports, the BAR window), the optional
//! virtio devices and SVA devices, the vIOMMU's register block with every
//! SVA device attached as an endpoint, the page-table-freed hint port and
//! the ACPI power-management port. Interrupts go to the
//! [`InterruptSink`] the caller passes (the vmm's KVM sink, a counting sink
//! in the fuzzers); vIOMMU events go to the caller's event sink.
//!
//! What is not here is the caller's: guest memory, KVM, ACPI tables, the
//! COM1 interrupt's wiring (the caller builds the [`Serial`] with its
//! trigger and output).

use std::sync::{Arc, Mutex};

use viommu::Viommu;
use vm_memory::GuestMemoryMmap;

use crate::acpi_pm::AcpiPm;
use crate::bus::Bus;
use crate::dma::{DmaTranslate, NoIommu};
use crate::hint::{HintCounters, HintPort};
use crate::interrupt::InterruptSink;
use crate::iommu_mmio::{ViommuMmio, ViommuPort};
use crate::layout::{
    ACPI_PM_LEN, BAR_WINDOW_BASE, BAR_WINDOW_SIZE, COM1_LEN, COM1_PORT, CONFIG_IO_LEN,
    CONFIG_IO_PORT, DEBUG_EXIT_LEN, DEBUG_EXIT_PORT, ECAM_BASE, ECAM_SIZE, HINT_LEN, HINT_PORT,
    I8042_DATA_PORT, I8042_LEN, MAX_SVA_DEVICES, SLEEP_CONTROL_PORT, SVA_FIRST_DEVICE,
    VIOMMU_MMIO_BASE, VIOMMU_MMIO_SIZE, VIRTIO_BLK_DEVICE, VIRTIO_CONSOLE_DEVICE,
    VIRTIO_RNG_DEVICE,
};
use crate::legacy::ShutdownSignal;
use crate::legacy::debug_exit::DebugExit;
use crate::legacy::i8042::I8042;
use crate::legacy::serial::Serial;
use crate::pci::root::{PciBarWindow, PciConfigIo, PciEcam, PciRoot};
use crate::sva::{SvaCounters, SvaDevice};
use crate::virtio::blk::Block;
use crate::virtio::console::Console;
use crate::virtio::rng::Rng;
use crate::virtio::transport::{VirtioMetrics, VirtioPci};
use crate::virtio::{ViommuDma, VirtioDevice};

/// Errors wiring the platform (configuration errors, never guest-caused).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Placing a device on a bus.
    #[error("cannot place a device: {0}")]
    Bus(#[from] crate::bus::BusError),
    /// Adding a PCI device.
    #[error("cannot add a PCI device: {0}")]
    Pci(#[from] crate::pci::root::RootError),
    /// Creating an SVA device.
    #[error("cannot create SVA device {number}: {source}")]
    Sva {
        /// Its device number.
        number: u8,
        /// Why.
        source: crate::sva::SvaError,
    },
    /// Registering an endpoint with the vIOMMU front end.
    #[error("cannot attach a device to the vIOMMU: {0}")]
    Endpoint(#[from] crate::iommu_mmio::FrontEndError),
    /// The vIOMMU configuration is invalid.
    #[error("vIOMMU configuration: {0}")]
    Viommu(#[from] viommu::config::ConfigError),
    /// Creating a virtio transport.
    #[error("cannot create virtio device: {0}")]
    Virtio(#[from] crate::virtio::transport::TransportError),
    /// Too many SVA devices.
    #[error("--sva-dev {0}: at most {MAX_SVA_DEVICES} SVA devices fit on bus 0")]
    TooManySva(u8),
}

/// What goes on the platform: the device models the caller made (each may
/// be left out) and where the platform's events go.
pub struct PlatformDevices {
    /// The vIOMMU's configuration, or `None` for a platform without one.
    pub viommu: Option<viommu::Config>,
    /// Receives every vIOMMU event (the vmm's report and trace writer).
    pub events: Option<Box<dyn viommu::EventSink>>,
    /// Number of SVA DMA test devices, from [`SVA_FIRST_DEVICE`] on.
    pub sva_devices: u8,
    /// COM1, with its interrupt trigger and output.
    pub serial: Serial,
    /// virtio-console at [`VIRTIO_CONSOLE_DEVICE`].
    pub virtio_console: Option<Console>,
    /// virtio-blk at [`VIRTIO_BLK_DEVICE`].
    pub virtio_blk: Option<Block>,
    /// virtio-rng at [`VIRTIO_RNG_DEVICE`].
    pub virtio_rng: Option<Rng>,
}

impl std::fmt::Debug for PlatformDevices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformDevices")
            .field("viommu", &self.viommu)
            .field("events", &self.events.is_some())
            .field("sva_devices", &self.sva_devices)
            .field("virtio_console", &self.virtio_console.is_some())
            .field("virtio_blk", &self.virtio_blk.is_some())
            .field("virtio_rng", &self.virtio_rng.is_some())
            .finish_non_exhaustive()
    }
}

/// The two buses the devices sit on (the caller's vCPUs dispatch to them).
#[derive(Debug, Default)]
pub struct Buses {
    /// Port I/O.
    pub pio: Bus,
    /// MMIO.
    pub mmio: Bus,
}

/// One SVA device and where it sits.
#[derive(Debug)]
pub struct SvaSlot {
    /// PCI device number on bus 0.
    pub number: u8,
    /// The device.
    pub device: Arc<Mutex<SvaDevice<GuestMemoryMmap>>>,
}

impl SvaSlot {
    /// The device's counters.
    pub fn counters(&self) -> SvaCounters {
        self.device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counters()
    }
}

/// One virtio device and how to read its counters.
pub struct VirtioSlot {
    number: u8,
    metrics: Box<dyn Fn() -> VirtioMetrics + Send + Sync>,
}

impl std::fmt::Debug for VirtioSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioSlot")
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

impl VirtioSlot {
    fn new<D: VirtioDevice + 'static>(
        number: u8,
        dev: Arc<Mutex<VirtioPci<D, ViommuDma>>>,
    ) -> Self {
        Self {
            number,
            metrics: Box::new(move || dev.lock().unwrap_or_else(|p| p.into_inner()).metrics()),
        }
    }

    /// Its PCI device number on bus 0.
    pub fn number(&self) -> u8 {
        self.number
    }

    /// The device's counters now.
    pub fn metrics(&self) -> VirtioMetrics {
        (self.metrics)()
    }
}

/// The wired platform: what the caller reads afterwards (report, trace,
/// fuzz targets).
#[derive(Debug)]
pub struct Platform {
    /// The vIOMMU, when there is one.
    pub viommu: Option<Arc<Mutex<Viommu>>>,
    /// The PCIe root complex.
    pub root: Arc<PciRoot>,
    /// The SVA devices.
    pub sva: Vec<SvaSlot>,
    /// The virtio devices.
    pub virtio: Vec<VirtioSlot>,
    /// The hint port.
    pub hint: Arc<Mutex<HintPort>>,
}

impl Platform {
    /// The hint port's counters.
    pub fn hint_counters(&self) -> HintCounters {
        self.hint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counters()
    }
}

/// Builds the platform over `mem`, interrupts to `sink`, shutdown requests
/// (i8042 reset, debug-exit, ACPI power-off) to `shutdown`.
pub fn build(
    devices: PlatformDevices,
    mem: &GuestMemoryMmap,
    sink: Arc<dyn InterruptSink>,
    shutdown: Arc<ShutdownSignal>,
) -> Result<(Buses, Platform), PlatformError> {
    let PlatformDevices {
        viommu,
        events,
        sva_devices,
        serial,
        virtio_console,
        virtio_blk,
        virtio_rng,
    } = devices;
    if sva_devices > MAX_SVA_DEVICES {
        return Err(PlatformError::TooManySva(sva_devices));
    }
    let viommu = match viommu {
        Some(c) => {
            c.validate()?;
            let mut unit = Viommu::new(c);
            unit.set_event_sink(events);
            Some(Arc::new(Mutex::new(unit)))
        }
        None => None,
    };
    let mut buses = Buses::default();
    let Buses { pio, mmio } = &mut buses;

    pio.insert(Arc::new(Mutex::new(serial)), u64::from(COM1_PORT), COM1_LEN)?;
    pio.insert(
        Arc::new(Mutex::new(I8042::new(shutdown.clone()))),
        u64::from(I8042_DATA_PORT),
        I8042_LEN,
    )?;
    pio.insert(
        Arc::new(Mutex::new(DebugExit::new(shutdown.clone()))),
        u64::from(DEBUG_EXIT_PORT),
        DEBUG_EXIT_LEN,
    )?;

    let root = Arc::new(PciRoot::new());
    let mut front_end = viommu
        .as_ref()
        .map(|v| ViommuMmio::new(v.clone(), mem.clone(), sink.clone()));
    let translator: Arc<dyn DmaTranslate<GuestMemoryMmap>> = match &viommu {
        Some(v) => Arc::new(ViommuPort::new(v.clone(), sink.clone())),
        None => Arc::new(NoIommu),
    };
    let dma_for = |number: u8| match &viommu {
        Some(v) => ViommuDma::new(
            mem.clone(),
            v.clone(),
            crate::layout::requester_id(number),
            sink.clone(),
        ),
        None => ViommuDma::direct(mem.clone()),
    };
    let mut virtio = Vec::new();
    if let Some(console) = virtio_console {
        let n = VIRTIO_CONSOLE_DEVICE;
        let dev = Arc::new(Mutex::new(VirtioPci::new(
            console,
            dma_for(n),
            sink.clone(),
        )?));
        root.add_device(n, dev.clone())?;
        virtio.push(VirtioSlot::new(n, dev));
    }
    if let Some(blk) = virtio_blk {
        let n = VIRTIO_BLK_DEVICE;
        let dev = Arc::new(Mutex::new(VirtioPci::new(blk, dma_for(n), sink.clone())?));
        root.add_device(n, dev.clone())?;
        virtio.push(VirtioSlot::new(n, dev));
    }
    if let Some(rng) = virtio_rng {
        let n = VIRTIO_RNG_DEVICE;
        let dev = Arc::new(Mutex::new(VirtioPci::new(rng, dma_for(n), sink.clone())?));
        root.add_device(n, dev.clone())?;
        virtio.push(VirtioSlot::new(n, dev));
    }
    let mut sva = Vec::new();
    for number in (SVA_FIRST_DEVICE..).take(usize::from(sva_devices)) {
        let dev = SvaDevice::new(number, mem.clone(), translator.clone(), sink.clone())
            .map_err(|source| PlatformError::Sva { number, source })?;
        let dev = Arc::new(Mutex::new(dev));
        root.add_device(number, dev.clone())?;
        if let Some(fe) = front_end.as_mut() {
            fe.add_endpoint(dev.clone())?;
        }
        sva.push(SvaSlot {
            number,
            device: dev,
        });
    }

    mmio.insert(
        Arc::new(Mutex::new(PciEcam::new(root.clone()))),
        ECAM_BASE,
        ECAM_SIZE,
    )?;
    mmio.insert(
        Arc::new(Mutex::new(PciBarWindow::new(root.clone()))),
        BAR_WINDOW_BASE,
        BAR_WINDOW_SIZE,
    )?;
    pio.insert(
        Arc::new(Mutex::new(PciConfigIo::new(root.clone()))),
        CONFIG_IO_PORT,
        CONFIG_IO_LEN,
    )?;
    if let Some(fe) = front_end {
        mmio.insert(Arc::new(Mutex::new(fe)), VIOMMU_MMIO_BASE, VIOMMU_MMIO_SIZE)?;
    }
    let hint = Arc::new(Mutex::new(HintPort::new(viommu.clone())));
    pio.insert(hint.clone(), u64::from(HINT_PORT), HINT_LEN)?;
    pio.insert(
        Arc::new(Mutex::new(AcpiPm::new(shutdown))),
        u64::from(SLEEP_CONTROL_PORT),
        ACPI_PM_LEN,
    )?;

    Ok((
        buses,
        Platform {
            viommu,
            root,
            sva,
            virtio,
            hint,
        },
    ))
}

#[cfg(test)]
mod tests;
