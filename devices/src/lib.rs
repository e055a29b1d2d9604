//! Device models for stalewalk.
//!
//! Every device here is plain logic behind the [`bus::BusDevice`] trait; a
//! device only sees register accesses, guest memory (through the vIOMMU
//! where translation is on) and an [`interrupt::InterruptSink`] to raise
//! interrupts. [`layout`] is the platform map and [`platform::build`] places
//! every device on it, onto two buses the caller's vCPUs (the vmm's, or a
//! fuzz target) dispatch to. Nothing here knows about vCPUs or KVM.

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
