//! The DSDT (ACPI 6.5 section 5.2.11.1): the AML namespace of the platform.
//!
//! ```text
//! \_S5_  Package { 5, 0, 0, 0 }          soft-off SLP_TYP for the FADT's
//!                                        sleep control register
//! \_SB_.PCI0  PNP0A08 (_CID PNP0A03)     PCIe root bridge, _SEG 0, _BBN 0,
//!        _CRS: bus 0-0, I/O 0xcf8-0xcff (config ports), I/O windows
//!              0x0-0xcf7 and 0xd00-0xffff, memory 0xc0000000-0xdfffffff
//! \_SB_.ECAM  PNP0C02                    motherboard resource: the 1 MiB ECAM
//!                                        window at 0xe0000000 (Linux needs
//!                                        this to trust MCFG)
//! \_SB_.COM1  PNP0501                    8250 UART at 0x3f8, ISA IRQ 4
//!                                        (only with `serial`)
//! \_SB_.Cnnn  ACPI0007                   one processor device per vCPU,
//!                                        _UID = MADT processor UID
//! ```

use acpi_tables::sdt::Sdt;
use acpi_tables::{Aml, AmlSink, aml};

use super::{
    AcpiConfig, COM1_IRQ, COM1_PORT, COM1_PORTS, ECAM_BASE_U32, ECAM_SIZE_U32, OEM_ID,
    OEM_REVISION, OEM_TABLE_ID, PCI_BUS_FIRST, PCI_BUS_LAST, PCI_CONFIG_PORT, PCI_CONFIG_PORTS,
    PCI_MMIO32_BASE, PCI_MMIO32_LAST, S5_SLEEP_TYPE,
};

/// DSDT revision 2: AML integers are 64 bits wide.
const REVISION: u8 = 2;
/// The I/O window below the configuration ports.
const PCI_IO_LOW: (u16, u16) = (0x0000, PCI_CONFIG_PORT - 1);
/// The I/O window above the configuration ports.
const PCI_IO_HIGH: (u16, u16) = (PCI_CONFIG_PORT + PCI_CONFIG_PORTS as u16, 0xffff);

/// An ISA `IRQNoFlags` small resource descriptor (edge, active-high,
/// exclusive): `acpi_tables` only has the extended interrupt descriptor.
struct IrqNoFlags {
    irq: u8,
}

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        // Small item, type 4 (IRQ), length 2: tag byte 0x22.
        sink.byte(0x22);
        // The IRQ mask: one bit per ISA IRQ 0..=15; callers pass < 16.
        let mask = 1u16.checked_shl(u32::from(self.irq)).unwrap_or(0);
        sink.word(mask);
    }
}

/// The DSDT for `cfg` (validated).
pub(super) fn build(cfg: &AcpiConfig) -> Vec<u8> {
    let mut sb = Vec::new();
    pci_root().to_aml_bytes(&mut sb);
    ecam_reservation().to_aml_bytes(&mut sb);
    if cfg.serial {
        com1().to_aml_bytes(&mut sb);
    }
    for uid in 0..cfg.cpus {
        processor(uid).to_aml_bytes(&mut sb);
    }

    let mut body = Vec::new();
    let s5 = s5();
    s5.to_aml_bytes(&mut body);
    body.extend_from_slice(&aml::Scope::raw("\\_SB_".into(), sb));

    let mut sdt = Sdt::new(*b"DSDT", 36, REVISION, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    sdt.append_slice(&body);
    sdt.as_slice().to_vec()
}

/// `Name (_S5, Package { SLP_TYP_a, SLP_TYP_b, 0, 0 })`.
fn s5() -> aml::Name {
    aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(vec![&S5_SLEEP_TYPE, &aml::ZERO, &aml::ZERO, &aml::ZERO]),
    )
}

/// Serializes a device built from borrowed children into owned bytes.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

fn device(name: &str, children: Vec<&dyn Aml>) -> Raw {
    let mut v = Vec::new();
    aml::Device::new(name.into(), children).to_aml_bytes(&mut v);
    Raw(v)
}

fn pci_root() -> Raw {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A08"));
    let cid = aml::Name::new("_CID".into(), &aml::EISAName::new("PNP0A03"));
    let seg = aml::Name::new("_SEG".into(), &aml::ZERO);
    let bbn = aml::Name::new("_BBN".into(), &PCI_BUS_FIRST);
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let bus =
        aml::AddressSpace::<u16>::new_bus_number(u16::from(PCI_BUS_FIRST), u16::from(PCI_BUS_LAST));
    let cfg_ports = aml::IO::new(PCI_CONFIG_PORT, PCI_CONFIG_PORT, 1, PCI_CONFIG_PORTS);
    let io_low = aml::AddressSpace::<u16>::new_io(PCI_IO_LOW.0, PCI_IO_LOW.1, None);
    let io_high = aml::AddressSpace::<u16>::new_io(PCI_IO_HIGH.0, PCI_IO_HIGH.1, None);
    let mmio32 = aml::AddressSpace::<u32>::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        PCI_MMIO32_BASE,
        PCI_MMIO32_LAST,
        None,
    );
    let crs = aml::Name::new(
        "_CRS".into(),
        &aml::ResourceTemplate::new(vec![&bus, &cfg_ports, &io_low, &io_high, &mmio32]),
    );
    device("PCI0", vec![&hid, &cid, &seg, &bbn, &uid, &crs])
}

fn ecam_reservation() -> Raw {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C02"));
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let window = aml::Memory32Fixed::new(true, ECAM_BASE_U32, ECAM_SIZE_U32);
    let crs = aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(vec![&window]));
    device("ECAM", vec![&hid, &uid, &crs])
}

fn com1() -> Raw {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501"));
    let uid = aml::Name::new("_UID".into(), &aml::ONE);
    let ports = aml::IO::new(COM1_PORT, COM1_PORT, 0, COM1_PORTS);
    let irq = IrqNoFlags { irq: COM1_IRQ };
    let crs = aml::Name::new(
        "_CRS".into(),
        &aml::ResourceTemplate::new(vec![&ports, &irq]),
    );
    device("COM1", vec![&hid, &uid, &crs])
}

/// Name of the processor device for `uid`: `C` and three hex digits, so
/// [`super::MAX_CPUS`] (1024) and up to 4096 fit.
fn processor_name(uid: u32) -> String {
    format!("C{:03X}", uid & 0xfff)
}

fn processor(uid: u32) -> Raw {
    let hid = aml::Name::new("_HID".into(), &"ACPI0007");
    let uid_obj = aml::Name::new("_UID".into(), &uid);
    device(&processor_name(uid), vec![&hid, &uid_obj])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::{ViommuAcpi, byte_sum};

    fn cfg(cpus: u32, serial: bool) -> AcpiConfig {
        AcpiConfig {
            cpus,
            viommu: Some(ViommuAcpi::for_levels(4)),
            serial,
        }
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// The little-endian EISA ID encoding AML stores for `id`.
    fn eisa(id: &str) -> Vec<u8> {
        let mut v = Vec::new();
        aml::EISAName::new(id).to_aml_bytes(&mut v);
        v
    }

    #[test]
    fn dsdt_header_and_checksum() {
        let t = build(&cfg(2, true));
        assert_eq!(&t[0..4], b"DSDT");
        assert_eq!(t[8], 2, "revision");
        assert_eq!(
            u32::from_le_bytes([t[4], t[5], t[6], t[7]]),
            u32::try_from(t.len()).expect("small")
        );
        assert_eq!(byte_sum(&t), 0);
    }

    #[test]
    fn dsdt_has_root_bridge_ecam_reservation_and_com1() {
        let t = build(&cfg(1, true));
        for id in ["PNP0A08", "PNP0A03", "PNP0C02", "PNP0501"] {
            assert!(contains(&t, &eisa(id)), "{id}");
        }
        // Memory32Fixed(ReadWrite, 0xe0000000, 0x100000).
        let ecam = [0x86, 0x09, 0x00, 0x01, 0, 0, 0, 0xe0, 0, 0, 0x10, 0];
        assert!(contains(&t, &ecam));
        // IO(Decode16, 0xcf8, 0xcf8, 1, 8).
        assert!(contains(&t, &[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 1, 8]));
        // DWordMemory min 0xc0000000, max 0xdfffffff, length 0x20000000.
        assert!(contains(
            &t,
            &[
                0, 0, 0, 0xc0, 0xff, 0xff, 0xff, 0xdf, 0, 0, 0, 0, 0, 0, 0, 0x20
            ]
        ));
        // COM1: IO(Decode16, 0x3f8, 0x3f8, 0, 8) and IRQNoFlags {4}.
        assert!(contains(&t, &[0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0, 8]));
        assert!(contains(&t, &[0x22, 0x10, 0x00]));
        for name in [b"PCI0", b"ECAM", b"COM1", b"_SEG", b"_BBN", b"_S5_"] {
            assert!(contains(&t, name), "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn dsdt_without_serial_has_no_com1() {
        let t = build(&cfg(1, false));
        assert!(!contains(&t, &eisa("PNP0501")));
        assert!(!contains(&t, b"COM1"));
        assert_eq!(byte_sum(&t), 0);
    }

    #[test]
    fn dsdt_one_processor_device_per_cpu() {
        for cpus in [1u32, 3, 255, 300] {
            let t = build(&cfg(cpus, true));
            let n = t.windows(8).filter(|w| *w == b"ACPI0007").count();
            assert_eq!(n, cpus as usize, "{cpus} cpus");
            assert!(contains(&t, processor_name(cpus - 1).as_bytes()));
            assert_eq!(byte_sum(&t), 0);
        }
    }

    #[test]
    fn processor_names_are_valid_acpi_names() {
        assert_eq!(processor_name(0), "C000");
        assert_eq!(processor_name(0x3ff), "C3FF");
        for uid in [0u32, 9, 10, 255, 1023] {
            let n = processor_name(uid);
            assert_eq!(n.len(), 4);
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            );
        }
    }
}
