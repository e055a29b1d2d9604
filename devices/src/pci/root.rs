//! The PCIe root complex of bus 0: device slots, BAR placement and decoding,
//! and the two ways a guest reaches configuration space (ECAM MMIO and the
//! legacy CF8/CFC ports).
//!
//! [`PciRoot`] is shared (`Arc`) by three bus devices the vmm inserts:
//! [`PciEcam`] on the MMIO bus at [`ECAM_BASE`], [`PciConfigIo`] on the port
//! bus at [`CONFIG_IO_PORT`], and [`PciBarWindow`] on the MMIO bus over the
//! whole 32-bit BAR window. The window dispatches by the BAR values the guest
//! currently has programmed, so relocating a BAR needs no bus changes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::PciDevice;
use super::host_bridge::HostBridge;
use crate::bus::{BusDevice, inclusive_end};

// The platform map declares these (one place for the whole map).
pub use crate::layout::{
    BAR_WINDOW_BASE, BAR_WINDOW_SIZE, CONFIG_IO_LEN, CONFIG_IO_PORT, DEVICES_PER_BUS, ECAM_BASE,
    ECAM_SIZE,
};
/// Smallest BAR placement alignment: one page, so no two BARs share a page.
const MIN_BAR_ALIGN: u64 = 4096;

/// A PCI function shared by the root and whoever else drives it (the vmm's
/// event loop, the vIOMMU front end).
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Errors adding devices (VMM configuration errors).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    /// Device numbers are 0..32 and 0 is the host bridge.
    #[error("device number {0} is invalid or taken")]
    SlotUnavailable(u8),
    /// The BAR window has no room for the device's BARs.
    #[error("BAR {bar} of device {device} ({size:#x} bytes) does not fit in the BAR window")]
    WindowFull {
        /// Device number.
        device: u8,
        /// BAR index.
        bar: usize,
        /// BAR size.
        size: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct Decoded {
    base: u64,
    size: u64,
    device: u8,
    bar: usize,
}

struct Inner {
    devices: BTreeMap<u8, SharedPciDevice>,
    decode: Vec<Decoded>,
    next_free: u64,
}

/// The root complex of bus 0 (segment 0).
pub struct PciRoot {
    inner: Mutex<Inner>,
}

impl fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        let devs: Vec<u8> = inner.devices.keys().copied().collect();
        f.debug_struct("PciRoot")
            .field("devices", &devs)
            .field("decode", &inner.decode)
            .finish()
    }
}

fn lock_dev(d: &SharedPciDevice) -> MutexGuard<'_, dyn PciDevice + 'static> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for PciRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl PciRoot {
    /// A bus with the host bridge at 00:00.0.
    pub fn new() -> Self {
        let mut devices: BTreeMap<u8, SharedPciDevice> = BTreeMap::new();
        devices.insert(0, Arc::new(Mutex::new(HostBridge::new())));
        Self {
            inner: Mutex::new(Inner {
                devices,
                decode: Vec::new(),
                next_free: BAR_WINDOW_BASE,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `device` as function 0 of device number `number` and places its
    /// BARs in the window (in call order, each aligned to its size). Adding
    /// devices in the same order gives the same addresses on every run.
    pub fn add_device(&self, number: u8, device: SharedPciDevice) -> Result<(), RootError> {
        let mut inner = self.lock();
        if number == 0 || number >= DEVICES_PER_BUS || inner.devices.contains_key(&number) {
            return Err(RootError::SlotUnavailable(number));
        }
        let window_end = BAR_WINDOW_BASE + BAR_WINDOW_SIZE;
        let mut next = inner.next_free;
        {
            let mut dev = lock_dev(&device);
            let mut placed = Vec::new();
            for bar in dev.config().bars() {
                let align = bar.size.max(MIN_BAR_ALIGN);
                let base = next.checked_next_multiple_of(align);
                let end = base.and_then(|b| b.checked_add(align));
                match (base, end) {
                    (Some(b), Some(e)) if e <= window_end => {
                        placed.push((bar.index, b));
                        next = e;
                    }
                    _ => {
                        return Err(RootError::WindowFull {
                            device: number,
                            bar: bar.index,
                            size: bar.size,
                        });
                    }
                }
            }
            for (index, base) in placed {
                dev.config_mut().set_bar_address(index, base);
            }
        }
        inner.next_free = next;
        inner.devices.insert(number, device.clone());
        Self::refresh(&mut inner, number, &device);
        Ok(())
    }

    /// Recomputes the decoded BAR ranges of device `number`: only while its
    /// memory space is enabled, and only BARs wholly inside the window.
    fn refresh(inner: &mut Inner, number: u8, device: &SharedPciDevice) {
        inner.decode.retain(|d| d.device != number);
        let dev = lock_dev(device);
        if !dev.config().memory_enabled() {
            return;
        }
        for bar in dev.config().bars() {
            let inside = bar.address >= BAR_WINDOW_BASE
                && inclusive_end(bar.address, bar.size)
                    .is_some_and(|e| e < BAR_WINDOW_BASE + BAR_WINDOW_SIZE);
            if inside {
                inner.decode.push(Decoded {
                    base: bar.address,
                    size: bar.size,
                    device: number,
                    bar: bar.index,
                });
            }
        }
        inner.decode.sort_by_key(|d| (d.device, d.bar));
    }

    fn device(&self, bus: u8, number: u8, function: u8) -> Option<SharedPciDevice> {
        if bus != 0 || function != 0 {
            return None;
        }
        self.lock().devices.get(&number).cloned()
    }

    /// A config read; absent functions read all-ones.
    pub fn config_read(&self, bus: u8, number: u8, function: u8, offset: u16, data: &mut [u8]) {
        match self.device(bus, number, function) {
            Some(d) => lock_dev(&d).config_read(offset, data),
            None => data.fill(0xff),
        }
    }

    /// A config write; writes to absent functions are dropped. BAR decoding
    /// follows the new BAR and command values at once.
    pub fn config_write(&self, bus: u8, number: u8, function: u8, offset: u16, data: &[u8]) {
        let Some(d) = self.device(bus, number, function) else {
            return;
        };
        lock_dev(&d).config_write(offset, data);
        let mut inner = self.lock();
        Self::refresh(&mut inner, number, &d);
    }

    fn find_bar(&self, addr: u64, len: usize) -> Option<(SharedPciDevice, usize, u64)> {
        let inner = self.lock();
        let last = addr.checked_add(u64::try_from(len).ok()?.checked_sub(1)?)?;
        let d = inner
            .decode
            .iter()
            .find(|d| addr >= d.base && inclusive_end(d.base, d.size).is_some_and(|e| last <= e))?;
        let dev = inner.devices.get(&d.device)?.clone();
        Some((dev, d.bar, addr - d.base))
    }

    /// An MMIO read at guest-physical `addr`; returns false when no BAR
    /// decodes the whole access (the caller returns all-ones).
    pub fn bar_read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((dev, bar, offset)) = self.find_bar(addr, data.len()) else {
            return false;
        };
        lock_dev(&dev).bar_read(bar, offset, data);
        true
    }

    /// An MMIO write at guest-physical `addr`; false when no BAR decodes it.
    pub fn bar_write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((dev, bar, offset)) = self.find_bar(addr, data.len()) else {
            return false;
        };
        lock_dev(&dev).bar_write(bar, offset, data);
        true
    }

    /// Where BAR `bar` of device `number` is currently programmed (whether
    /// or not it is decoded).
    pub fn bar_address(&self, number: u8, bar: usize) -> Option<u64> {
        let d = self.device(0, number, 0)?;
        let b = lock_dev(&d)
            .config()
            .bars()
            .into_iter()
            .find(|b| b.index == bar)?;
        Some(b.address)
    }
}

/// The ECAM window as an MMIO bus device (insert at [`ECAM_BASE`],
/// [`ECAM_SIZE`] bytes).
#[derive(Debug)]
pub struct PciEcam {
    root: Arc<PciRoot>,
}

impl PciEcam {
    /// An ECAM handler for `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root }
    }

    fn decode(offset: u64) -> Option<(u8, u8, u8, u16)> {
        let bus = u8::try_from(offset >> 20).ok()?;
        let dev = u8::try_from((offset >> 15) & 0x1f).ok()?;
        let func = u8::try_from((offset >> 12) & 0x7).ok()?;
        let reg = u16::try_from(offset & 0xfff).ok()?;
        Some((bus, dev, func, reg))
    }
}

impl BusDevice for PciEcam {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match Self::decode(offset) {
            Some((b, d, f, r)) => self.root.config_read(b, d, f, r, data),
            None => data.fill(0xff),
        }
    }
    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let Some((b, d, f, r)) = Self::decode(offset) {
            self.root.config_write(b, d, f, r, data);
        }
    }
}

/// Configuration mechanism #1 (ports 0xcf8 address, 0xcfc..0xcff data) as a
/// port bus device (insert at [`CONFIG_IO_PORT`], [`CONFIG_IO_LEN`]).
#[derive(Debug)]
pub struct PciConfigIo {
    root: Arc<PciRoot>,
    address: u32,
}

impl PciConfigIo {
    /// A CF8/CFC handler for `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root, address: 0 }
    }

    /// The target of a data-port access at data offset `byte` (0..4).
    fn target(&self, byte: u64) -> Option<(u8, u8, u8, u16)> {
        if self.address & (1 << 31) == 0 {
            return None;
        }
        let bus = u8::try_from((self.address >> 16) & 0xff).ok()?;
        let dev = u8::try_from((self.address >> 11) & 0x1f).ok()?;
        let func = u8::try_from((self.address >> 8) & 0x7).ok()?;
        let reg = u16::try_from(self.address & 0xfc).ok()? + u16::try_from(byte).ok()?;
        Some((bus, dev, func, reg))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            4..=7 if offset - 4 + data.len() as u64 <= 4 => match self.target(offset - 4) {
                Some((b, d, f, r)) => self.root.config_read(b, d, f, r, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }
    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                // Bits 1:0 are reserved and read as zero.
                self.address = u32::from_le_bytes(b) & !3;
            }
            4..=7 if offset - 4 + data.len() as u64 <= 4 => {
                if let Some((b, d, f, r)) = self.target(offset - 4) {
                    self.root.config_write(b, d, f, r, data);
                }
            }
            _ => {}
        }
    }
}

/// The 32-bit BAR window as one MMIO bus device (insert at
/// [`BAR_WINDOW_BASE`], [`BAR_WINDOW_SIZE`]); dispatches by current BARs.
#[derive(Debug)]
pub struct PciBarWindow {
    root: Arc<PciRoot>,
}

impl PciBarWindow {
    /// A BAR window for `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root }
    }
}

impl BusDevice for PciBarWindow {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let hit = base
            .checked_add(offset)
            .is_some_and(|a| self.root.bar_read(a, data));
        if !hit {
            data.fill(0xff);
        }
    }
    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        if let Some(a) = base.checked_add(offset) {
            self.root.bar_write(a, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{BarKind, COMMAND, COMMAND_MEMORY, PciConfig, PciIdentity};
    use super::*;

    #[derive(Debug)]
    struct Scratch {
        config: PciConfig,
        mem: Vec<u8>,
    }

    impl Scratch {
        fn new(sizes: &[u64]) -> Self {
            let mut config = PciConfig::new(PciIdentity {
                vendor_id: 0xabcd,
                device_id: 0x0001,
                revision: 0,
                class_code: 0xff_00_00,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
            });
            for (i, &s) in sizes.iter().enumerate() {
                config.add_bar(i, s, BarKind::Memory32, false).unwrap();
            }
            Self {
                config,
                mem: vec![0; 0x100],
            }
        }
    }

    impl PciDevice for Scratch {
        fn config(&self) -> &PciConfig {
            &self.config
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.config
        }
        fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            let o = usize::try_from(offset).unwrap() % 0x80 + bar * 0x80;
            data.copy_from_slice(&self.mem[o..o + data.len()]);
        }
        fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
            let o = usize::try_from(offset).unwrap() % 0x80 + bar * 0x80;
            self.mem[o..o + data.len()].copy_from_slice(data);
        }
    }

    fn ecam_off(dev: u64, reg: u64) -> u64 {
        (dev << 15) | reg
    }

    #[test]
    fn host_bridge_and_absent_functions_through_ecam() {
        let root = Arc::new(PciRoot::new());
        let mut ecam = PciEcam::new(root.clone());
        let mut d = [0u8; 4];
        ecam.read(ECAM_BASE, 0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
        ecam.read(ECAM_BASE, ecam_off(3, 0), &mut d);
        assert_eq!(d, [0xff; 4]);
        ecam.read(ECAM_BASE, 1 << 12, &mut d);
        assert_eq!(d, [0xff; 4], "function 1 does not exist");
        ecam.read(ECAM_BASE, 1 << 20, &mut d);
        assert_eq!(d, [0xff; 4], "bus 1 does not exist");
    }

    #[test]
    fn bars_are_placed_deterministically_in_device_order() {
        let root = PciRoot::new();
        root.add_device(2, Arc::new(Mutex::new(Scratch::new(&[0x4000, 0x100]))))
            .unwrap();
        root.add_device(1, Arc::new(Mutex::new(Scratch::new(&[0x10_0000]))))
            .unwrap();
        assert_eq!(root.bar_address(2, 0), Some(0xc000_0000));
        assert_eq!(root.bar_address(2, 1), Some(0xc000_4000));
        assert_eq!(root.bar_address(1, 0), Some(0xc010_0000));
    }

    #[test]
    fn reject_taken_or_invalid_slots_and_full_window() {
        let root = PciRoot::new();
        let d = || Arc::new(Mutex::new(Scratch::new(&[0x1000])));
        assert_eq!(root.add_device(0, d()), Err(RootError::SlotUnavailable(0)));
        assert_eq!(
            root.add_device(32, d()),
            Err(RootError::SlotUnavailable(32))
        );
        root.add_device(5, d()).unwrap();
        assert_eq!(root.add_device(5, d()), Err(RootError::SlotUnavailable(5)));
        let big = || Arc::new(Mutex::new(Scratch::new(&[1 << 28])));
        root.add_device(6, big()).unwrap();
        assert!(matches!(
            root.add_device(7, big()),
            Err(RootError::WindowFull { device: 7, .. })
        ));
    }

    #[test]
    fn bar_window_decodes_only_with_memory_enabled_and_follows_relocation() {
        let root = Arc::new(PciRoot::new());
        root.add_device(1, Arc::new(Mutex::new(Scratch::new(&[0x1000]))))
            .unwrap();
        let mut win = PciBarWindow::new(root.clone());
        let mut ecam = PciEcam::new(root.clone());
        let mut d = [0u8; 4];
        win.write(BAR_WINDOW_BASE, 0x10, &[1, 2, 3, 4]);
        win.read(BAR_WINDOW_BASE, 0x10, &mut d);
        assert_eq!(d, [0xff; 4], "memory space off");
        ecam.write(
            ECAM_BASE,
            ecam_off(1, u64::from(COMMAND)),
            &COMMAND_MEMORY.to_le_bytes(),
        );
        win.write(BAR_WINDOW_BASE, 0x10, &[1, 2, 3, 4]);
        win.read(BAR_WINDOW_BASE, 0x10, &mut d);
        assert_eq!(d, [1, 2, 3, 4]);
        // Relocate the BAR: the old address stops decoding, the new one works.
        ecam.write(ECAM_BASE, ecam_off(1, 0x10), &0xd000_0000u32.to_le_bytes());
        win.read(BAR_WINDOW_BASE, 0x10, &mut d);
        assert_eq!(d, [0xff; 4]);
        win.read(BAR_WINDOW_BASE, 0x1000_0010, &mut d);
        assert_eq!(d, [1, 2, 3, 4]);
        // Sizing through the window works and a BAR outside the window is not decoded.
        ecam.write(ECAM_BASE, ecam_off(1, 0x10), &[0xff; 4]);
        ecam.read(ECAM_BASE, ecam_off(1, 0x10), &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xffff_f000);
        assert!(!root.bar_read(0xffff_f010, &mut d));
    }

    #[test]
    fn reject_bar_accesses_straddling_the_end() {
        let root = Arc::new(PciRoot::new());
        root.add_device(1, Arc::new(Mutex::new(Scratch::new(&[0x1000]))))
            .unwrap();
        root.config_write(0, 1, 0, COMMAND, &COMMAND_MEMORY.to_le_bytes());
        let mut d = [0u8; 8];
        assert!(!root.bar_read(BAR_WINDOW_BASE + 0xffc, &mut d));
        assert!(!root.bar_write(u64::MAX - 2, &d));
        assert!(!root.bar_read(BAR_WINDOW_BASE, &mut []));
    }

    #[test]
    fn legacy_config_ports() {
        let root = Arc::new(PciRoot::new());
        root.add_device(4, Arc::new(Mutex::new(Scratch::new(&[0x1000]))))
            .unwrap();
        let mut io = PciConfigIo::new(root.clone());
        let mut d = [0u8; 4];
        io.write(
            CONFIG_IO_PORT,
            0,
            &(0x8000_0000u32 | (4 << 11)).to_le_bytes(),
        );
        io.read(CONFIG_IO_PORT, 0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x8000_2000);
        io.read(CONFIG_IO_PORT, 4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0001_abcd);
        let mut w = [0u8; 2];
        io.read(CONFIG_IO_PORT, 6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0001);
        // Enable bit clear: all-ones, writes dropped.
        io.write(CONFIG_IO_PORT, 0, &(4u32 << 11).to_le_bytes());
        io.read(CONFIG_IO_PORT, 4, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn reject_odd_legacy_port_accesses() {
        let root = Arc::new(PciRoot::new());
        let mut io = PciConfigIo::new(root);
        io.write(CONFIG_IO_PORT, 0, &[0xff]);
        let mut d = [0u8; 4];
        io.read(CONFIG_IO_PORT, 0, &mut d);
        assert_eq!(d, [0; 4], "byte write to the address port ignored");
        io.write(CONFIG_IO_PORT, 0, &0x8000_0000u32.to_le_bytes());
        io.read(CONFIG_IO_PORT, 6, &mut d);
        assert_eq!(d, [0xff; 4], "data access past port 0xcff");
        let mut b = [0u8; 1];
        io.read(CONFIG_IO_PORT, 1, &mut b);
        assert_eq!(b, [0xff]);
    }
}
