//! PCI Express on bus 0: configuration space, capabilities, MSI-X, the root
//! complex (ECAM, CF8/CFC, BAR decoding) and the host bridge.
//!
//! A function implements [`PciDevice`]; [`root::PciRoot`] owns the
//! functions, places their BARs and routes config and BAR accesses to them.

pub mod capability;
pub mod config;
pub mod host_bridge;
pub mod msi;
pub mod msix;
pub mod root;

pub use config::{BarInfo, BarKind, PciConfig, PciIdentity};
pub use root::{PciBarWindow, PciConfigIo, PciEcam, PciRoot};

/// One PCI function as the root complex sees it.
///
/// Config accesses arrive with an offset in 0..4096 and 1, 2 or 4 bytes (any
/// alignment the guest picks); BAR accesses with the BAR index and the offset
/// inside it. None of them may panic.
pub trait PciDevice: Send {
    /// The function's configuration space.
    fn config(&self) -> &PciConfig;
    /// Mutable access for placement by the root complex.
    fn config_mut(&mut self) -> &mut PciConfig;
    /// A guest config read. The default reads the configuration space.
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config().read(offset, data);
    }
    /// A guest config write. The default applies the write masks; devices
    /// with side effects (MSI-X enable, PRI reset) override it.
    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config_mut().write(offset, data);
    }
    /// A read of `data.len()` bytes at `offset` inside BAR `bar`.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// A write at `offset` inside BAR `bar`.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]);
}
