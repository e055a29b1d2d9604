//! The i8042 keyboard controller, reduced to what guests use to reboot:
//! command 0xfe written to port 0x64 pulses the reset line, which ends the
//! run. The status register reads as "no data, input buffer empty" so a
//! guest polling it before writing a command does not wait; other reads
//! return all ones.

use std::sync::Arc;

use super::{ShutdownReason, ShutdownSignal};
use crate::bus::BusDevice;

// The platform map declares these (one place for the whole map).
pub use crate::layout::{I8042_COMMAND_PORT, I8042_DATA_PORT, I8042_LEN};

const OFFSET_COMMAND: u64 = 4;
/// The command that pulses the reset line (the FADT's reset value).
pub const CMD_RESET: u8 = 0xfe;
const STATUS_SYSTEM_FLAG: u8 = 0x04;

/// The i8042 reset device.
#[derive(Debug)]
pub struct I8042 {
    shutdown: Arc<ShutdownSignal>,
    /// Commands other than reset that were ignored, for the report.
    pub ignored_commands: u64,
}

impl I8042 {
    /// A device that records the reset in `shutdown`.
    pub fn new(shutdown: Arc<ShutdownSignal>) -> Self {
        Self {
            shutdown,
            ignored_commands: 0,
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == OFFSET_COMMAND {
            if let Some(b) = data.first_mut() {
                *b = STATUS_SYSTEM_FLAG;
            }
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if offset == OFFSET_COMMAND && data.first() == Some(&CMD_RESET) {
            self.shutdown.request(ShutdownReason::Reset);
        } else {
            self.ignored_commands = self.ignored_commands.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_shutdown() {
        let s = Arc::new(ShutdownSignal::new());
        let mut d = I8042::new(s.clone());
        d.write(0x60, 4, &[0xfe]);
        assert_eq!(s.requested(), Some(ShutdownReason::Reset));
    }

    #[test]
    fn reject_other_commands_and_ports() {
        let s = Arc::new(ShutdownSignal::new());
        let mut d = I8042::new(s.clone());
        d.write(0x60, 0, &[0xfe]);
        d.write(0x60, 4, &[0xd1]);
        d.write(0x60, 4, &[]);
        assert_eq!(s.requested(), None);
        assert_eq!(d.ignored_commands, 3);
    }

    #[test]
    fn status_reads_ready() {
        let mut d = I8042::new(Arc::new(ShutdownSignal::new()));
        let mut b = [0u8; 1];
        d.read(0x60, 4, &mut b);
        assert_eq!(b[0], STATUS_SYSTEM_FLAG);
        d.read(0x60, 0, &mut b);
        assert_eq!(b[0], 0xff);
    }
}
