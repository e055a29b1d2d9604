//! The DMAR table (Intel VT-d spec, chapter 8): how the guest finds the
//! vIOMMU. One DMA remapping hardware unit definition (DRHD) with
//! INCLUDE_PCI_ALL covers every PCI device on segment 0, so no device scopes
//! are needed; there is no interrupt remapping, RMRR, ATSR or SATC.

use acpi_tables::sdt::Sdt;

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID, ViommuAcpi};

/// DMAR header length: the 36-byte SDT header, host address width (1),
/// flags (1), 10 reserved bytes.
#[cfg(test)]
pub(super) const HEADER_LEN: usize = 48;
/// [`HEADER_LEN`] as the SDT length field type.
const HEADER_LEN_U32: u32 = 48;
/// Offset of the host address width byte (width - 1).
pub(super) const HAW_OFFSET: usize = 36;
/// Offset of the DMAR flags byte.
pub(super) const FLAGS_OFFSET: usize = 37;
/// DMAR revision (VT-d spec 3.x and later).
const REVISION: u8 = 1;
/// DMAR flags: no INTR_REMAP (bit 0), no X2APIC_OPT_OUT (bit 1), no
/// DMA_CTRL_PLATFORM_OPT_IN (bit 2). The unit has no interrupt remapping.
pub(super) const DMAR_FLAGS: u8 = 0;

/// Remapping structure type of a DRHD.
pub(super) const DRHD_TYPE: u16 = 0;
/// Length of a DRHD without device scopes.
pub(super) const DRHD_LEN: u16 = 16;
/// DRHD flags bit 0: the unit covers every PCI device of its segment not
/// claimed by another unit.
pub(super) const DRHD_INCLUDE_PCI_ALL: u8 = 1 << 0;
/// DRHD size field: the register block is `2^n` 4 KiB pages; 0 = 4 KiB.
pub(super) const DRHD_SIZE_4K: u8 = 0;
/// PCI segment the unit covers.
pub(super) const DRHD_SEGMENT: u16 = 0;

/// The DMAR for one vIOMMU. `v` must have been validated
/// ([`super::AcpiConfig::validate`]): width in 12..=64.
pub(super) fn build(v: &ViommuAcpi) -> Vec<u8> {
    let mut sdt = Sdt::new(
        *b"DMAR",
        HEADER_LEN_U32,
        REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    // The header stores the width minus one; validation keeps it >= 12.
    sdt.write_u8(HAW_OFFSET, v.host_address_width_bits.saturating_sub(1));
    sdt.write_u8(FLAGS_OFFSET, DMAR_FLAGS);
    sdt.append_slice(&drhd(v.base));
    sdt.as_slice().to_vec()
}

/// One DRHD: type, length, flags, size, segment, register base.
fn drhd(base: u64) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..2].copy_from_slice(&DRHD_TYPE.to_le_bytes());
    d[2..4].copy_from_slice(&DRHD_LEN.to_le_bytes());
    d[4] = DRHD_INCLUDE_PCI_ALL;
    d[5] = DRHD_SIZE_4K;
    d[6..8].copy_from_slice(&DRHD_SEGMENT.to_le_bytes());
    d[8..16].copy_from_slice(&base.to_le_bytes());
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::byte_sum;

    fn le16(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([b[off], b[off + 1]])
    }

    #[test]
    fn dmar_header_and_drhd_fields() {
        let t = build(&ViommuAcpi {
            base: 0xfed9_0000,
            host_address_width_bits: 48,
        });
        assert_eq!(&t[0..4], b"DMAR");
        assert_eq!(t.len(), HEADER_LEN + usize::from(DRHD_LEN));
        assert_eq!(u32::from_le_bytes([t[4], t[5], t[6], t[7]]), 64);
        assert_eq!(byte_sum(&t), 0);
        assert_eq!(t[HAW_OFFSET], 47);
        assert_eq!(t[FLAGS_OFFSET], 0);
        assert!(t[38..48].iter().all(|b| *b == 0), "reserved bytes");
        let d = &t[HEADER_LEN..];
        assert_eq!(le16(d, 0), 0, "DRHD type");
        assert_eq!(le16(d, 2), 16, "DRHD length");
        assert_eq!(d[4], 1, "INCLUDE_PCI_ALL");
        assert_eq!(d[5], 0, "4 KiB register block");
        assert_eq!(le16(d, 6), 0, "segment");
        assert_eq!(
            u64::from_le_bytes(d[8..16].try_into().expect("8 bytes")),
            0xfed9_0000
        );
    }

    #[test]
    fn dmar_five_level_width() {
        let t = build(&ViommuAcpi {
            base: 0xfed9_0000,
            host_address_width_bits: 57,
        });
        assert_eq!(t[HAW_OFFSET], 56);
        assert_eq!(byte_sum(&t), 0);
    }

    #[test]
    fn dmar_base_above_4g_is_kept_whole() {
        let t = build(&ViommuAcpi {
            base: 0x1_2345_6000,
            host_address_width_bits: 48,
        });
        let d = &t[HEADER_LEN..];
        assert_eq!(
            u64::from_le_bytes(d[8..16].try_into().expect("8 bytes")),
            0x1_2345_6000
        );
        assert_eq!(byte_sum(&t), 0);
    }
}
