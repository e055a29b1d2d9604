//! Register write sequences on the vIOMMU's 4 KiB register block, through
//! the MMIO front end a guest reaches (which then delivers interrupts, page
//! responses and device-TLB invalidations to the SVA endpoint): any offset,
//! any size from 1 to 8 bytes, any value, interleaved with reads, memory
//! writes, the guest-driver set-up sequence and translations.
#![no_main]

use devices::iommu_mmio::VIOMMU_MMIO_BASE;
use libfuzzer_sys::fuzz_target;
use stalewalk_fuzz::{Input, memory, platform, poke, vtd};
use viommu::{Access, DmaRequest, regs};

/// Most operations per input.
const MAX_OPS: usize = 1024;

/// Registers worth aiming at (an offset chosen at random rarely hits one).
const KNOWN: &[u64] = &[
    regs::VER,
    regs::CAP,
    regs::ECAP,
    regs::GCMD,
    regs::GSTS,
    regs::RTADDR,
    regs::CCMD,
    regs::FSTS,
    regs::FECTL,
    regs::FEDATA,
    regs::FEADDR,
    regs::FEUADDR,
    regs::PMEN,
    regs::IQH,
    regs::IQT,
    regs::IQA,
    regs::ICS,
    regs::IECTL,
    regs::IEDATA,
    regs::IEADDR,
    regs::IEUADDR,
    regs::IQER,
    regs::IRTA,
    regs::PQH,
    regs::PQT,
    regs::PQA,
    regs::PRS,
    regs::PECTL,
    regs::PEDATA,
    regs::PEADDR,
    regs::PEUADDR,
    regs::IVA,
    regs::IVA + 8,
    // Fault recording registers (CAP.FRO * 16).
    0x400,
    0x408,
    0x410,
    0x418,
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let p = platform::build(memory(usize::try_from(vtd::MEM_SIZE).unwrap_or(0x10_0000)));
    let sink = stalewalk_fuzz::Rebuild::default();
    p.viommu
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_event_sink(Some(Box::new(sink.clone())));
    if input.bool() {
        vtd::write_tables(&p.mem);
    }
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 | 1 => {
                let off = input.pick(KNOWN);
                let len = input.pick(&[4usize, 8]);
                let v = input.u64().to_le_bytes();
                p.mmio.write(VIOMMU_MMIO_BASE + off, &v[..len]);
            }
            2 => {
                let off = u64::from(input.u16() % 0x1000);
                let len = 1 + usize::from(input.u8() % 8);
                let v = input.u64().to_le_bytes();
                p.mmio.write(VIOMMU_MMIO_BASE + off, &v[..len]);
            }
            3 => {
                let off = u64::from(input.u16() % 0x1000);
                let len = 1 + usize::from(input.u8() % 8);
                let mut b = [0u8; 8];
                p.mmio.read(VIOMMU_MMIO_BASE + off, &mut b[..len]);
            }
            4 => {
                p.program_viommu();
            }
            5 => {
                let gpa = u64::from(input.u32()) % vtd::MEM_SIZE & !7;
                poke(&p.mem, gpa, input.u64());
            }
            6 => {
                let req = DmaRequest {
                    rid: u16::from(input.u8()),
                    pasid: if input.bool() {
                        Some(input.below(64))
                    } else {
                        None
                    },
                    addr: u64::from(input.u32()) << 12,
                    access: input.pick(&[Access::Read, Access::Write, Access::Execute]),
                    privileged: input.bool(),
                };
                let mut unit = p.viommu.lock().unwrap_or_else(|e| e.into_inner());
                let _ = unit.translate(&p.mem, &req);
            }
            _ => {
                // A descriptor in the queue page (the driver's tail write
                // comes as a separate register write).
                let slot = vtd::IQ + u64::from(input.u8() % 128) * 32;
                for i in 0..4 {
                    poke(&p.mem, slot + i * 8, input.u64());
                }
            }
        }
    }
    sink.check(&p.viommu.lock().unwrap_or_else(|e| e.into_inner()));
});
