//! Fuzzes the vIOMMU as a hostile guest and device would drive it: arbitrary
//! register writes (including IQT, so the invalidation queue decodes whatever
//! the guest put in memory), arbitrary guest-memory edits (tables, queue,
//! page tables), translations, speculative walks, page requests and hints.
//! Starts from a bound first-stage PASID so the walker and caches are reached
//! at once. Any panic, hang or counter inconsistency is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use viommu::{
    Access, CachePolicy, CheckMode, Config, DmaRequest, Levels, PageRequest, Viommu, regs,
};

const MEM: u64 = 1 << 21;
const MAX_OPS: usize = 4096;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, b) = self.0.split_at_checked(N)?;
        self.0 = b;
        a.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

fn w(mem: &GuestMemoryMmap<()>, gpa: u64, v: u64) {
    let _ = mem.write_obj(v, GuestAddress(gpa));
}

fn setup(unit: &mut Viommu, mem: &GuestMemoryMmap<()>, five: bool) {
    // Root 0x1000, context 0x2000 (rid 0x20), PASID dir 0x3000, table 0x4000,
    // PASID 1 first-stage at 0x10000, queue 0x8000, page-request queue 0xc000.
    w(mem, 0x1000, 0x2000 | 1);
    w(mem, 0x2000 + 0x20 * 32, 0x3000 | 0x1d);
    w(mem, 0x3000, 0x4000 | 1);
    w(mem, 0x4000 + 64 + 8, 1);
    w(mem, 0x4000 + 64 + 16, 0x10000 | if five { 4 } else { 0 });
    w(mem, 0x4000 + 64, 1 | (1 << 6));
    let mut reg = |off: u64, v: u64| unit.mmio_write(mem, off, &v.to_le_bytes());
    reg(regs::RTADDR, 0x1000 | (1 << 10));
    reg(regs::IQA, 0x8000 | (1 << 11));
    reg(regs::PQA, 0xc000);
    unit.mmio_write(mem, regs::GCMD, &(regs::gcmd::SRTP).to_le_bytes());
    unit.mmio_write(
        mem,
        regs::GCMD,
        &(regs::gcmd::TE | regs::gcmd::QIE).to_le_bytes(),
    );
}

fn access(b: u8) -> Access {
    match b % 3 {
        0 => Access::Read,
        1 => Access::Write,
        _ => Access::Execute,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let Some(cfg) = inp.u8() else { return };
    let five = cfg & 1 != 0;
    let config = Config {
        levels: if five { Levels::Five } else { Levels::Four },
        cache: match (cfg >> 1) & 3 {
            0 | 3 => CachePolicy::Adversarial,
            1 => "lru:4".parse().unwrap_or(CachePolicy::None),
            _ => CachePolicy::None,
        },
        check: match (cfg >> 3) & 3 {
            0 | 3 => CheckMode::All,
            1 => CheckMode::Sampled,
            _ => CheckMode::Off,
        },
        caching_mode: cfg & 0x20 != 0,
        fault_records: 1 + u16::from(cfg >> 6),
        ..Config::default()
    };
    let mem: GuestMemoryMmap<()> =
        match GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]) {
            Ok(m) => m,
            Err(_) => return,
        };
    let mut unit = Viommu::new(config);
    let sink = stalewalk_fuzz::Rebuild::default();
    unit.set_event_sink(Some(Box::new(sink.clone())));
    setup(&mut unit, &mem, five);
    let mut tail = 0u64;
    for _ in 0..MAX_OPS {
        let Some(op) = inp.u8() else { break };
        let r = (|| -> Option<()> {
            match op % 12 {
                0 => {
                    let off = u64::from(inp.u16()?) & 0xff8;
                    let v = inp.u64()?;
                    unit.mmio_write(&mem, off, &v.to_le_bytes());
                }
                1 => {
                    let off = u64::from(inp.u16()?) & 0xffc;
                    let v = inp.u32()?;
                    unit.mmio_write(&mem, off, &v.to_le_bytes());
                }
                2 | 3 => {
                    let rid = if op & 0x80 != 0 { inp.u16()? } else { 0x20 };
                    let p = inp.u8()?;
                    let pasid = if p & 0x80 != 0 {
                        None
                    } else {
                        Some(u32::from(p & 0x7f))
                    };
                    let addr = inp.u64()?;
                    let req = DmaRequest {
                        rid,
                        pasid,
                        addr,
                        access: access(p >> 1),
                        privileged: p & 0x40 != 0,
                    };
                    let _ = if op % 12 == 2 {
                        unit.translate(&mem, &req)
                    } else {
                        unit.translate_ats(&mem, &req)
                    };
                }
                4 => {
                    let addr = inp.u64()?;
                    unit.speculative_walk(
                        &mem,
                        &DmaRequest {
                            rid: 0x20,
                            pasid: Some(1),
                            addr,
                            access: Access::Read,
                            privileged: false,
                        },
                    );
                }
                5 => {
                    let gpa = (u64::from(inp.u32()?) % MEM) & !7;
                    w(&mem, gpa, inp.u64()?);
                }
                6 => {
                    // A page-table entry in the first-stage area (0x10000..0x40000).
                    let gpa = 0x10000 + (u64::from(inp.u16()?) << 3) % 0x30000;
                    w(&mem, gpa, inp.u64()? & 0x8000_0000_001f_ffe7 | 1);
                }
                7 => {
                    // A descriptor at the tail, then ring IQT.
                    for i in 0..4 {
                        w(&mem, 0x8000 + tail + 8 * i, inp.u64()?);
                    }
                    tail = (tail + 32) % 4096;
                    unit.mmio_write(&mem, regs::IQT, &tail.to_le_bytes());
                }
                8 => {
                    let a = inp.u64()?;
                    let b = inp.u16()?;
                    let req = PageRequest {
                        rid: 0x20,
                        pasid: (b & 1 != 0).then_some(1),
                        addr: a,
                        read: b & 2 != 0,
                        write: b & 4 != 0,
                        exec: b & 8 != 0,
                        privileged: b & 16 != 0,
                        last: b & 32 != 0,
                        group_index: b >> 7,
                        private_data: 0,
                    };
                    let _ = unit.page_request(&mem, req);
                }
                9 => unit.hint_pgtable_freed(inp.u64()?),
                10 => {
                    let off = u64::from(inp.u16()?) & 0xff8;
                    let mut b = [0u8; 8];
                    unit.mmio_read(off, &mut b);
                    let _ = (
                        unit.take_msis(),
                        unit.take_page_responses(),
                        unit.take_devtlb_invalidations(),
                    );
                }
                _ => unit.devtlb_invalidation_failed(inp.u16()?, op & 0x80 != 0),
            }
            Some(())
        })();
        if r.is_none() {
            break;
        }
    }
    let c = unit.counters();
    assert!(c.stale_walks.total() <= c.translations + c.speculative_walks);
    assert!(c.faults <= c.translations);
    assert!(c.faults_recorded <= c.faults);
    sink.check(&unit);
});
