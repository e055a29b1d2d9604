//! Device models for stalewalk.
//!
//! Every device here is plain logic behind the [`bus::BusDevice`] trait: the
//! vmm owns the buses, the vCPU threads and KVM; a device only sees register
//! accesses, guest memory (through the vIOMMU where translation is on) and an
//! [`interrupt::InterruptSink`] to raise interrupts. Nothing here knows about
//! vCPUs or KVM.

// Guest input must never panic the VMM: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod acpi_pm;
pub mod bus;
pub mod dma;
pub mod hint;
pub mod interrupt;
pub mod iommu_mmio;
pub mod layout;
pub mod legacy;
pub mod pci;
pub mod platform;
pub mod sva;
pub mod virtio;
