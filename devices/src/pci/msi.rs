//! The MSI capability (ID 0x05): 64-bit address, per-vector masking, one
//! vector. All of its state lives in config space, so the device calls
//! [`Msi::notify`] to signal and [`Msi::config_written`] after every config
//! write (an unmask delivers a pending message).

use super::config::{ConfigError, PciConfig};
use crate::interrupt::{InterruptSink, MsiMessage};

/// Capability ID.
pub const CAP_ID_MSI: u8 = 0x05;
/// Message control: enable.
const CTRL_ENABLE: u16 = 1 << 0;
/// Message control: 64-bit address capable.
const CTRL_64BIT: u16 = 1 << 7;
/// Message control: per-vector masking capable.
const CTRL_PVM: u16 = 1 << 8;
/// Capability length (64-bit with per-vector masking).
const LEN: usize = 0x18;

/// The MSI capability of one function (state in config space).
#[derive(Debug, Clone, Copy)]
pub struct Msi {
    cap: u16,
}

impl Msi {
    /// Adds the capability to `config`.
    pub fn new(config: &mut PciConfig) -> Result<Self, ConfigError> {
        let mut body = [0u8; LEN];
        body[2..4].copy_from_slice(&(CTRL_64BIT | CTRL_PVM).to_le_bytes());
        let mut rw = [0u8; LEN];
        rw[2..4].copy_from_slice(&CTRL_ENABLE.to_le_bytes());
        rw[4..8].copy_from_slice(&0xffff_fffcu32.to_le_bytes());
        rw[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        rw[12..14].copy_from_slice(&u16::MAX.to_le_bytes());
        rw[16] = 1;
        let cap = config.add_capability(CAP_ID_MSI, &body, &rw, &[])?;
        Ok(Self { cap })
    }

    /// Offset of the capability.
    pub fn cap_offset(&self) -> u16 {
        self.cap
    }

    /// Whether MSI is enabled.
    pub fn enabled(&self, config: &PciConfig) -> bool {
        config.read_u16(self.cap + 2) & CTRL_ENABLE != 0
    }

    fn message(&self, config: &PciConfig) -> MsiMessage {
        let address = u64::from(config.read_u32(self.cap + 4))
            | (u64::from(config.read_u32(self.cap + 8)) << 32);
        MsiMessage {
            address,
            data: u32::from(config.read_u16(self.cap + 12)),
        }
    }

    fn masked(&self, config: &PciConfig) -> bool {
        config.read_u32(self.cap + 16) & 1 != 0
    }

    fn set_pending(&self, config: &mut PciConfig, on: bool) {
        config.set_u32(self.cap + 20, u32::from(on));
    }

    /// Signals the vector: sent if enabled and unmasked, pending if masked,
    /// dropped if disabled. Returns whether a message was sent.
    pub fn notify(&self, config: &mut PciConfig, sink: &dyn InterruptSink) -> bool {
        if !self.enabled(config) {
            return false;
        }
        if self.masked(config) {
            self.set_pending(config, true);
            return false;
        }
        sink.raise_msi(self.message(config));
        true
    }

    /// After a config write: delivers a pending message that became
    /// unmasked.
    pub fn config_written(&self, config: &mut PciConfig, sink: &dyn InterruptSink) {
        let pending = config.read_u32(self.cap + 20) & 1 != 0;
        if pending && self.enabled(config) && !self.masked(config) {
            self.set_pending(config, false);
            sink.raise_msi(self.message(config));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::PciIdentity;
    use super::super::msix::tests::RecordingSink;
    use super::*;

    fn setup() -> (PciConfig, Msi) {
        let mut c = PciConfig::new(PciIdentity {
            vendor_id: 1,
            device_id: 2,
            revision: 0,
            class_code: 0,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
        });
        let m = Msi::new(&mut c).unwrap();
        (c, m)
    }

    #[test]
    fn capability_layout_and_delivery() {
        let (mut c, m) = setup();
        let sink = RecordingSink::default();
        let o = m.cap_offset();
        assert_eq!(c.read_u16(o) & 0xff, 0x05);
        assert_eq!(c.read_u16(o + 2), CTRL_64BIT | CTRL_PVM);
        assert!(!m.notify(&mut c, &sink), "disabled");
        c.write(o + 4, &0xfee0_1003u32.to_le_bytes());
        c.write(o + 12, &0x4455u16.to_le_bytes());
        c.write(o + 2, &0xffffu16.to_le_bytes());
        assert_eq!(
            c.read_u16(o + 2),
            CTRL_64BIT | CTRL_PVM | CTRL_ENABLE,
            "only enable is writable"
        );
        assert!(m.notify(&mut c, &sink));
        assert_eq!(
            sink.take(),
            vec![MsiMessage {
                address: 0xfee0_1000,
                data: 0x4455
            }]
        );
    }

    #[test]
    fn masked_message_pends_until_unmasked() {
        let (mut c, m) = setup();
        let sink = RecordingSink::default();
        let o = m.cap_offset();
        c.write(o + 2, &CTRL_ENABLE.to_le_bytes());
        c.write(o + 16, &1u32.to_le_bytes());
        assert!(!m.notify(&mut c, &sink));
        assert_eq!(c.read_u32(o + 20), 1);
        c.write(o + 20, &0u32.to_le_bytes());
        assert_eq!(c.read_u32(o + 20), 1, "pending bits are read-only");
        c.write(o + 16, &0u32.to_le_bytes());
        m.config_written(&mut c, &sink);
        assert_eq!(sink.take().len(), 1);
        assert_eq!(c.read_u32(o + 20), 0);
    }

    #[test]
    fn reject_writes_to_read_only_fields() {
        let (mut c, m) = setup();
        let o = m.cap_offset();
        c.write(o + 16, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_u32(o + 16), 1, "one vector: one mask bit");
        c.write(o, &[0xff, 0xff]);
        assert_eq!(c.read_u16(o) & 0xff, 0x05);
    }
}
