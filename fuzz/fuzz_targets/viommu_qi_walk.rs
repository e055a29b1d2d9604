//! The invalidation queue and the first-stage walker over guest memory the
//! fuzzer writes: a unit set up as a guest driver would (scalable mode, QI,
//! PRQ, translation on), then a sequence of memory writes (raw or shaped as
//! page-table entries), queued descriptors, tail writes, translations,
//! speculative walks, ATS requests, page requests and hints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stalewalk_fuzz::{Input, memory_with_hole, poke, vtd};
use viommu::{Access, Config, DmaRequest, PageRequest, Viommu, regs};

/// Most operations per input, so one input is bounded work.
const MAX_OPS: usize = 512;

fn request(input: &mut Input) -> DmaRequest {
    let rid = if input.bool() {
        input.u16()
    } else {
        u16::from(input.u8())
    };
    let pasid = match input.u8() % 4 {
        0 => None,
        1 | 2 => Some(input.below(64)),
        _ => Some(input.u32()),
    };
    let addr = match input.u8() % 3 {
        0 => input.u64(),
        1 => u64::from(input.u32()) << 12,
        // Kernel half (sign-extended 4-level address).
        _ => 0xffff_8000_0000_0000 | (u64::from(input.u32()) << 12),
    };
    let access = input.pick(&[Access::Read, Access::Write, Access::Execute]);
    DmaRequest {
        rid,
        pasid,
        addr,
        access,
        privileged: input.bool(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut config = Config::default();
    if input.bool() {
        config.cache = input.pick(&[
            viommu::CachePolicy::Adversarial,
            viommu::CachePolicy::Lru(std::num::NonZeroUsize::MIN.saturating_add(3)),
            viommu::CachePolicy::None,
        ]);
    }
    let mem = memory_with_hole(usize::try_from(vtd::MEM_SIZE).unwrap_or(0x10_0000));
    let mut unit = Viommu::new(config);
    let sink = stalewalk_fuzz::Rebuild::default();
    unit.set_event_sink(Some(Box::new(sink.clone())));
    vtd::write_tables(&mem);
    for (off, bytes) in vtd::register_writes() {
        unit.mmio_write(&mem, off, &bytes);
    }
    let mut tail = 0u64;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 12 {
            0 => {
                let gpa = u64::from(input.u32()) % vtd::MEM_SIZE & !7;
                poke(&mem, gpa, input.u64());
            }
            1 => {
                // A page-table entry in one of the first 64 pages.
                let page = u64::from(input.u8() % 64);
                let idx = u64::from(input.u16() % 512);
                let v = vtd::entry(input.u8(), input.u16(), input.bool());
                poke(&mem, (page << 12) + idx * 8, v);
            }
            2 => {
                let r = request(&mut input);
                let _ = unit.translate(&mem, &r);
            }
            3 => {
                let r = request(&mut input);
                unit.speculative_walk(&mem, &r);
            }
            4 => {
                let r = request(&mut input);
                let _ = unit.translate_ats(&mem, &r);
            }
            5 => {
                // One descriptor at the tail, then the tail moves on.
                let slot = vtd::IQ + tail;
                for i in 0..4 {
                    poke(&mem, slot + i * 8, input.u64());
                }
                tail = (tail + 32) % vtd::IQ_BYTES;
                unit.mmio_write(&mem, regs::IQT, &tail.to_le_bytes());
            }
            6 => {
                // A wild tail (misaligned, past the queue).
                let t = input.u64();
                unit.mmio_write(&mem, regs::IQT, &t.to_le_bytes());
            }
            7 => {
                let r = request(&mut input);
                let pr = PageRequest {
                    rid: r.rid,
                    pasid: r.pasid,
                    addr: r.addr,
                    read: input.bool(),
                    write: input.bool(),
                    exec: input.bool(),
                    privileged: r.privileged,
                    last: input.bool(),
                    group_index: input.u16(),
                    private_data: input.u64(),
                };
                let _ = unit.page_request(&mem, pr);
            }
            8 => {
                let _ = unit.take_msis();
                let _ = unit.take_page_responses();
                let _ = unit.take_devtlb_invalidations();
            }
            9 => unit.hint_pgtable_freed(u64::from(input.u32()) << 12),
            10 => unit.devtlb_invalidation_failed(input.u16(), input.bool()),
            _ => {
                // Fault and queue status registers the driver clears.
                let off = input.pick(&[regs::FSTS, regs::PRS, regs::ICS, regs::PQH, regs::IQH]);
                unit.mmio_write(&mem, off, &input.u32().to_le_bytes());
            }
        }
    }
    let _ = unit.counters();
    sink.check(&unit);
});
