//! The FADT (signature `FACP`, ACPI 6.5 section 5.2.9): fixed hardware.
//!
//! The platform is hardware-reduced (no PM1 event/control blocks, no PM
//! timer, no GPEs, no SCI, no FACS). It has exactly two fixed features:
//! - the **reset register**: an 8-bit write of [`RESET_VALUE`] (0xfe) to
//!   I/O port [`RESET_PORT`] (0x64, the i8042 command port);
//! - the **sleep control/status registers** (8-bit I/O ports
//!   [`SLEEP_CONTROL_PORT`] 0x604 and [`SLEEP_STATUS_PORT`] 0x605): writing
//!   SLP_EN with SLP_TYP = `\_S5` ([`super::SLEEP_CONTROL_POWER_OFF`], 0x34)
//!   to the control register powers off.

use acpi_tables::Aml;
use acpi_tables::fadt::{FADT, FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

use super::{
    OEM_ID, OEM_REVISION, OEM_TABLE_ID, RESET_PORT, RESET_VALUE, SLEEP_CONTROL_PORT,
    SLEEP_STATUS_PORT,
};

/// IA-PC boot architecture flags (offset 109).
/// Bit 2: VGA not present (there is no VGA).
pub(super) const BOOT_ARCH_NO_VGA: u16 = 1 << 2;
/// Bit 4: PCIe ASPM controls: the OS must not enable ASPM (there are no links).
pub(super) const BOOT_ARCH_NO_ASPM: u16 = 1 << 4;
/// Bit 5: CMOS RTC not present (the platform map has no RTC at 0x70).
pub(super) const BOOT_ARCH_NO_CMOS_RTC: u16 = 1 << 5;
/// The flags this platform states. Bit 1 (8042) is clear: the i8042 only
/// implements the reset command, not a keyboard controller; bit 3 (MSI not
/// supported) is clear: devices use MSI and MSI-X.
pub(super) const BOOT_ARCH: u16 = BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_ASPM | BOOT_ARCH_NO_CMOS_RTC;

/// Offsets of the fields the tests look at.
#[cfg(test)]
mod offsets {
    pub(in crate::acpi) const DSDT_OFFSET: usize = 40;
    pub(in crate::acpi) const BOOT_ARCH_OFFSET: usize = 109;
    pub(in crate::acpi) const FLAGS_OFFSET: usize = 112;
    pub(in crate::acpi) const RESET_REG_OFFSET: usize = 116;
    pub(in crate::acpi) const RESET_VALUE_OFFSET: usize = 128;
    pub(in crate::acpi) const X_DSDT_OFFSET: usize = 140;
    pub(in crate::acpi) const SLEEP_CONTROL_OFFSET: usize = 244;
    pub(in crate::acpi) const SLEEP_STATUS_OFFSET: usize = 256;
}
#[cfg(test)]
pub(super) use offsets::*;

/// FADT length (ACPI 6.5: 276 bytes).
pub(super) fn len() -> usize {
    FADT::len()
}

/// An 8-bit I/O-port generic address.
fn io_byte(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// The FADT pointing at a DSDT at `dsdt_gpa`. Both the 32-bit and the
/// 64-bit DSDT pointers are set when the DSDT is below 4 GiB (they then
/// agree, which the spec allows); above, only X_DSDT.
pub(super) fn build(dsdt_gpa: u64) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup);
    b.dsdt = u32::try_from(dsdt_gpa).unwrap_or(0).into();
    b.x_dsdt = dsdt_gpa.into();
    b.iapc_boot_arch = BOOT_ARCH.into();
    b.reset_reg = io_byte(RESET_PORT);
    b.reset_value = RESET_VALUE;
    b.sleep_control_reg = io_byte(SLEEP_CONTROL_PORT);
    b.sleep_status_reg = io_byte(SLEEP_STATUS_PORT);
    let mut v = Vec::with_capacity(len());
    b.finalize().to_aml_bytes(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::byte_sum;

    fn le32(t: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(t[off..off + 4].try_into().expect("4"))
    }

    fn le64(t: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(t[off..off + 8].try_into().expect("8"))
    }

    /// (space, bit width, bit offset, access size, address) of a GAS.
    fn gas(t: &[u8], off: usize) -> (u8, u8, u8, u8, u64) {
        (t[off], t[off + 1], t[off + 2], t[off + 3], le64(t, off + 4))
    }

    #[test]
    fn fadt_fields() {
        let t = build(0xe_1000);
        assert_eq!(&t[0..4], b"FACP");
        assert_eq!(t.len(), 276);
        assert_eq!(le32(&t, 4), 276);
        assert_eq!(byte_sum(&t), 0);
        assert_eq!(t[8], 6, "major version");
        assert_eq!(t[131], 5, "minor version");
        assert_eq!(le32(&t, DSDT_OFFSET), 0xe_1000);
        assert_eq!(le64(&t, X_DSDT_OFFSET), 0xe_1000);
        let flags = le32(&t, FLAGS_OFFSET);
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        assert_eq!(
            u16::from_le_bytes([t[BOOT_ARCH_OFFSET], t[BOOT_ARCH_OFFSET + 1]]),
            0x34
        );
        assert_eq!(gas(&t, RESET_REG_OFFSET), (1, 8, 0, 1, 0x64));
        assert_eq!(t[RESET_VALUE_OFFSET], 0xfe);
        assert_eq!(gas(&t, SLEEP_CONTROL_OFFSET), (1, 8, 0, 1, 0x604));
        assert_eq!(gas(&t, SLEEP_STATUS_OFFSET), (1, 8, 0, 1, 0x605));
        assert_eq!(le32(&t, 36), 0, "no FACS (hardware-reduced)");
    }

    #[test]
    fn fadt_dsdt_above_4g_uses_only_x_dsdt() {
        let t = build(0x1_0000_0000);
        assert_eq!(le32(&t, DSDT_OFFSET), 0);
        assert_eq!(le64(&t, X_DSDT_OFFSET), 0x1_0000_0000);
        assert_eq!(byte_sum(&t), 0);
    }
}
