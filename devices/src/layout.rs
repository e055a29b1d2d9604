//! The platform map: every guest-physical address, I/O port, interrupt line
//! and PCI device number the platform uses, declared once.
//!
//! The device models decode at these addresses, the platform builder places
//! them there, and the vmm's ACPI tables and E820 map describe the same
//! values to the guest (they import them from here). `docs/ARCHITECTURE.md`
//! ("Platform map") draws the same map for people.

// ---- Guest-physical memory map --------------------------------------------

/// The BIOS area the ACPI tables go into, `(base, size)`: the
/// 0xe0000-0xfffff area a legacy guest scans for the RSDP; E820 reports it
/// reserved.
pub const ACPI_AREA: (u64, u64) = (0xe_0000, 0x2_0000);
/// Start of the 3-4 GiB MMIO hole: guest RAM stops here and continues at
/// [`HIGH_RAM_START`].
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// Where guest RAM resumes above the hole (4 GiB).
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// Start of the 32-bit PCI BAR window (BARs are placed in it): the bottom
/// of the MMIO hole.
pub const BAR_WINDOW_BASE: u64 = MMIO_HOLE_START;
/// Size of the 32-bit BAR window (up to 0xdfff_ffff).
pub const BAR_WINDOW_SIZE: u64 = 0x2000_0000;
/// Guest-physical base of the PCIe ECAM window (bus 0 only).
pub const ECAM_BASE: u64 = 0xe000_0000;
/// Size of the ECAM window: one bus, 32 devices x 8 functions x 4 KiB.
pub const ECAM_SIZE: u64 = 1 << 20;
/// First PCI bus behind the root bridge.
pub const PCI_BUS_FIRST: u8 = 0;
/// Last PCI bus behind the root bridge.
pub const PCI_BUS_LAST: u8 = 0;
/// The IOAPIC's MMIO base (KVM's in-kernel IOAPIC).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Guest-physical base of the vIOMMU's VT-d register block.
pub const VIOMMU_MMIO_BASE: u64 = 0xfed9_0000;
/// Size of the vIOMMU's register block.
pub const VIOMMU_MMIO_SIZE: u64 = 0x1000;
/// The local APICs' MMIO base (KVM's in-kernel LAPICs).
pub const LAPIC_BASE: u64 = 0xfee0_0000;

// ---- I/O ports --------------------------------------------------------------

/// The i8042's data port (the i8042 decodes 0x60..=0x64).
pub const I8042_DATA_PORT: u16 = 0x60;
/// The i8042's command port: the FADT reset register (value 0xfe).
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// Ports the i8042 decodes from [`I8042_DATA_PORT`].
pub const I8042_LEN: u64 = 5;
/// The paravirtual "page-table page freed" hint port.
pub const HINT_PORT: u16 = 0xf0;
/// Bytes the hint port decodes.
pub const HINT_LEN: u64 = 4;
/// The debug-exit port (the guest's exit status).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bytes the debug-exit port decodes.
pub const DEBUG_EXIT_LEN: u64 = 4;
/// The first I/O port of COM1.
pub const COM1_PORT: u16 = 0x3f8;
/// Number of ports the UART decodes.
pub const COM1_LEN: u64 = 8;
/// The ACPI sleep control register (FADT, hardware-reduced), 8-bit.
pub const SLEEP_CONTROL_PORT: u16 = 0x604;
/// The ACPI sleep status register, 8-bit (right after the control register).
pub const SLEEP_STATUS_PORT: u16 = 0x605;
/// Ports the ACPI power-management device decodes: control and status.
pub const ACPI_PM_LEN: u64 = 2;
/// First legacy PCI configuration port (address at 0xcf8, data at
/// 0xcfc..0xcff).
pub const CONFIG_IO_PORT: u64 = 0xcf8;
/// Ports the legacy configuration mechanism decodes.
pub const CONFIG_IO_LEN: u64 = 8;

// ---- Interrupt lines --------------------------------------------------------

/// The legacy interrupt line (ISA IRQ and GSI) of COM1.
pub const COM1_IRQ: u32 = 4;

// ---- PCI device numbers on bus 0 -------------------------------------------

/// The host bridge.
pub const HOST_BRIDGE_DEVICE: u8 = 0;
/// virtio-console.
pub const VIRTIO_CONSOLE_DEVICE: u8 = 1;
/// virtio-blk.
pub const VIRTIO_BLK_DEVICE: u8 = 2;
/// virtio-rng.
pub const VIRTIO_RNG_DEVICE: u8 = 3;
/// First SVA DMA test device (00:04.0, then 00:05.0, ...; the `replay`
/// default also uses 00:04.0).
pub const SVA_FIRST_DEVICE: u8 = 4;
/// Device numbers on one bus.
pub const DEVICES_PER_BUS: u8 = 32;
/// Most SVA devices: device numbers [`SVA_FIRST_DEVICE`]..32 on bus 0.
pub const MAX_SVA_DEVICES: u8 = DEVICES_PER_BUS - SVA_FIRST_DEVICE;

/// The requester id (bus 0, function 0) of PCI device `number`.
pub const fn requester_id(number: u8) -> u16 {
    (number as u16) << 3
}

// The map must not overlap itself: checked when the crate compiles.
const _: () = {
    assert!(BAR_WINDOW_BASE + BAR_WINDOW_SIZE <= ECAM_BASE);
    assert!(LAPIC_BASE < HIGH_RAM_START);
    assert!(ECAM_BASE + ECAM_SIZE <= IOAPIC_BASE);
    assert!(IOAPIC_BASE < VIOMMU_MMIO_BASE);
    assert!(VIOMMU_MMIO_BASE + VIOMMU_MMIO_SIZE <= LAPIC_BASE);
    assert!(ACPI_AREA.0 + ACPI_AREA.1 <= 0x10_0000);
    assert!(SLEEP_STATUS_PORT as u64 == SLEEP_CONTROL_PORT as u64 + 1);
    assert!(I8042_COMMAND_PORT as u64 == I8042_DATA_PORT as u64 + I8042_LEN - 1);
    assert!(VIRTIO_RNG_DEVICE < SVA_FIRST_DEVICE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requester_ids_are_bus_0_function_0() {
        assert_eq!(requester_id(SVA_FIRST_DEVICE), 0x20);
        assert_eq!(requester_id(31), 0xf8);
        assert_eq!(MAX_SVA_DEVICES, 28);
    }
}
