//! How a device raises an interrupt without knowing about KVM.
//!
//! The vmm implements [`InterruptSink`] with `KVM_SIGNAL_MSI` / irqfd and
//! `KVM_IRQ_LINE`; tests implement it with a recorder.

use std::fmt::Debug;

/// An MSI as the device wrote it: address and data, before any remapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MsiMessage {
    /// Message address (0xFEEx_xxxx on x86).
    pub address: u64,
    /// Message data.
    pub data: u32,
}

/// Where devices send their interrupts.
pub trait InterruptSink: Send + Sync + Debug {
    /// Delivers an MSI. Delivery failures are the sink's to count and log.
    fn raise_msi(&self, msi: MsiMessage);
    /// Pulses (edge) or sets/clears (level) a legacy interrupt line (GSI).
    fn set_irq_line(&self, gsi: u32, level: bool);
}
