//! Builders for the PCI capabilities our devices expose: PCI Express (0x10),
//! and the extended capabilities PASID (0x1B), ATS (0x0F) and PRI (0x13).
//!
//! Each builder lays out the register block with its read-only values and
//! write masks in a [`PciConfig`] and returns the offset; the device reads
//! the control registers back from config space when it needs them. MSI-X
//! lives in [`super::msix`] because it also owns BAR-resident state.

use super::config::{ConfigError, PciConfig};

/// Standard capability ID: PCI Express.
pub const CAP_ID_PCIE: u8 = 0x10;
/// Standard capability ID: MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;
/// Extended capability ID: Address Translation Services.
pub const EXT_CAP_ID_ATS: u16 = 0x0f;
/// Extended capability ID: Page Request Interface.
pub const EXT_CAP_ID_PRI: u16 = 0x13;
/// Extended capability ID: PASID.
pub const EXT_CAP_ID_PASID: u16 = 0x1b;

/// PCIe device/port type: root complex integrated endpoint.
pub const PCIE_TYPE_RC_INTEGRATED_ENDPOINT: u8 = 0x9;
/// DEVCAP2 bit 21: End-End TLP Prefix Supported (Linux checks it before
/// enabling PASID).
pub const DEVCAP2_END_END_TLP_PREFIX: u32 = 1 << 21;
/// DEVCAP2 bits 23:22: Max End-End TLP Prefixes (01b = 1).
pub const DEVCAP2_MAX_END_END_PREFIXES_1: u32 = 1 << 22;

/// PASID control: enable.
pub const PASID_CTRL_ENABLE: u16 = 1 << 0;
/// PASID control: privileged mode enable.
pub const PASID_CTRL_PRIV: u16 = 1 << 2;
/// PASID capability: privileged mode supported.
pub const PASID_CAP_PRIV: u16 = 1 << 2;

/// ATS capability: page aligned request.
pub const ATS_CAP_PAGE_ALIGNED: u16 = 1 << 5;
/// ATS control: enable.
pub const ATS_CTRL_ENABLE: u16 = 1 << 15;

/// PRI control: enable.
pub const PRI_CTRL_ENABLE: u16 = 1 << 0;
/// PRI control: reset (write-only; clears the status error bits).
pub const PRI_CTRL_RESET: u16 = 1 << 1;
/// PRI status: response failure (RW1C).
pub const PRI_STATUS_RESPONSE_FAILURE: u16 = 1 << 0;
/// PRI status: unexpected page request group index (RW1C).
pub const PRI_STATUS_UPRGI: u16 = 1 << 1;
/// PRI status: stopped.
pub const PRI_STATUS_STOPPED: u16 = 1 << 8;
/// PRI status: PRG response PASID required.
pub const PRI_STATUS_PASID_REQUIRED: u16 = 1 << 15;

/// Length of a PCIe capability structure, version 2.
const PCIE_CAP_LEN: usize = 0x3c;

/// Adds a PCI Express capability (version 2) of `port_type` with `devcap2`.
/// Device Control and Device Control 2 are writable; there is no link.
pub fn add_pcie(config: &mut PciConfig, port_type: u8, devcap2: u32) -> Result<u16, ConfigError> {
    let mut body = [0u8; PCIE_CAP_LEN];
    let caps: u16 = 2 | (u16::from(port_type & 0xf) << 4);
    body[2..4].copy_from_slice(&caps.to_le_bytes());
    // DEVCAP: max payload 128 bytes, role-based error reporting (bit 15).
    body[4..8].copy_from_slice(&(1u32 << 15).to_le_bytes());
    body[0x24..0x28].copy_from_slice(&devcap2.to_le_bytes());
    let mut rw = [0u8; PCIE_CAP_LEN];
    // DEVCTL: everything but bit 15 (function level reset is not offered).
    rw[8..10].copy_from_slice(&0x7fffu16.to_le_bytes());
    // DEVCTL2: completion timeout, ARI, atomics, IDO, LTR, OBFF, end-end
    // prefix blocking: all plain storage here.
    rw[0x28..0x2a].copy_from_slice(&0xffffu16.to_le_bytes());
    let mut w1c = [0u8; PCIE_CAP_LEN];
    // DEVSTA error bits 3:0.
    w1c[0x0a] = 0x0f;
    config.add_capability(CAP_ID_PCIE, &body, &rw, &w1c)
}

/// Adds a PASID extended capability with `width` PASID bits (1..=20) and
/// privileged mode supported if `privileged`.
pub fn add_pasid(config: &mut PciConfig, width: u8, privileged: bool) -> Result<u16, ConfigError> {
    let mut body = [0u8; 8];
    let priv_bit = if privileged { PASID_CAP_PRIV } else { 0 };
    let cap = (u16::from(width.min(20) & 0x1f) << 8) | priv_bit;
    body[4..6].copy_from_slice(&cap.to_le_bytes());
    let ctrl_rw = PASID_CTRL_ENABLE | priv_bit;
    let mut rw = [0u8; 8];
    rw[6..8].copy_from_slice(&ctrl_rw.to_le_bytes());
    config.add_ext_capability(EXT_CAP_ID_PASID, 1, &body, &rw, &[])
}

/// Adds an ATS extended capability with the page aligned request bit and an
/// invalidate queue depth of 32 (encoded 0).
pub fn add_ats(config: &mut PciConfig) -> Result<u16, ConfigError> {
    let mut body = [0u8; 8];
    body[4..6].copy_from_slice(&ATS_CAP_PAGE_ALIGNED.to_le_bytes());
    let mut rw = [0u8; 8];
    rw[6..8].copy_from_slice(&(ATS_CTRL_ENABLE | 0x1f).to_le_bytes());
    config.add_ext_capability(EXT_CAP_ID_ATS, 1, &body, &rw, &[])
}

/// Adds a PRI extended capability: stopped at reset, PRG response PASID
/// required, `capacity` outstanding page requests. The reset bit is not
/// storage: the device handles it in its config-write path with
/// [`pri_apply_reset`].
pub fn add_pri(config: &mut PciConfig, capacity: u32) -> Result<u16, ConfigError> {
    let mut body = [0u8; 16];
    let status = PRI_STATUS_STOPPED | PRI_STATUS_PASID_REQUIRED;
    body[6..8].copy_from_slice(&status.to_le_bytes());
    body[8..12].copy_from_slice(&capacity.to_le_bytes());
    let mut rw = [0u8; 16];
    rw[4..6].copy_from_slice(&(PRI_CTRL_ENABLE | PRI_CTRL_RESET).to_le_bytes());
    rw[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut w1c = [0u8; 16];
    w1c[6..8].copy_from_slice(&(PRI_STATUS_RESPONSE_FAILURE | PRI_STATUS_UPRGI).to_le_bytes());
    config.add_ext_capability(EXT_CAP_ID_PRI, 1, &body, &rw, &w1c)
}

/// After a config write to the PRI capability at `offset`: performs a
/// requested reset (clears the error status bits; the reset bit reads 0)
/// and recomputes the stopped bit, which is set while PRI is disabled and
/// no page request is outstanding.
pub fn pri_apply_reset(config: &mut PciConfig, offset: u16, outstanding: bool) {
    let mut ctrl = config.read_u16(offset + 4);
    let mut status = config.read_u16(offset + 6);
    if ctrl & PRI_CTRL_RESET != 0 {
        ctrl &= !PRI_CTRL_RESET;
        if ctrl & PRI_CTRL_ENABLE == 0 {
            status &= !(PRI_STATUS_RESPONSE_FAILURE | PRI_STATUS_UPRGI);
        }
        config.set_u16(offset + 4, ctrl);
    }
    if ctrl & PRI_CTRL_ENABLE == 0 && !outstanding {
        status |= PRI_STATUS_STOPPED;
    } else {
        status &= !PRI_STATUS_STOPPED;
    }
    config.set_u16(offset + 6, status);
}

#[cfg(test)]
mod tests {
    use super::super::config::PciIdentity;
    use super::*;

    fn cfg() -> PciConfig {
        PciConfig::new(PciIdentity {
            vendor_id: 1,
            device_id: 2,
            revision: 0,
            class_code: 0,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
        })
    }

    #[test]
    fn pcie_capability_reports_type_and_devcap2() {
        let mut c = cfg();
        let off = add_pcie(
            &mut c,
            PCIE_TYPE_RC_INTEGRATED_ENDPOINT,
            DEVCAP2_END_END_TLP_PREFIX,
        )
        .unwrap();
        assert_eq!(c.read_u16(off + 2), 0x92);
        assert_eq!(c.read_u32(off + 0x24) & (1 << 21), 1 << 21);
        c.write(off + 0x24, &[0; 4]);
        assert_eq!(
            c.read_u32(off + 0x24),
            DEVCAP2_END_END_TLP_PREFIX,
            "DEVCAP2 is read-only"
        );
        c.write(off + 8, &0xffffu16.to_le_bytes());
        assert_eq!(c.read_u16(off + 8), 0x7fff);
    }

    #[test]
    fn pasid_capability_width_and_control() {
        let mut c = cfg();
        let off = add_pasid(&mut c, 20, true).unwrap();
        assert_eq!(c.read_u16(off + 4), (20 << 8) | PASID_CAP_PRIV);
        c.write(off + 6, &0xffffu16.to_le_bytes());
        assert_eq!(c.read_u16(off + 6), PASID_CTRL_ENABLE | PASID_CTRL_PRIV);
    }

    #[test]
    fn ats_capability_page_aligned_and_enable() {
        let mut c = cfg();
        let off = add_ats(&mut c).unwrap();
        assert_eq!(
            c.read_u16(off + 4) & ATS_CAP_PAGE_ALIGNED,
            ATS_CAP_PAGE_ALIGNED
        );
        c.write(off + 6, &0xffffu16.to_le_bytes());
        assert_eq!(c.read_u16(off + 6), 0x801f);
    }

    #[test]
    fn pri_stopped_at_reset_and_reset_clears_errors() {
        let mut c = cfg();
        let off = add_pri(&mut c, 16).unwrap();
        let st = c.read_u16(off + 6);
        assert_eq!(st, PRI_STATUS_STOPPED | PRI_STATUS_PASID_REQUIRED);
        assert_eq!(c.read_u32(off + 8), 16);
        c.write(off + 12, &32u32.to_le_bytes());
        assert_eq!(c.read_u32(off + 12), 32);
        c.write(off + 4, &PRI_CTRL_ENABLE.to_le_bytes());
        pri_apply_reset(&mut c, off, false);
        assert_eq!(c.read_u16(off + 6) & PRI_STATUS_STOPPED, 0);
        c.set_u16(off + 6, c.read_u16(off + 6) | PRI_STATUS_RESPONSE_FAILURE);
        // Reset while enabled does not clear the error.
        c.write(off + 4, &(PRI_CTRL_ENABLE | PRI_CTRL_RESET).to_le_bytes());
        pri_apply_reset(&mut c, off, false);
        assert_eq!(c.read_u16(off + 4), PRI_CTRL_ENABLE);
        assert_ne!(c.read_u16(off + 6) & PRI_STATUS_RESPONSE_FAILURE, 0);
        c.write(off + 4, &PRI_CTRL_RESET.to_le_bytes());
        pri_apply_reset(&mut c, off, false);
        assert_eq!(c.read_u16(off + 4), 0);
        assert_eq!(
            c.read_u16(off + 6),
            PRI_STATUS_STOPPED | PRI_STATUS_PASID_REQUIRED
        );
        // RW1C on the error bit works from the guest side too.
        c.set_u16(off + 6, c.read_u16(off + 6) | PRI_STATUS_UPRGI);
        c.write(off + 6, &PRI_STATUS_UPRGI.to_le_bytes());
        assert_eq!(c.read_u16(off + 6) & PRI_STATUS_UPRGI, 0);
    }

    #[test]
    fn pri_not_stopped_while_a_request_is_outstanding() {
        let mut c = cfg();
        let off = add_pri(&mut c, 16).unwrap();
        pri_apply_reset(&mut c, off, true);
        assert_eq!(c.read_u16(off + 6) & PRI_STATUS_STOPPED, 0);
    }
}
