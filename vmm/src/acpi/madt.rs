//! The MADT (signature `APIC`, ACPI 6.3 section 5.2.12): the interrupt
//! controllers. One enabled local APIC per vCPU (a Processor Local APIC
//! structure for APIC IDs below 255, a Processor Local x2APIC structure from
//! 255 on), the IOAPIC at GSI base 0, the two standard ISA interrupt source
//! overrides, and LINT1 as NMI on every processor.
//!
//! Written on `Sdt` because `acpi_tables`' own MADT cannot set the
//! PCAT_COMPAT flag and has no override, NMI or x2APIC structures.

use acpi_tables::sdt::Sdt;

use super::{IOAPIC_BASE, LAPIC_BASE, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// MADT header length: 36-byte SDT header, local APIC address, flags.
#[cfg(test)]
pub(super) const HEADER_LEN: usize = 44;
/// [`HEADER_LEN`] as the SDT length field type.
const HEADER_LEN_U32: u32 = 44;
/// MADT revision 5 (ACPI 6.2/6.3).
const REVISION: u8 = 5;
/// MADT flags bit 0: the platform also has dual 8259 PICs (KVM's in-kernel
/// irqchip provides them); the OS masks them before using the IOAPIC.
const PCAT_COMPAT: u32 = 1 << 0;

/// Structure types.
pub(super) const TYPE_LAPIC: u8 = 0;
pub(super) const TYPE_IOAPIC: u8 = 1;
pub(super) const TYPE_ISO: u8 = 2;
pub(super) const TYPE_LAPIC_NMI: u8 = 4;
pub(super) const TYPE_X2APIC: u8 = 9;
pub(super) const TYPE_X2APIC_NMI: u8 = 0xa;

/// Highest APIC ID a Processor Local APIC structure may carry: 0xff means
/// "all processors" in the NMI structure and is the xAPIC broadcast ID.
pub(super) const MAX_XAPIC_ID: u32 = 254;
/// Local APIC flags bit 0: enabled.
const LAPIC_ENABLED: u32 = 1 << 0;
/// IOAPIC ID (KVM's IOAPIC resets its ID register to 0).
const IOAPIC_ID: u8 = 0;
/// First GSI the IOAPIC serves.
const IOAPIC_GSI_BASE: u32 = 0;
/// MPS INTI flags: polarity and trigger mode "conform to the bus".
const INTI_CONFORMS: u16 = 0;
/// MPS INTI flags: active high (bits 1:0 = 01), level triggered (bits
/// 3:2 = 11).
const INTI_ACTIVE_HIGH_LEVEL: u16 = 0b1101;
/// NMI structures: processor UID meaning "all processors".
const ALL_PROCESSORS_UID: u8 = 0xff;
/// x2APIC NMI structure: processor UID meaning "all processors".
const ALL_PROCESSORS_X2UID: u32 = 0xffff_ffff;
/// The LAPIC input wired to NMI.
const NMI_LINT: u8 = 1;

/// Standard ISA overrides: (ISA IRQ, GSI, flags). The PIT's IRQ 0 is wired
/// to IOAPIC pin 2; IRQ 9 (the conventional SCI line) is level/active-high.
const OVERRIDES: [(u8, u32, u16); 2] = [(0, 2, INTI_CONFORMS), (9, 9, INTI_ACTIVE_HIGH_LEVEL)];

/// The MADT for `cpus` vCPUs (validated: 1..=MAX_CPUS); vCPU `i` has APIC
/// ID `i` and processor UID `i`.
pub(super) fn build(cpus: u32) -> Vec<u8> {
    let mut sdt = Sdt::new(
        *b"APIC",
        HEADER_LEN_U32,
        REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    sdt.write_u32(36, LAPIC_BASE);
    sdt.write_u32(40, PCAT_COMPAT);
    let mut body = Vec::new();
    let mut any_x2apic = false;
    for id in 0..cpus {
        match u8::try_from(id) {
            Ok(id8) if id <= MAX_XAPIC_ID => body.extend_from_slice(&lapic(id8)),
            _ => {
                any_x2apic = true;
                body.extend_from_slice(&x2apic(id));
            }
        }
    }
    body.extend_from_slice(&ioapic());
    for (irq, gsi, flags) in OVERRIDES {
        body.extend_from_slice(&iso(irq, gsi, flags));
    }
    body.extend_from_slice(&lapic_nmi());
    if any_x2apic {
        body.extend_from_slice(&x2apic_nmi());
    }
    sdt.append_slice(&body);
    sdt.as_slice().to_vec()
}

fn lapic(id: u8) -> [u8; 8] {
    let mut s = [0u8; 8];
    s[0] = TYPE_LAPIC;
    s[1] = 8;
    s[2] = id; // ACPI processor UID
    s[3] = id; // APIC ID
    s[4..8].copy_from_slice(&LAPIC_ENABLED.to_le_bytes());
    s
}

fn x2apic(id: u32) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[0] = TYPE_X2APIC;
    s[1] = 16;
    // 2..4 reserved
    s[4..8].copy_from_slice(&id.to_le_bytes()); // x2APIC ID
    s[8..12].copy_from_slice(&LAPIC_ENABLED.to_le_bytes());
    s[12..16].copy_from_slice(&id.to_le_bytes()); // ACPI processor UID
    s
}

fn ioapic() -> [u8; 12] {
    let mut s = [0u8; 12];
    s[0] = TYPE_IOAPIC;
    s[1] = 12;
    s[2] = IOAPIC_ID;
    s[4..8].copy_from_slice(&IOAPIC_BASE.to_le_bytes());
    s[8..12].copy_from_slice(&IOAPIC_GSI_BASE.to_le_bytes());
    s
}

fn iso(irq: u8, gsi: u32, flags: u16) -> [u8; 10] {
    let mut s = [0u8; 10];
    s[0] = TYPE_ISO;
    s[1] = 10;
    s[2] = 0; // bus: ISA
    s[3] = irq;
    s[4..8].copy_from_slice(&gsi.to_le_bytes());
    s[8..10].copy_from_slice(&flags.to_le_bytes());
    s
}

fn lapic_nmi() -> [u8; 6] {
    let mut s = [0u8; 6];
    s[0] = TYPE_LAPIC_NMI;
    s[1] = 6;
    s[2] = ALL_PROCESSORS_UID;
    s[3..5].copy_from_slice(&INTI_CONFORMS.to_le_bytes());
    s[5] = NMI_LINT;
    s
}

fn x2apic_nmi() -> [u8; 12] {
    let mut s = [0u8; 12];
    s[0] = TYPE_X2APIC_NMI;
    s[1] = 12;
    s[2..4].copy_from_slice(&INTI_CONFORMS.to_le_bytes());
    s[4..8].copy_from_slice(&ALL_PROCESSORS_X2UID.to_le_bytes());
    s[8] = NMI_LINT;
    s
}

/// Splits a MADT's structures into (type, bytes) pairs.
#[cfg(test)]
pub(super) fn structures(t: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut off = HEADER_LEN;
    while off < t.len() {
        let len = usize::from(t[off + 1]);
        assert!(len >= 2, "structure length {len} at {off}");
        out.push((t[off], &t[off..off + len]));
        off += len;
    }
    assert_eq!(off, t.len(), "structures end exactly at the table end");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::byte_sum;

    fn count(t: &[u8], ty: u8) -> usize {
        structures(t).iter().filter(|(k, _)| *k == ty).count()
    }

    #[test]
    fn madt_header() {
        let t = build(2);
        assert_eq!(&t[0..4], b"APIC");
        assert_eq!(byte_sum(&t), 0);
        assert_eq!(
            u32::from_le_bytes([t[4], t[5], t[6], t[7]]),
            u32::try_from(t.len()).expect("small")
        );
        assert_eq!(u32::from_le_bytes([t[36], t[37], t[38], t[39]]), LAPIC_BASE);
        assert_eq!(u32::from_le_bytes([t[40], t[41], t[42], t[43]]), 1);
    }

    #[test]
    fn madt_one_lapic_per_cpu() {
        for cpus in [1u32, 2, 4, 16, 254, 255] {
            let t = build(cpus);
            assert_eq!(byte_sum(&t), 0, "{cpus} cpus");
            assert_eq!(count(&t, TYPE_LAPIC), cpus as usize, "{cpus} cpus");
            assert_eq!(count(&t, TYPE_X2APIC), 0, "{cpus} cpus");
            assert_eq!(count(&t, TYPE_X2APIC_NMI), 0, "{cpus} cpus");
            assert_eq!(count(&t, TYPE_IOAPIC), 1);
            assert_eq!(count(&t, TYPE_ISO), 2);
            assert_eq!(count(&t, TYPE_LAPIC_NMI), 1);
        }
    }

    #[test]
    fn madt_x2apic_from_id_255() {
        let t = build(300);
        assert_eq!(byte_sum(&t), 0);
        assert_eq!(count(&t, TYPE_LAPIC), 255);
        assert_eq!(count(&t, TYPE_X2APIC), 45);
        assert_eq!(count(&t, TYPE_X2APIC_NMI), 1);
        let s = structures(&t);
        let first_x2 = s
            .iter()
            .find(|(k, _)| *k == TYPE_X2APIC)
            .expect("x2APIC entry")
            .1;
        assert_eq!(
            u32::from_le_bytes(first_x2[4..8].try_into().expect("4")),
            255
        );
        assert_eq!(
            u32::from_le_bytes(first_x2[12..16].try_into().expect("4")),
            255
        );
    }

    #[test]
    fn madt_lapic_ids_in_order_and_enabled() {
        let t = build(8);
        let ids: Vec<(u8, u8, u32)> = structures(&t)
            .iter()
            .filter(|(k, _)| *k == TYPE_LAPIC)
            .map(|(_, s)| {
                (
                    s[2],
                    s[3],
                    u32::from_le_bytes(s[4..8].try_into().expect("4")),
                )
            })
            .collect();
        let want: Vec<(u8, u8, u32)> = (0..8u8).map(|i| (i, i, 1)).collect();
        assert_eq!(ids, want);
    }

    #[test]
    fn madt_ioapic_and_overrides() {
        let t = build(1);
        let s = structures(&t);
        let io = s.iter().find(|(k, _)| *k == TYPE_IOAPIC).expect("IOAPIC").1;
        assert_eq!(
            u32::from_le_bytes(io[4..8].try_into().expect("4")),
            0xfec0_0000
        );
        assert_eq!(u32::from_le_bytes(io[8..12].try_into().expect("4")), 0);
        let isos: Vec<(u8, u32, u16)> = s
            .iter()
            .filter(|(k, _)| *k == TYPE_ISO)
            .map(|(_, e)| {
                (
                    e[3],
                    u32::from_le_bytes(e[4..8].try_into().expect("4")),
                    u16::from_le_bytes([e[8], e[9]]),
                )
            })
            .collect();
        assert_eq!(isos, vec![(0, 2, 0), (9, 9, 0x0d)]);
    }
}
