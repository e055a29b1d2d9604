//! The debug-exit port (I/O port 0xf4 in the platform map): a 1-4 byte
//! write ends the run, and the value written becomes the VMM's exit status
//! (0-255; larger values exit 255). Reads return all ones.

use std::sync::Arc;

use super::{ShutdownReason, ShutdownSignal};
use crate::bus::BusDevice;

// The platform map declares these (one place for the whole map).
pub use crate::layout::{DEBUG_EXIT_LEN, DEBUG_EXIT_PORT};

/// The debug-exit device.
#[derive(Debug)]
pub struct DebugExit {
    shutdown: Arc<ShutdownSignal>,
}

impl DebugExit {
    /// A device that records its exit request in `shutdown`.
    pub fn new(shutdown: Arc<ShutdownSignal>) -> Self {
        Self { shutdown }
    }

    /// The exit status for `data` written at `offset`: the little-endian
    /// value, saturated at 255.
    pub fn status_of(offset: u64, data: &[u8]) -> u8 {
        // A write at a non-zero offset only sets upper bytes of the value.
        let low_len = usize::from(offset == 0);
        let low = data.first().copied().filter(|_| offset == 0).unwrap_or(0);
        if data.iter().skip(low_len).any(|b| *b != 0) {
            u8::MAX
        } else {
            low
        }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.shutdown
            .request(ShutdownReason::DebugExit(Self::status_of(offset, data)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_written_is_the_exit_status() {
        let s = Arc::new(ShutdownSignal::new());
        let mut d = DebugExit::new(s.clone());
        d.write(0xf4, 0, &[7]);
        assert_eq!(s.requested(), Some(ShutdownReason::DebugExit(7)));
    }

    #[test]
    fn wide_values_saturate() {
        assert_eq!(DebugExit::status_of(0, &[0x2a, 0, 0, 0]), 42);
        assert_eq!(DebugExit::status_of(0, &[0x00, 1]), 255);
        assert_eq!(DebugExit::status_of(1, &[1]), 255);
        assert_eq!(DebugExit::status_of(0, &[]), 0);
    }

    #[test]
    fn reads_are_all_ones() {
        let mut d = DebugExit::new(Arc::new(ShutdownSignal::new()));
        let mut b = [0u8; 4];
        d.read(0xf4, 0, &mut b);
        assert_eq!(b, [0xff; 4]);
    }
}
