//! virtio queues through the vIOMMU: virtio-console, virtio-blk and
//! virtio-rng brought up over their BARs as a driver would, DMAing through
//! the vIOMMU (translation on or off, tables intact or corrupted), while the
//! fuzzer writes descriptors, available rings, raw ring memory, any BAR
//! offset, config space and vIOMMU registers, and kicks the queues.
#![no_main]

use devices::iommu_mmio::VIOMMU_MMIO_BASE;
use devices::virtio::transport::{
    NOTIFY_OFFSET, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
};
use libfuzzer_sys::fuzz_target;
use stalewalk_fuzz::platform::{self, BLOCK, CONSOLE, Platform, RNG};
use stalewalk_fuzz::{Input, memory, poke, vtd};
use vm_memory::{Bytes, GuestAddress};

/// Most operations per input.
const MAX_OPS: usize = 512;
/// Guest memory.
const MEM: u64 = vtd::MEM_SIZE;
/// Queues per device at most (console has 2, blk and rng 1).
const QUEUES: u16 = 2;
/// Ring size the set-up asks for.
const QSIZE: u16 = 16;

/// Rings of device `d`, queue `q`: (descriptor table, available, used).
fn rings(d: u8, q: u16) -> (u64, u64, u64) {
    let base = 0x2_0000 + u64::from(d) * 0x1_0000 + u64::from(q) * 0x4000;
    (base, base + 0x1000, base + 0x2000)
}

fn bar_write(p: &Platform, d: u8, off: u64, data: &[u8]) {
    p.mmio.write(p.bar0(d) + off, data);
}

fn bring_up(p: &Platform, d: u8, qsize: u16) {
    p.enable(d);
    // MSI-X on (function unmasked).
    if let Some(cap) = msix_cap(p, d) {
        let ctl = p.config_read32(d, cap);
        p.config_write32(d, cap, ctl | (1 << 31));
    }
    bar_write(p, d, 0x14, &[STATUS_ACKNOWLEDGE | STATUS_DRIVER]);
    bar_write(p, d, 0x08, &1u32.to_le_bytes());
    // VERSION_1 | ACCESS_PLATFORM.
    bar_write(p, d, 0x0c, &3u32.to_le_bytes());
    bar_write(
        p,
        d,
        0x14,
        &[STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK],
    );
    for q in 0..QUEUES {
        let (desc, avail, used) = rings(d, q);
        bar_write(p, d, 0x16, &q.to_le_bytes());
        bar_write(p, d, 0x18, &qsize.to_le_bytes());
        bar_write(p, d, 0x1a, &q.to_le_bytes());
        bar_write(p, d, 0x20, &desc.to_le_bytes());
        bar_write(p, d, 0x28, &avail.to_le_bytes());
        bar_write(p, d, 0x30, &used.to_le_bytes());
        bar_write(p, d, 0x1c, &1u16.to_le_bytes());
    }
    bar_write(
        p,
        d,
        0x14,
        &[STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK],
    );
}

/// Offset of the MSI-X capability, walking the capability list.
fn msix_cap(p: &Platform, d: u8) -> Option<u16> {
    let mut ptr = (p.config_read32(d, 0x34) & 0xff) as u16;
    for _ in 0..48 {
        if ptr < 0x40 {
            return None;
        }
        let v = p.config_read32(d, ptr & !3);
        if v & 0xff == 0x11 {
            return Some(ptr & !3);
        }
        ptr = ((v >> 8) & 0xff) as u16;
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let p = platform::build(memory(usize::try_from(MEM).unwrap_or(0x10_0000)));
    vtd::write_tables(&p.mem);
    if input.bool() {
        p.program_viommu();
    }
    let qsize = if input.bool() { QSIZE } else { input.u16() };
    for d in [CONSOLE, BLOCK, RNG] {
        bring_up(&p, d, qsize);
    }
    let mut avail_idx = [[0u16; QUEUES as usize]; 4];
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let d = input.pick(&[CONSOLE, BLOCK, RNG]);
        let q = input.u8() as u16 % QUEUES;
        let (desc, avail, _used) = rings(d, q);
        match input.u8() % 10 {
            0 | 1 => {
                // A descriptor: buffer anywhere in memory (or beyond).
                let idx = u64::from(input.u16() % QSIZE);
                let addr = if input.bool() {
                    u64::from(input.u32()) % MEM
                } else {
                    input.u64()
                };
                let at = desc + idx * 16;
                let _ = p.mem.write_obj(addr, GuestAddress(at));
                let _ = p.mem.write_obj(input.u32() % 0x2000, GuestAddress(at + 8));
                let _ = p.mem.write_obj(input.u16() & 7, GuestAddress(at + 12));
                let _ = p.mem.write_obj(input.u16(), GuestAddress(at + 14));
            }
            2 | 3 => {
                // Publish a head and kick.
                let head = input.u16();
                let n = &mut avail_idx[usize::from(d)][usize::from(q)];
                let slot = avail + 4 + u64::from(*n % QSIZE) * 2;
                let _ = p.mem.write_obj(head, GuestAddress(slot));
                *n = n.wrapping_add(if input.bool() { 1 } else { input.u16() });
                let _ = p.mem.write_obj(*n, GuestAddress(avail + 2));
                bar_write(&p, d, NOTIFY_OFFSET + u64::from(q) * 4, &[0; 4]);
            }
            4 => {
                let gpa = u64::from(input.u32()) % MEM & !7;
                poke(&p.mem, gpa, input.u64());
            }
            5 => {
                let off = u64::from(input.u16() % 0x8000);
                let len = 1 + usize::from(input.u8() % 8);
                let v = input.u64().to_le_bytes();
                bar_write(&p, d, off, &v[..len]);
            }
            6 => {
                let off = u64::from(input.u16() % 0x8000);
                let len = 1 + usize::from(input.u8() % 8);
                let mut b = [0u8; 8];
                p.mmio.read(p.bar0(d) + off, &mut b[..len]);
            }
            7 => {
                let off = input.u16() & 0xffc;
                p.config_write32(d, off, input.u32());
            }
            8 => {
                let off = input.pick(&[
                    viommu::regs::GCMD,
                    viommu::regs::IQT,
                    viommu::regs::FSTS,
                    viommu::regs::CCMD,
                    viommu::regs::RTADDR,
                ]);
                p.mmio
                    .write(VIOMMU_MMIO_BASE + off, &input.u64().to_le_bytes());
            }
            _ => {
                // Reset and bring the device up again.
                bar_write(&p, d, 0x14, &[0]);
                bring_up(&p, d, qsize);
            }
        }
    }
});
