//! The platform a guest sees beyond CPUs and RAM, as the VMM builds it:
//! the devices (wired by [`devices::platform::build`], the builder the fuzz
//! harness uses too) with KVM as their interrupt sink, and the ACPI tables
//! that describe them. Addresses are [`devices::layout`]'s, drawn in
//! `docs/ARCHITECTURE.md` ("Platform map").
//!
//! Interrupts from devices are MSIs injected with `KVM_SIGNAL_MSI`
//! ([`KvmInterrupts`]): the full in-kernel irqchip routes them to the
//! in-kernel LAPICs (see `vm.rs` for why there is no split irqchip).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use devices::interrupt::{InterruptSink, MsiMessage};
use devices::layout::{ECAM_BASE, ECAM_SIZE, VIOMMU_MMIO_BASE, VIOMMU_MMIO_SIZE};
use devices::legacy::ShutdownSignal;
use devices::legacy::serial::Serial;
use devices::platform::{Buses, PlatformDevices};
use devices::virtio::blk::Block;
use devices::virtio::console::Console;
use devices::virtio::rng::Rng;
use kvm_bindings::kvm_msi;
use vm_memory::GuestMemoryMmap;

use crate::acpi::{self, AcpiConfig, AcpiLayout, Placement, ViommuAcpi};
use crate::kvm_vm::GuestVm;

pub use devices::layout::{ACPI_AREA, MAX_SVA_DEVICES};

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
    /// virtio-console at 00:01.0 (output to the VMM's standard output).
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
    /// Wiring the devices.
    #[error(transparent)]
    Devices(#[from] devices::platform::PlatformError),
    /// Opening the disk image.
    #[error("--disk {path}: {source}")]
    Disk {
        /// The image.
        path: String,
        /// Why.
        source: devices::virtio::blk::BlockError,
    },
    /// Opening the entropy source of virtio-rng.
    #[error("virtio-rng: {0}")]
    Rng(#[from] devices::virtio::rng::RngError),
}

/// MSIs and interrupt-line changes, counted as they are injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptCounters {
    /// Delivered to KVM.
    pub delivered: u64,
    /// Refused by KVM.
    pub failed: u64,
}

/// Delivers device interrupts through KVM and counts what it could not
/// deliver.
#[derive(Debug)]
pub struct KvmInterrupts {
    vm: Arc<GuestVm>,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl KvmInterrupts {
    /// A sink injecting into `vm`.
    pub fn new(vm: Arc<GuestVm>) -> Self {
        Self {
            vm,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// What the sink delivered and what KVM refused.
    pub fn counters(&self) -> InterruptCounters {
        InterruptCounters {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
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

/// The built platform: what the report and the trace need afterwards.
#[derive(Debug)]
pub struct Platform {
    /// The devices (vIOMMU, SVA and virtio devices, hint port).
    pub devices: devices::platform::Platform,
    /// The interrupt sink.
    pub interrupts: Arc<KvmInterrupts>,
    /// Where the ACPI tables are.
    pub acpi: AcpiLayout,
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

/// What the VMM hands the platform besides its configuration.
pub struct PlatformWiring {
    /// The VM, for interrupt injection.
    pub vm: Arc<GuestVm>,
    /// COM1, its interrupt already wired (an irqfd) and its output chosen.
    pub serial: Serial,
    /// Where virtio-console output goes (where COM1's goes, through the
    /// same non-blocking buffer).
    pub console: Box<dyn std::io::Write + Send>,
    /// Receives every vIOMMU event (the report's accounting, the trace).
    pub events: Option<Box<dyn viommu::EventSink>>,
    /// Where reset, debug-exit and power-off requests go.
    pub shutdown: Arc<ShutdownSignal>,
}

impl std::fmt::Debug for PlatformWiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformWiring")
            .field("events", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds the platform's devices for `cfg` (returning the buses they sit
/// on) and writes the ACPI tables for `cpus` vCPUs into `mem`.
pub fn build(
    cfg: &PlatformConfig,
    cpus: u32,
    mem: &GuestMemoryMmap,
    wiring: PlatformWiring,
) -> Result<(Buses, Platform), PlatformError> {
    let acpi = acpi_layout(cpus, cfg)?;
    acpi.write_to(mem)?;
    if let Some(dir) = &cfg.dump_acpi {
        acpi.dump(dir)?;
    }
    let PlatformWiring {
        vm,
        serial,
        console,
        events,
        shutdown,
    } = wiring;
    let interrupts = Arc::new(KvmInterrupts::new(vm));
    let virtio_blk =
        match &cfg.disk {
            Some(disk) => Some(Block::open(&disk.path, disk.read_only).map_err(|source| {
                PlatformError::Disk {
                    path: disk.path.display().to_string(),
                    source,
                }
            })?),
            None => None,
        };
    let devices = PlatformDevices {
        viommu: cfg.viommu.clone(),
        events,
        sva_devices: cfg.sva_devices,
        serial,
        virtio_console: cfg.virtio_console.then(|| Console::new(console)),
        virtio_blk,
        virtio_rng: if cfg.virtio_rng {
            Some(Rng::new()?)
        } else {
            None
        },
    };
    let sink: Arc<dyn InterruptSink> = interrupts.clone();
    let (buses, devices) = devices::platform::build(devices, mem, sink, shutdown)?;
    Ok((
        buses,
        Platform {
            devices,
            interrupts,
            acpi,
        },
    ))
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
}
