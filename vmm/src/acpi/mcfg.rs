//! The MCFG table (PCI Firmware spec 3.0, section 4.1.2): where the PCIe
//! enhanced configuration access mechanism (ECAM) window is. One allocation:
//! segment 0, buses [`PCI_BUS_FIRST`]..=[`PCI_BUS_LAST`] at [`ECAM_BASE`].
//! Linux uses it only if the window is also E820-reserved or claimed by a
//! PNP0C02 device's `_CRS` (the DSDT does the latter).

use acpi_tables::mcfg::MCFG;

use super::{ECAM_BASE, OEM_ID, OEM_REVISION, OEM_TABLE_ID, PCI_BUS_FIRST, PCI_BUS_LAST, to_bytes};

/// Offset of the first allocation: 36-byte header plus 8 reserved bytes.
#[cfg(test)]
pub(super) const ALLOCATION_OFFSET: usize = 44;
/// PCI segment of the one allocation.
pub(super) const SEGMENT: u16 = 0;

/// The MCFG for the platform's single ECAM window.
pub(super) fn build() -> Vec<u8> {
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(ECAM_BASE, SEGMENT, PCI_BUS_FIRST, PCI_BUS_LAST);
    to_bytes(&mcfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::byte_sum;

    #[test]
    fn mcfg_one_allocation() {
        let t = build();
        assert_eq!(&t[0..4], b"MCFG");
        assert_eq!(t.len(), ALLOCATION_OFFSET + 16);
        assert_eq!(u32::from_le_bytes([t[4], t[5], t[6], t[7]]), 60);
        assert_eq!(byte_sum(&t), 0);
        let a = &t[ALLOCATION_OFFSET..];
        assert_eq!(
            u64::from_le_bytes(a[0..8].try_into().expect("8")),
            0xe000_0000
        );
        assert_eq!(u16::from_le_bytes([a[8], a[9]]), 0, "segment");
        assert_eq!(a[10], 0, "start bus");
        assert_eq!(a[11], 0, "end bus");
        assert!(a[12..16].iter().all(|b| *b == 0), "reserved");
    }
}
