//! The SVA device's descriptor ring: the device brought up as its driver
//! does (PASID, ATS, PRI, MSI-X, ring enabled), DMAing through the vIOMMU
//! (translation on or off; PASIDs 1..63 bound to first-stage tables the
//! fuzzer builds), while the fuzzer writes descriptors (shaped or raw),
//! rings the doorbell, queues invalidation descriptors (page group
//! responses and device-TLB invalidations reach the device through the
//! front end), and writes BAR registers, config space and memory.
#![no_main]

use devices::iommu_mmio::VIOMMU_MMIO_BASE;
use devices::sva::regs as sva;
use libfuzzer_sys::fuzz_target;
use stalewalk_fuzz::platform::{self, Platform, SVA};
use stalewalk_fuzz::{Input, memory, poke, vtd};
use viommu::regs;
use vm_memory::{Bytes, GuestAddress};

/// Most operations per input.
const MAX_OPS: usize = 512;
/// Guest memory.
const MEM: u64 = vtd::MEM_SIZE;
/// Ring IOVA (= GPA: PASID 0 is pass-through in the fuzz tables).
const RING: u64 = 0x8_0000;
/// Ring slots the set-up asks for.
const ENTRIES: u32 = 16;

fn bar(p: &Platform, off: u64, v: u32) {
    p.mmio.write(p.bar0(SVA) + off, &v.to_le_bytes());
}

/// Enables the capabilities a driver enables (offsets in `docs/DEVICES.md`).
fn bring_up(p: &Platform, entries: u32) {
    p.enable(SVA);
    let msix = p.config_read32(SVA, 0x80);
    p.config_write32(SVA, 0x80, msix | (1 << 31));
    // PASID control (+6): enable, privileged mode.
    p.config_write32(
        SVA,
        0x104,
        (0x5 << 16) | (p.config_read32(SVA, 0x104) & 0xffff),
    );
    // ATS control (+6): enable.
    p.config_write32(
        SVA,
        0x114,
        (0x8000 << 16) | (p.config_read32(SVA, 0x114) & 0xffff),
    );
    // PRI allocation (+12) then control (+4): enable.
    p.config_write32(SVA, 0x12c, 16);
    p.config_write32(SVA, 0x124, 1);
    for v in 0..2u64 {
        let e = p.bar0(SVA) + 0x2000 + v * 16;
        p.mmio.write(e, &0xfee0_0000u64.to_le_bytes());
        p.mmio.write(e + 8, &(0x40 + v as u32).to_le_bytes());
        p.mmio.write(e + 12, &0u32.to_le_bytes());
    }
    p.mmio
        .write(p.bar0(SVA) + sva::RING_BASE, &RING.to_le_bytes());
    bar(p, sva::RING_ENTRIES, entries);
    bar(p, sva::CTRL, sva::CTRL_ENABLE);
}

fn addr(input: &mut Input) -> u64 {
    match input.u8() % 4 {
        0 => u64::from(input.u32()) % MEM,
        // Through PASID page tables: small user addresses.
        1 => u64::from(input.u16()) << 12 | u64::from(input.u16() & 0xfff),
        2 => 0xffff_8000_0000_0000 | (u64::from(input.u32()) << 12),
        _ => input.u64(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let p = platform::build(memory(usize::try_from(MEM).unwrap_or(0x10_0000)));
    vtd::write_tables(&p.mem);
    if input.bool() {
        p.program_viommu();
    }
    let entries = if input.bool() { ENTRIES } else { input.u32() };
    bring_up(&p, entries);
    let mut tail = 0u32;
    let mut iq_tail = 0u64;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 10 {
            0 | 1 => {
                // A shaped descriptor in the next slot.
                let slot = RING + u64::from(tail % ENTRIES) * 64;
                let mut raw = [0u8; 64];
                raw[0] = input.u8() % 7;
                raw[1] = input.u8() & 0xf;
                let pasid = if raw[1] & 1 != 0 { input.below(64) } else { 0 };
                raw[4..8].copy_from_slice(&pasid.to_le_bytes());
                raw[8..16].copy_from_slice(&addr(&mut input).to_le_bytes());
                raw[16..24].copy_from_slice(&addr(&mut input).to_le_bytes());
                let len = match input.u8() % 3 {
                    0 => u64::from(input.u16()),
                    1 => u64::from(input.u32()),
                    _ => input.u64(),
                };
                raw[24..32].copy_from_slice(&len.to_le_bytes());
                raw[32..40].copy_from_slice(&input.u64().to_le_bytes());
                let _ = p.mem.write_slice(&raw, GuestAddress(slot));
                tail = tail.wrapping_add(1);
            }
            2 | 3 => {
                let t = if input.bool() {
                    tail % ENTRIES
                } else {
                    input.u32()
                };
                bar(&p, sva::TAIL, t);
            }
            4 => {
                // A page-table entry in the first-stage area.
                let page = 0x10 + u64::from(input.u8() % 32);
                let idx = u64::from(input.u16() % 512);
                let v = vtd::entry(input.u8(), input.u16(), input.bool());
                poke(&p.mem, (page << 12) + idx * 8, v);
            }
            5 => {
                // An invalidation descriptor (page group response,
                // device-TLB invalidation, wait, ...) and the tail write.
                let slot = vtd::IQ + iq_tail;
                let ty = input.pick(&[0x9u64, 0x3, 0x8, 0x5, 0x6, 0x7, 0x2]);
                poke(&p.mem, slot, ty | (input.u64() & !0xf));
                for i in 1..4 {
                    poke(&p.mem, slot + i * 8, input.u64());
                }
                iq_tail = (iq_tail + 32) % vtd::IQ_BYTES;
                p.mmio
                    .write(VIOMMU_MMIO_BASE + regs::IQT, &iq_tail.to_le_bytes());
            }
            6 => {
                let off = u64::from(input.u16() % 0x4000);
                let len = input.pick(&[1usize, 2, 4, 8]);
                let v = input.u64().to_le_bytes();
                if input.bool() {
                    p.mmio.write(p.bar0(SVA) + off, &v[..len]);
                } else {
                    let mut b = [0u8; 8];
                    p.mmio.read(p.bar0(SVA) + off, &mut b[..len]);
                }
            }
            7 => {
                let off = input.u16() & 0xffc;
                p.config_write32(SVA, off, input.u32());
            }
            8 => {
                let gpa = u64::from(input.u32()) % MEM & !7;
                poke(&p.mem, gpa, input.u64());
            }
            _ => {
                // Disable and re-enable the ring (drops a waiting operation).
                bar(&p, sva::CTRL, 0);
                tail = 0;
                bring_up(&p, entries);
            }
        }
    }
    let _ = p.sva.lock().map(|d| d.counters());
});
