//! Port-I/O and MMIO buses: an ordered map from address ranges to devices.
//!
//! A lookup is one `BTreeMap::range` query. Ranges may not overlap; the
//! vmm builds the buses once at start-up, so insertion errors are
//! configuration errors, never guest-triggered.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A device that answers register reads and writes on a bus.
///
/// `base` is the start of the range the device was inserted at and `offset`
/// the distance of the access from it. Accesses are 1, 2, 4 or 8 bytes; a
/// device must tolerate any size and any offset inside its range (the guest
/// chooses both) and must never panic on them.
pub trait BusDevice: Send {
    /// Fills `data` with the value read at `offset`.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    /// Handles a write of `data` at `offset`.
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else needs it (event loop,
/// report).
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors building a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range is empty or wraps around the address space.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Start of the rejected range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// The range overlaps a device already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps the device at {other:#x}")]
    Overlap {
        /// Start of the rejected range.
        base: u64,
        /// Its length.
        len: u64,
        /// Start of the range it collides with.
        other: u64,
    },
}

#[derive(Clone)]
struct Entry {
    len: u64,
    device: SharedDevice,
}

/// An address space of devices (one for port I/O, one for MMIO).
#[derive(Clone, Default)]
pub struct Bus {
    devices: BTreeMap<u64, Entry>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<(u64, u64)> = self.devices.iter().map(|(b, e)| (*b, e.len)).collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = inclusive_end(base, len).ok_or(BusError::InvalidRange { base, len })?;
        if let Some((other, _)) = self.find(base).or_else(|| self.find(end)) {
            return Err(BusError::Overlap { base, len, other });
        }
        if let Some((&other, _)) = self.devices.range(base..=end).next() {
            return Err(BusError::Overlap { base, len, other });
        }
        self.devices.insert(base, Entry { len, device });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &Entry)> {
        let (&base, entry) = self.devices.range(..=addr).next_back()?;
        let end = inclusive_end(base, entry.len)?;
        (addr <= end).then_some((base, entry))
    }

    /// Dispatches a read; returns false when no device claims `addr` (the
    /// caller then returns all-ones, as open bus does).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((base, entry)) = self.find(addr) else {
            return false;
        };
        let mut dev = entry.device.lock().unwrap_or_else(|p| p.into_inner());
        dev.read(base, addr - base, data);
        true
    }

    /// Dispatches a write; returns false when no device claims `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((base, entry)) = self.find(addr) else {
            return false;
        };
        let mut dev = entry.device.lock().unwrap_or_else(|p| p.into_inner());
        dev.write(base, addr - base, data);
        true
    }
}

/// The last address of `[base, base + len)`, or `None` when `len` is zero or
/// the range wraps, so range checks cannot be bypassed by overflow.
pub fn inclusive_end(base: u64, len: u64) -> Option<u64> {
    len.checked_sub(1).and_then(|l| base.checked_add(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        last: Option<(u64, u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data.fill(u8::try_from(offset & 0xff).unwrap_or(0));
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.last = Some((base, offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_to_the_device_covering_the_address() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b[0], 2);
        assert!(bus.write(0x3ff, &[7]));
        assert_eq!(dev.lock().unwrap().last, Some((0x3f8, 7, vec![7])));
        assert!(!bus.read(0x400, &mut b));
        assert!(!bus.read(0x3f7, &mut b));
    }

    #[test]
    fn reject_overlapping_ranges() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Recorder::default())), 0x1000, 0x100)
            .unwrap();
        for (base, len) in [(0x1000, 1), (0xfff, 2), (0x10ff, 0x10), (0x800, 0x1000)] {
            assert!(matches!(
                bus.insert(Arc::new(Mutex::new(Recorder::default())), base, len),
                Err(BusError::Overlap { .. })
            ));
        }
        bus.insert(Arc::new(Mutex::new(Recorder::default())), 0x1100, 0x100)
            .unwrap();
    }

    #[test]
    fn reject_empty_and_wrapping_ranges() {
        let mut bus = Bus::new();
        let d = || Arc::new(Mutex::new(Recorder::default()));
        assert!(matches!(
            bus.insert(d(), 5, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(d(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
        bus.insert(d(), u64::MAX, 1).unwrap();
    }
}
