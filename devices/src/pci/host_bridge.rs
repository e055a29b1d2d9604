//! The host bridge at 00:00.0: identity only, no BARs, no capabilities.

use super::PciDevice;
use super::config::{PciConfig, PciIdentity};

/// Vendor ID of the host bridge (Red Hat's generic PCIe host bridge ID, which
/// Linux binds no quirks to).
pub const HOST_BRIDGE_VENDOR: u16 = 0x1b36;
/// Device ID of the host bridge.
pub const HOST_BRIDGE_DEVICE: u16 = 0x0008;

/// The host bridge function.
#[derive(Debug)]
pub struct HostBridge {
    config: PciConfig,
}

impl HostBridge {
    /// A host bridge (class 06 00 00).
    pub fn new() -> Self {
        Self {
            config: PciConfig::new(PciIdentity {
                vendor_id: HOST_BRIDGE_VENDOR,
                device_id: HOST_BRIDGE_DEVICE,
                revision: 0,
                class_code: 0x06_00_00,
                subsystem_vendor_id: HOST_BRIDGE_VENDOR,
                subsystem_id: 0x1100,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_class() {
        let mut hb = HostBridge::new();
        let mut d = [0u8; 4];
        hb.config_read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
        hb.config_read(8, &mut d);
        assert_eq!(u32::from_le_bytes(d) >> 8, 0x06_00_00);
        assert!(hb.config().bars().is_empty());
    }
}
