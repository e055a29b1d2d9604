//! Legacy PC devices on the port-I/O bus: the COM1 8250 UART, the i8042
//! (reset line only) and the debug-exit port.
//!
//! The i8042 and the debug-exit port end the run. They do it through a
//! [`ShutdownSignal`] the vmm shares with them: the device records why, the
//! vCPU thread that handled the access sees it after the access returns and
//! stops the VM. Devices never touch vCPUs themselves.

pub mod debug_exit;
pub mod i8042;
pub mod serial;

use std::sync::Mutex;

/// Why the guest asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// A write to the debug-exit port; the value is the exit status.
    DebugExit(u8),
    /// The guest pulsed the reset line through the i8042 (command 0xfe).
    Reset,
    /// The guest asked for ACPI S5 (sleep control register).
    PowerOff,
}

/// The first shutdown request of a run, shared between devices and vCPUs.
#[derive(Debug, Default)]
pub struct ShutdownSignal {
    reason: Mutex<Option<ShutdownReason>>,
}

impl ShutdownSignal {
    /// A signal with no request yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `reason` unless an earlier request is already recorded (the
    /// first request decides the exit status).
    pub fn request(&self, reason: ShutdownReason) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
    }

    /// The recorded request, if any.
    pub fn requested(&self) -> Option<ShutdownReason> {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_wins() {
        let s = ShutdownSignal::new();
        assert_eq!(s.requested(), None);
        s.request(ShutdownReason::DebugExit(3));
        s.request(ShutdownReason::Reset);
        assert_eq!(s.requested(), Some(ShutdownReason::DebugExit(3)));
    }
}
