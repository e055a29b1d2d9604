//! The platform a guest sees beyond CPUs and RAM: ACPI tables, the PCIe
//! root complex (ECAM and the legacy 0xcf8 ports), the vIOMMU's register
//! block, the SVA DMA test devices, the page-table-freed hint port and the
//! ACPI power-off port. Addresses follow the platform map in
//! `docs/ARCHITECTURE.md`.
//!
//! Interrupts from devices are MSIs injected with `KVM_SIGNAL_MSI`
//! ([`KvmInterrupts`]): the full in-kernel irqchip routes them to the
//! in-kernel LAPICs (see `vm.rs` for why there is no split irqchip).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use devices::acpi_pm::{ACPI_PM_LEN, AcpiPm, SLEEP_CONTROL_PORT};
use devices::bus::Bus;
use devices::dma::{
    DmaFault, DmaRequest, DmaTranslate, PageRequest, PageRequestRefused, RequestKind,
};
use devices::hint::{HINT_LEN, HINT_PORT, HintCounters, HintPort};
use devices::interrupt::{InterruptSink, MsiMessage};
use devices::iommu_mmio::{VIOMMU_MMIO_BASE, VIOMMU_MMIO_SIZE, ViommuMmio, ViommuPort};
use devices::legacy::ShutdownSignal;
use devices::pci::root::{
    BAR_WINDOW_BASE, BAR_WINDOW_SIZE, CONFIG_IO_LEN, CONFIG_IO_PORT, ECAM_BASE, ECAM_SIZE,
    PciBarWindow, PciConfigIo, PciEcam, PciRoot,
};
use devices::sva::{SvaCounters, SvaDevice};
use devices::virtio::blk::Block;
use devices::virtio::console::Console;
use devices::virtio::rng::Rng;
use devices::virtio::transport::{VirtioMetrics, VirtioPci};
use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;
use viommu::Viommu;
use vm_memory::GuestMemoryMmap;

use crate::acpi::{self, AcpiConfig, AcpiLayout, Placement, ViommuAcpi};

/// First PCI device number of the SVA DMA test devices (00:04.0, then
/// 00:05.0, ...; the platform map and the `replay` default use 00:04.0).
pub const SVA_FIRST_DEVICE: u8 = 4;
/// Most SVA devices: device numbers 4..=31 on bus 0.
pub const MAX_SVA_DEVICES: u8 = 28;
/// The BIOS area that holds the ACPI tables; E820 reports it reserved.
pub const ACPI_AREA: (u64, u64) = (0xe_0000, 0x2_0000);

/// What the platform is built from (part of [`crate::VmConfig`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformConfig {
    /// The vIOMMU's configuration, or `None` for `--viommu off`.
    pub viommu: Option<viommu::Config>,
    /// Number of SVA DMA test devices.
    pub sva_devices: u8,
    /// Write the ACPI tables into this directory (`--dump-acpi`).
    pub dump_acpi: Option<PathBuf>,
    /// A raw disk image for virtio-blk at 00:02.0 (`--disk`).
    pub disk: Option<DiskConfig>,
    /// virtio-console at 00:01.0 (output where the serial console's goes,
    /// or standard output when that is off).
    pub virtio_console: bool,
    /// virtio-rng at 00:03.0.
    pub virtio_rng: bool,
}

/// `--disk PATH[,ro]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// The raw image file.
    pub path: PathBuf,
    /// Refuse guest writes (VIRTIO_BLK_F_RO).
    pub read_only: bool,
}

/// PCI device numbers of the virtio devices (platform map).
pub const VIRTIO_CONSOLE_DEVICE: u8 = 1;
/// virtio-blk's device number.
pub const VIRTIO_BLK_DEVICE: u8 = 2;
/// virtio-rng's device number.
pub const VIRTIO_RNG_DEVICE: u8 = 3;

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            viommu: Some(viommu::Config::default()),
            sva_devices: 0,
            dump_acpi: None,
            disk: None,
            virtio_console: false,
            virtio_rng: false,
        }
    }
}

/// Errors building the platform (configuration or host errors, never
/// guest-caused).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Building or writing the ACPI tables.
    #[error("ACPI tables: {0}")]
    Acpi(#[from] acpi::AcpiError),
    /// Placing a device on a bus.
    #[error("cannot place a device: {0}")]
    Bus(#[from] devices::bus::BusError),
    /// Adding a PCI device.
    #[error("cannot add a PCI device: {0}")]
    Pci(#[from] devices::pci::root::RootError),
    /// Creating an SVA device.
    #[error("cannot create SVA device {number}: {source}")]
    Sva {
        /// Its device number.
        number: u8,
        /// Why.
        source: devices::sva::SvaError,
    },
    /// Registering an endpoint with the vIOMMU front end.
    #[error("cannot attach a device to the vIOMMU: {0}")]
    Endpoint(#[from] devices::iommu_mmio::FrontEndError),
    /// The vIOMMU configuration is invalid.
    #[error("vIOMMU configuration: {0}")]
    Viommu(#[from] viommu::config::ConfigError),
    /// Opening the disk image.
    #[error("--disk {path}: {source}")]
    Disk {
        /// The image.
        path: String,
        /// Why.
        source: devices::virtio::blk::BlockError,
    },
    /// Creating a virtio device.
    #[error("cannot create virtio device: {0}")]
    Virtio(String),
    /// Too many SVA devices.
    #[error("--sva-dev {0}: at most {MAX_SVA_DEVICES} SVA devices fit on bus 0")]
    TooManySva(u8),
}

/// Delivers device interrupts through KVM and counts what it could not
/// deliver.
#[derive(Debug)]
pub struct KvmInterrupts {
    vm: Arc<VmFd>,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl KvmInterrupts {
    /// A sink injecting into `vm`.
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self {
            vm,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// (delivered, failed) MSIs and line changes.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn count(&self, ok: bool) {
        let c = if ok { &self.delivered } else { &self.failed };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl InterruptSink for KvmInterrupts {
    fn raise_msi(&self, msi: MsiMessage) {
        let m = kvm_msi {
            address_lo: u32::try_from(msi.address & 0xffff_ffff).unwrap_or(0),
            address_hi: u32::try_from(msi.address >> 32).unwrap_or(0),
            data: msi.data,
            ..Default::default()
        };
        // KVM returns 0 when the interrupt was blocked (e.g. the LAPIC is
        // disabled): that is the guest's choice, not a failure.
        self.count(self.vm.signal_msi(m).is_ok());
    }

    fn set_irq_line(&self, gsi: u32, level: bool) {
        self.count(self.vm.set_irq_line(gsi, level).is_ok());
    }
}

/// DMA without an IOMMU (`--viommu off`): device addresses are guest
/// physical addresses, and page requests have nowhere to go.
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

/// The built platform: what the report and the trace need afterwards.
#[derive(Debug)]
pub struct Platform {
    /// The vIOMMU, when on.
    pub viommu: Option<Arc<Mutex<Viommu>>>,
    /// The SVA devices.
    pub sva: Vec<SvaSlot>,
    /// The interrupt sink.
    pub interrupts: Arc<KvmInterrupts>,
    /// The hint port.
    pub hint: Arc<Mutex<HintPort>>,
    /// Where the ACPI tables are.
    pub acpi: AcpiLayout,
    /// The virtio devices (for the report).
    pub virtio: Vec<VirtioSlot>,
}

type Dma = devices::virtio::ViommuDma;

/// One virtio device and how to read its counters.
pub struct VirtioSlot {
    number: u8,
    metrics: Box<dyn Fn() -> VirtioMetrics + Send + Sync>,
}

impl std::fmt::Debug for VirtioSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioSlot")
            .field("number", &self.number)
            .finish()
    }
}

impl VirtioSlot {
    /// Its PCI device number on bus 0.
    pub fn number(&self) -> u8 {
        self.number
    }

    /// The device's counters now.
    pub fn metrics(&self) -> VirtioMetrics {
        (self.metrics)()
    }
}

fn virtio_slot<D>(number: u8, dev: Arc<Mutex<VirtioPci<D, Dma>>>) -> VirtioSlot
where
    D: devices::virtio::VirtioDevice + 'static,
{
    VirtioSlot {
        number,
        metrics: Box::new(move || dev.lock().unwrap_or_else(|p| p.into_inner()).metrics()),
    }
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

/// Guest-physical ranges E820 must report reserved for this platform.
pub fn reserved_ranges(cfg: &PlatformConfig) -> Vec<(u64, u64)> {
    let mut v = vec![ACPI_AREA, (ECAM_BASE, ECAM_SIZE)];
    if cfg.viommu.is_some() {
        v.push((VIOMMU_MMIO_BASE, VIOMMU_MMIO_SIZE));
    }
    v
}

/// The ACPI tables for `cpus` vCPUs and `cfg`, laid out in the BIOS area.
pub fn acpi_layout(cpus: u32, cfg: &PlatformConfig) -> Result<AcpiLayout, PlatformError> {
    let viommu = cfg.viommu.as_ref().map(|v| {
        let levels = match v.levels {
            viommu::config::Levels::Four => 4,
            viommu::config::Levels::Five => 5,
        };
        ViommuAcpi::for_levels(levels)
    });
    let tables = acpi::build_tables(&AcpiConfig {
        cpus,
        viommu,
        serial: true,
    })?;
    Ok(tables.layout(&Placement::LEGACY)?)
}

/// Builds the platform's devices onto `pio` and `mmio` and writes the ACPI
/// tables into `mem`; virtio-console output goes to `console_out`.
#[allow(clippy::too_many_arguments)]
pub fn build(
    cfg: &PlatformConfig,
    cpus: u32,
    vm: Arc<VmFd>,
    mem: &GuestMemoryMmap,
    pio: &mut Bus,
    mmio: &mut Bus,
    shutdown: Arc<ShutdownSignal>,
    console_out: Box<dyn std::io::Write + Send>,
) -> Result<Platform, PlatformError> {
    if cfg.sva_devices > MAX_SVA_DEVICES {
        return Err(PlatformError::TooManySva(cfg.sva_devices));
    }
    let acpi = acpi_layout(cpus, cfg)?;
    acpi.write_to(mem)?;
    if let Some(dir) = &cfg.dump_acpi {
        acpi.dump(dir)?;
    }

    let interrupts = Arc::new(KvmInterrupts::new(vm));
    let sink: Arc<dyn InterruptSink> = interrupts.clone();

    let viommu = match &cfg.viommu {
        Some(c) => {
            c.validate()?;
            Some(Arc::new(Mutex::new(Viommu::new(c.clone()))))
        }
        None => None,
    };

    let root = Arc::new(PciRoot::new());
    let mut front_end = viommu
        .as_ref()
        .map(|v| ViommuMmio::new(v.clone(), mem.clone(), sink.clone()));
    let translator: Arc<dyn DmaTranslate<GuestMemoryMmap>> = match &viommu {
        Some(v) => Arc::new(ViommuPort::new(v.clone(), sink.clone())),
        None => Arc::new(NoIommu),
    };
    let dma_for = |number: u8| match &viommu {
        Some(v) => Dma::new(mem.clone(), v.clone(), u16::from(number) << 3, sink.clone()),
        None => Dma::direct(mem.clone()),
    };
    let virtio_err =
        |e: devices::virtio::transport::TransportError| PlatformError::Virtio(e.to_string());
    let mut virtio = Vec::new();
    if cfg.virtio_console {
        let n = VIRTIO_CONSOLE_DEVICE;
        let dev = Arc::new(Mutex::new(
            VirtioPci::new(Console::new(console_out), dma_for(n), sink.clone())
                .map_err(virtio_err)?,
        ));
        root.add_device(n, dev.clone())?;
        virtio.push(virtio_slot(n, dev));
    }
    if let Some(disk) = &cfg.disk {
        let n = VIRTIO_BLK_DEVICE;
        let blk =
            Block::open(&disk.path, disk.read_only).map_err(|source| PlatformError::Disk {
                path: disk.path.display().to_string(),
                source,
            })?;
        let dev = Arc::new(Mutex::new(
            VirtioPci::new(blk, dma_for(n), sink.clone()).map_err(virtio_err)?,
        ));
        root.add_device(n, dev.clone())?;
        virtio.push(virtio_slot(n, dev));
    }
    if cfg.virtio_rng {
        let n = VIRTIO_RNG_DEVICE;
        let rng = Rng::new().map_err(|e| PlatformError::Virtio(e.to_string()))?;
        let dev = Arc::new(Mutex::new(
            VirtioPci::new(rng, dma_for(n), sink.clone()).map_err(virtio_err)?,
        ));
        root.add_device(n, dev.clone())?;
        virtio.push(virtio_slot(n, dev));
    }
    let mut sva = Vec::new();
    for i in 0..cfg.sva_devices {
        let number = SVA_FIRST_DEVICE + i;
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
        Arc::new(Mutex::new(PciConfigIo::new(root))),
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

    Ok(Platform {
        viommu,
        sva,
        interrupts,
        hint,
        acpi,
        virtio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ranges_follow_the_platform_map() {
        let on = reserved_ranges(&PlatformConfig::default());
        assert!(on.contains(&(0xe000_0000, 1 << 20)));
        assert!(on.contains(&(0xfed9_0000, 0x1000)));
        assert!(on.contains(&(0xe_0000, 0x2_0000)));
        let off = reserved_ranges(&PlatformConfig {
            viommu: None,
            ..PlatformConfig::default()
        });
        assert!(!off.contains(&(0xfed9_0000, 0x1000)));
    }

    #[test]
    fn acpi_tables_fit_the_bios_area() {
        let l = acpi_layout(4, &PlatformConfig::default()).unwrap();
        assert_eq!(l.rsdp_gpa(), 0xe_0000);
        assert!(l.table("DMAR").is_some());
        let l = acpi_layout(
            1,
            &PlatformConfig {
                viommu: None,
                ..PlatformConfig::default()
            },
        )
        .unwrap();
        assert!(l.table("DMAR").is_none());
    }

    #[test]
    fn no_iommu_is_identity() {
        let req = DmaRequest {
            rid: 0x20,
            pasid: None,
            addr: 0x1234_5000,
            access: devices::dma::Access::Read,
            privileged: false,
        };
        let t: &dyn DmaTranslate<()> = &NoIommu;
        assert_eq!(
            t.translate(&(), &req, RequestKind::Untranslated),
            Ok(0x1234_5000)
        );
    }
}
