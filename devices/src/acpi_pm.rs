//! The ACPI power-management ports the FADT announces (hardware-reduced
//! sleep control and status registers, I/O ports 0x604 and 0x605).
//!
//! Writing the sleep control register with SLP_EN (bit 5) set and SLP_TYP
//! (bits 4:2) = 5 is the guest's S5 request: it powers the VM off. The
//! status register reads 0 and ignores writes (Linux writes WAK_STS there
//! first).

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::legacy::{ShutdownReason, ShutdownSignal};

// The platform map declares these (one place for the whole map).
pub use crate::layout::{ACPI_PM_LEN, SLEEP_CONTROL_PORT};
/// SLP_EN bit of the sleep control register.
pub const SLEEP_CONTROL_SLP_EN: u8 = 1 << 5;
/// Shift of the SLP_TYP field (bits 4:2) in the sleep control register.
pub const SLEEP_CONTROL_SLP_TYP_SHIFT: u8 = 2;
/// SLP_TYP for S5 (soft-off): the vmm's DSDT puts this value in its `\_S5`
/// package, so the guest writes it here to power off.
pub const S5_SLEEP_TYPE: u8 = 5;

/// The sleep control/status pair.
#[derive(Debug)]
pub struct AcpiPm {
    shutdown: Arc<ShutdownSignal>,
}

impl AcpiPm {
    /// A device that records power-off requests in `shutdown`.
    pub fn new(shutdown: Arc<ShutdownSignal>) -> Self {
        Self { shutdown }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if offset != 0 {
            return;
        }
        let Some(&v) = data.first() else { return };
        if v & SLEEP_CONTROL_SLP_EN != 0 && (v >> SLEEP_CONTROL_SLP_TYP_SHIFT) & 7 == S5_SLEEP_TYPE
        {
            self.shutdown.request(ShutdownReason::PowerOff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_with_slp_en_powers_off() {
        let s = Arc::new(ShutdownSignal::new());
        let mut pm = AcpiPm::new(s.clone());
        pm.write(0x604, 1, &[0x34]);
        pm.write(0x604, 0, &[0x14]);
        assert_eq!(s.requested(), None);
        pm.write(0x604, 0, &[0x34]);
        assert_eq!(s.requested(), Some(ShutdownReason::PowerOff));
    }
}
