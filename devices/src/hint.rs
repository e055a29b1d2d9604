//! The paravirtual "page-table page freed" port (I/O port 0xf0).
//!
//! A guest that frees a page-table page writes its page frame number
//! (GPA >> 12) as a 4-byte value; the vIOMMU's checker then counts a
//! `freed_while_cached` event if any of its caches still points at that
//! page (DESIGN.md, "Stale walks"). Other access sizes are counted as
//! rejected and ignored; reads return all ones. With the vIOMMU off the
//! hints are only counted.

use std::sync::{Arc, Mutex};

use viommu::Viommu;

use crate::bus::BusDevice;

// The platform map declares these (one place for the whole map).
pub use crate::layout::{HINT_LEN, HINT_PORT};

/// Counters of the hint port (shown in the end-of-run report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HintCounters {
    /// Hints delivered to the vIOMMU (or counted with it off).
    pub hints: u64,
    /// Writes that were not a 4-byte write at the port's base.
    pub rejected: u64,
}

/// The hint port device.
#[derive(Debug)]
pub struct HintPort {
    viommu: Option<Arc<Mutex<Viommu>>>,
    counters: HintCounters,
}

impl HintPort {
    /// A port feeding `viommu` (or only counting, when `None`).
    pub fn new(viommu: Option<Arc<Mutex<Viommu>>>) -> Self {
        Self {
            viommu,
            counters: HintCounters::default(),
        }
    }

    /// The port's counters.
    pub fn counters(&self) -> HintCounters {
        self.counters
    }
}

impl BusDevice for HintPort {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.counters.rejected += 1;
            return;
        };
        if offset != 0 {
            self.counters.rejected += 1;
            return;
        }
        let gpa = u64::from(u32::from_le_bytes(bytes)) << 12;
        self.counters.hints += 1;
        if let Some(v) = &self.viommu {
            v.lock()
                .unwrap_or_else(|p| p.into_inner())
                .hint_pgtable_freed(gpa);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_byte_writes_are_hints() {
        let mut p = HintPort::new(Some(Arc::new(Mutex::new(Viommu::new(
            viommu::Config::default(),
        )))));
        p.write(0xf0, 0, &0x1234u32.to_le_bytes());
        assert_eq!(p.counters().hints, 1);
        assert_eq!(p.counters().rejected, 0);
    }

    #[test]
    fn reject_other_sizes_and_offsets() {
        let mut p = HintPort::new(None);
        p.write(0xf0, 0, &[1]);
        p.write(0xf0, 0, &[1, 2]);
        p.write(0xf0, 1, &[1, 2, 3, 4]);
        p.write(0xf0, 0, &[0; 8]);
        assert_eq!(
            p.counters(),
            HintCounters {
                hints: 0,
                rejected: 4
            }
        );
        let mut b = [0u8; 4];
        p.read(0xf0, 0, &mut b);
        assert_eq!(b, [0xff; 4]);
    }
}
