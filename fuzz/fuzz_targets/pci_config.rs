//! PCI configuration space of every device on bus 0 (host bridge,
//! virtio-console, virtio-blk, virtio-rng, the SVA device, and absent
//! slots), through ECAM (any offset, 1 to 8 bytes) and the legacy
//! 0xcf8/0xcfc ports (any port offset and size), with BAR reads and writes
//! wherever the guest has just moved the BARs; and the other port devices
//! (COM1, i8042, debug-exit, the hint port, ACPI PM).
#![no_main]

use devices::pci::root::{BAR_WINDOW_BASE, BAR_WINDOW_SIZE, CONFIG_IO_PORT, ECAM_SIZE};
use libfuzzer_sys::fuzz_target;
use stalewalk_fuzz::{Input, memory, platform};

/// Most operations per input.
const MAX_OPS: usize = 1024;
/// Memory the devices may DMA into.
const MEM: usize = 0x10_0000;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let p = platform::build(memory(MEM));
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 | 1 => {
                // Aimed: a present device, an offset in its config space.
                let number = input.pick(&platform::NUMBERS);
                let off = input.u16() & 0xfff;
                let len = input.pick(&[1usize, 2, 4]);
                let v = input.u32().to_le_bytes();
                p.mmio.write(platform::ecam(number, off), &v[..len]);
            }
            2 => {
                let number = input.pick(&platform::NUMBERS);
                let off = input.u16() & 0xfff;
                let len = input.pick(&[1usize, 2, 4]);
                let mut b = [0u8; 4];
                p.mmio.read(platform::ecam(number, off), &mut b[..len]);
            }
            3 => {
                // Anywhere in ECAM, any size.
                let off = u64::from(input.u32()) % ECAM_SIZE;
                let len = 1 + usize::from(input.u8() % 8);
                let v = input.u64().to_le_bytes();
                let addr = devices::pci::root::ECAM_BASE + off;
                if input.bool() {
                    p.mmio.write(addr, &v[..len]);
                } else {
                    let mut b = [0u8; 8];
                    p.mmio.read(addr, &mut b[..len]);
                }
            }
            4 => {
                // A port device: 0xcf8/0xcfc (address then data), COM1,
                // i8042, debug-exit, hint, ACPI PM; any offset and size.
                let base = input.pick(&[CONFIG_IO_PORT, 0x3f8, 0x60, 0xf4, 0xf0, 0x604]);
                let port = base + u64::from(input.u8() % 8);
                let len = 1 + usize::from(input.u8() % 4);
                let v = input.u32().to_le_bytes();
                if input.bool() {
                    p.pio.write(port, &v[..len]);
                } else {
                    let mut b = [0u8; 4];
                    p.pio.read(port, &mut b[..len]);
                }
            }
            5 => {
                // A well-formed 0xcf8 address, then a data access.
                let number = input.pick(&platform::NUMBERS);
                let reg = u32::from(input.u8() & 0xfc);
                let addr = 0x8000_0000 | (u32::from(number) << 11) | reg;
                p.pio.write(CONFIG_IO_PORT, &addr.to_le_bytes());
                let v = input.u32().to_le_bytes();
                if input.bool() {
                    p.pio.write(CONFIG_IO_PORT + 4, &v);
                } else {
                    let mut b = [0u8; 4];
                    p.pio.read(CONFIG_IO_PORT + 4, &mut b);
                }
            }
            6 => {
                // A read in a device's BAR 0, wherever it is now.
                let number = input.pick(&platform::NUMBERS);
                let addr = p.bar0(number).wrapping_add(u64::from(input.u16()));
                let len = 1 + usize::from(input.u8() % 8);
                let mut b = [0u8; 8];
                p.mmio.read(addr, &mut b[..len]);
            }
            _ => {
                // Anywhere in the BAR window, any size, read or write.
                let addr = BAR_WINDOW_BASE + u64::from(input.u32()) % BAR_WINDOW_SIZE;
                let len = 1 + usize::from(input.u8() % 8);
                let v = input.u64().to_le_bytes();
                if input.bool() {
                    p.mmio.write(addr, &v[..len]);
                } else {
                    let mut b = [0u8; 8];
                    p.mmio.read(addr, &mut b[..len]);
                }
            }
        }
    }
});
