//! The COM1 8250 UART (I/O ports 0x3f8-0x3ff, IRQ 4), modelled by
//! vm-superio. Output goes to any `Write` the vmm chooses (stdout, a file,
//! a capture buffer, nothing); its interrupt is an `EventFd` the vmm wires
//! to the interrupt controller (an irqfd on GSI 4). The UART is byte-wide:
//! only the first byte of a wider access is used, and wider reads fill the
//! rest with ones.

use std::io::Write;

use vm_superio::serial::{NoEvents, Serial as Uart};
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;

// The platform map declares these (one place for the whole map).
pub use crate::layout::{COM1_IRQ, COM1_LEN, COM1_PORT};

/// An `EventFd` that raises the UART's interrupt line when written.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl vm_superio::Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// The output a serial port writes to.
pub type SerialOutput = Box<dyn Write + Send>;

/// A 16550-compatible UART on the port-I/O bus.
pub struct Serial {
    uart: Uart<IrqTrigger, NoEvents, SerialOutput>,
    /// Writes that failed (output error or interrupt not delivered).
    pub errors: u64,
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial")
            .field("errors", &self.errors)
            .finish()
    }
}

impl Serial {
    /// A UART that writes to `out` and raises its interrupt through `irq`.
    pub fn new(irq: IrqTrigger, out: SerialOutput) -> Self {
        Self {
            uart: Uart::new(irq, out),
            errors: 0,
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let (Ok(off), Some(b)) = (u8::try_from(offset), data.first_mut()) {
            if u64::from(off) < COM1_LEN {
                *b = self.uart.read(off);
            }
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (Ok(off), Some(&value)) = (u8::try_from(offset), data.first()) else {
            return;
        };
        if u64::from(off) >= COM1_LEN {
            return;
        }
        if let Err(e) = self.uart.write(off, value) {
            self.errors = self.errors.saturating_add(1);
            // Log only the first failure: a guest printing to a closed pipe
            // must not flood the log.
            if self.errors == 1 {
                log::warn!("serial: write at offset {off:#x} failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn serial() -> (Serial, Capture, EventFd) {
        let evt = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let cap = Capture::default();
        let s = Serial::new(IrqTrigger(evt.try_clone().unwrap()), Box::new(cap.clone()));
        (s, cap, evt)
    }

    #[test]
    fn transmits_bytes() {
        let (mut s, cap, _evt) = serial();
        for b in b"hi\n" {
            s.write(0x3f8, 0, &[*b]);
        }
        assert_eq!(&*cap.0.lock().unwrap(), b"hi\n");
        assert_eq!(s.errors, 0);
    }

    #[test]
    fn raises_the_interrupt_when_enabled() {
        let (mut s, _cap, evt) = serial();
        s.write(0x3f8, 1, &[0x02]); // IER: transmitter holding register empty
        s.write(0x3f8, 0, b"x");
        assert!(evt.read().unwrap() >= 1);
    }

    #[test]
    fn reject_out_of_range_and_empty_accesses() {
        let (mut s, cap, _evt) = serial();
        s.write(0x3f8, 8, b"x");
        s.write(0x3f8, 0, &[]);
        let mut b = [0u8; 2];
        s.read(0x3f8, 9, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        assert!(cap.0.lock().unwrap().is_empty());
    }
}
