//! The VT-d register block (4 KiB): offsets, bit fields, and the storage with
//! per-register write semantics (read-only, read-write, write-1-to-clear).
//! Side effects of a write (a GCMD command, a tail write, an unmasked
//! interrupt) are returned as a [`WriteEffect`] for the unit to act on, so this
//! module is only about what the guest reads back.

use crate::config::{Config, FAULT_RECORD_OFFSET, IOTLB_REG_OFFSET};

/// Size of the register block in bytes.
pub const REGISTER_BLOCK_SIZE: u64 = 4096;

/// Version.
pub const VER: u64 = 0x00;
/// Capability.
pub const CAP: u64 = 0x08;
/// Extended capability.
pub const ECAP: u64 = 0x10;
/// Global command (32-bit, write-only).
pub const GCMD: u64 = 0x18;
/// Global status (32-bit).
pub const GSTS: u64 = 0x1c;
/// Root table address.
pub const RTADDR: u64 = 0x20;
/// Context command.
pub const CCMD: u64 = 0x28;
/// Fault status (32-bit).
pub const FSTS: u64 = 0x34;
/// Fault event control.
pub const FECTL: u64 = 0x38;
/// Fault event data.
pub const FEDATA: u64 = 0x3c;
/// Fault event address.
pub const FEADDR: u64 = 0x40;
/// Fault event upper address.
pub const FEUADDR: u64 = 0x44;
/// Protected memory enable.
pub const PMEN: u64 = 0x64;
/// Invalidation queue head.
pub const IQH: u64 = 0x80;
/// Invalidation queue tail.
pub const IQT: u64 = 0x88;
/// Invalidation queue address.
pub const IQA: u64 = 0x90;
/// Invalidation completion status (32-bit).
pub const ICS: u64 = 0x9c;
/// Invalidation event control.
pub const IECTL: u64 = 0xa0;
/// Invalidation event data.
pub const IEDATA: u64 = 0xa4;
/// Invalidation event address.
pub const IEADDR: u64 = 0xa8;
/// Invalidation event upper address.
pub const IEUADDR: u64 = 0xac;
/// Invalidation queue error record.
pub const IQER: u64 = 0xb0;
/// Interrupt remapping table address (interrupt remapping is not modelled).
pub const IRTA: u64 = 0xb8;
/// Page request queue head.
pub const PQH: u64 = 0xc0;
/// Page request queue tail.
pub const PQT: u64 = 0xc8;
/// Page request queue address.
pub const PQA: u64 = 0xd0;
/// Page request status (32-bit).
pub const PRS: u64 = 0xdc;
/// Page request event control.
pub const PECTL: u64 = 0xe0;
/// Page request event data.
pub const PEDATA: u64 = 0xe4;
/// Page request event address.
pub const PEADDR: u64 = 0xe8;
/// Page request event upper address.
pub const PEUADDR: u64 = 0xec;
/// Invalidate address register (IOTLB registers, +0).
pub const IVA: u64 = IOTLB_REG_OFFSET;
/// IOTLB invalidate register (IOTLB registers, +8).
pub const IOTLB: u64 = IOTLB_REG_OFFSET + 8;
/// First fault recording register.
pub const FRCD: u64 = FAULT_RECORD_OFFSET;

/// GCMD/GSTS bits.
pub mod gcmd {
    /// Translation enable.
    pub const TE: u32 = 1 << 31;
    /// Set root table pointer.
    pub const SRTP: u32 = 1 << 30;
    /// Write buffer flush.
    pub const WBF: u32 = 1 << 27;
    /// Queued invalidation enable.
    pub const QIE: u32 = 1 << 26;
    /// Interrupt remapping enable.
    pub const IRE: u32 = 1 << 25;
    /// Set interrupt remap table pointer.
    pub const SIRTP: u32 = 1 << 24;
}

/// FSTS bits.
pub mod fsts {
    /// Primary fault overflow.
    pub const PFO: u32 = 1 << 0;
    /// Primary pending fault.
    pub const PPF: u32 = 1 << 1;
    /// Invalidation queue error.
    pub const IQE: u32 = 1 << 4;
    /// Invalidation completion error.
    pub const ICE: u32 = 1 << 5;
    /// Invalidation time-out error.
    pub const ITE: u32 = 1 << 6;
    /// Page request overflow.
    pub const PRO: u32 = 1 << 7;
    /// Fault record index shift (15:8).
    pub const FRI_SHIFT: u32 = 8;
}

/// Interrupt mask bit of FECTL, IECTL and PECTL.
pub const CTL_IM: u32 = 1 << 31;
/// Interrupt pending bit of FECTL, IECTL and PECTL.
pub const CTL_IP: u32 = 1 << 30;

/// What a register write asks the unit to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    /// Nothing beyond the stored value.
    None,
    /// A GCMD write with this value.
    Gcmd(u32),
    /// CCMD written with ICC=1.
    ContextCommand(u64),
    /// IOTLB register written with IVT=1.
    IotlbCommand(u64),
    /// IQT written.
    QueueTail,
    /// FSTS written (write-1-to-clear already applied).
    FaultStatus,
    /// A fault record's F bit was cleared.
    FaultRecord,
    /// FECTL written.
    FaultControl,
    /// IECTL written.
    InvalidationControl,
    /// PECTL written.
    PageRequestControl,
}

/// The register storage: one u64 per 8-byte word, plus what each word
/// accepts from software.
#[derive(Debug, Clone)]
pub struct RegisterFile {
    words: Box<[u64; 512]>,
    rw: Box<[u64; 512]>,
    w1c: Box<[u64; 512]>,
    fault_records: u16,
}

const fn word(off: u64) -> usize {
    (off / 8) as usize
}

impl RegisterFile {
    /// A register file at reset for `config`.
    pub fn new(config: &Config) -> Self {
        let mut r = RegisterFile {
            words: Box::new([0; 512]),
            rw: Box::new([0; 512]),
            w1c: Box::new([0; 512]),
            fault_records: config.fault_record_count(),
        };
        r.words[word(VER)] = 0x10;
        r.words[word(CAP)] = config.cap();
        r.words[word(ECAP)] = config.ecap();
        r.rw[word(RTADDR)] = !0x3ff;
        r.rw[word(CCMD)] = !0;
        r.w1c[word(0x30)] =
            u64::from(fsts::PFO | fsts::IQE | fsts::ICE | fsts::ITE | fsts::PRO) << 32;
        for ctl in [FECTL, IECTL, PECTL] {
            // IM in the low dword, the whole data register in the high one.
            r.rw[word(ctl)] = u64::from(CTL_IM) | (0xffff_ffff << 32);
            r.words[word(ctl)] = u64::from(CTL_IM);
        }
        for addr in [FEADDR, IEADDR, PEADDR] {
            r.rw[word(addr)] = 0xffff_ffff_ffff_fffc;
        }
        r.rw[word(0x60)] = 1 << 63; // PMEN.EPM (stored, no protected ranges)
        r.rw[word(IQT)] = 0x7fff0;
        r.rw[word(IQA)] = !0xfff | (1 << 11) | 7;
        r.w1c[word(0x98)] = 1 << 32; // ICS.IWC
        r.rw[word(PQH)] = 0x7ffe0;
        r.rw[word(PQT)] = 0x7ffe0;
        r.rw[word(PQA)] = !0xfff | 7;
        r.w1c[word(0xd8)] = 3 << 32; // PRS.PPR, PRS.PRO
        r.rw[word(IVA)] = !0xfff | 0x7f;
        r.rw[word(IOTLB)] = !0;
        for i in 0..u64::from(r.fault_records) {
            r.w1c[word(FRCD + i * 16 + 8)] = 1 << 63;
        }
        r
    }

    /// Number of fault recording registers.
    pub fn fault_records(&self) -> u16 {
        self.fault_records
    }

    /// Reads the 64-bit word at an 8-aligned offset.
    #[inline]
    pub fn get64(&self, off: u64) -> u64 {
        self.words.get(word(off)).copied().unwrap_or(0)
    }

    /// Writes the 64-bit word at an 8-aligned offset (hardware side, no masks).
    #[inline]
    pub fn set64(&mut self, off: u64, v: u64) {
        if let Some(w) = self.words.get_mut(word(off)) {
            *w = v;
        }
    }

    /// Reads the 32-bit register at a 4-aligned offset.
    pub fn get32(&self, off: u64) -> u32 {
        let w = self.get64(off & !7);
        (if off & 4 != 0 { w >> 32 } else { w } & 0xffff_ffff) as u32
    }

    /// Writes a 32-bit register (hardware side).
    pub fn set32(&mut self, off: u64, v: u32) {
        let w = self.get64(off & !7);
        let nw = if off & 4 != 0 {
            (w & 0xffff_ffff) | (u64::from(v) << 32)
        } else {
            (w & !0xffff_ffff) | u64::from(v)
        };
        self.set64(off & !7, nw);
    }

    /// Sets (or clears) bits of a 32-bit register (hardware side).
    pub fn update32(&mut self, off: u64, bits: u32, on: bool) {
        let v = self.get32(off);
        self.set32(off, if on { v | bits } else { v & !bits });
    }

    /// A guest read of `data.len()` (4 or 8) bytes; other sizes and
    /// misaligned or out-of-block accesses read as zero.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let len = data.len() as u64;
        if !(len == 4 || len == 8) || offset % len != 0 || offset >= REGISTER_BLOCK_SIZE {
            return;
        }
        let w = self.get64(offset & !7).to_le_bytes();
        let start = (offset & 7) as usize;
        if let Some(src) = w.get(start..start + data.len()) {
            data.copy_from_slice(src);
        }
    }

    /// A guest write; applies read-write and write-1-to-clear masks and
    /// reports what the unit must do.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> WriteEffect {
        let len = data.len() as u64;
        if !(len == 4 || len == 8) || offset % len != 0 || offset >= REGISTER_BLOCK_SIZE {
            return WriteEffect::None;
        }
        let base = offset & !7;
        let mut bytes = [0u8; 8];
        let start = (offset & 7) as usize;
        bytes[start..start + data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        let lanes: u64 = if len == 8 {
            !0
        } else if start == 0 {
            0xffff_ffff
        } else {
            0xffff_ffff << 32
        };
        if base == word_base(GCMD) {
            // GCMD is write-only; GSTS (high dword) is read-only.
            if lanes & 0xffff_ffff != 0 {
                return WriteEffect::Gcmd((value & 0xffff_ffff) as u32);
            }
            return WriteEffect::None;
        }
        let i = word(base);
        let (rw, w1c) = (self.rw[i] & lanes, self.w1c[i] & lanes);
        let old = self.words[i];
        self.words[i] = (old & !rw) | (value & rw);
        self.words[i] &= !(value & w1c);
        let touched = |off: u64| {
            lanes
                & if off & 4 != 0 {
                    0xffff_ffff << 32
                } else {
                    0xffff_ffff
                }
                != 0
        };
        match base {
            CCMD if self.words[i] & (1 << 63) != 0 => WriteEffect::ContextCommand(self.words[i]),
            IOTLB if self.words[i] & (1 << 63) != 0 => WriteEffect::IotlbCommand(self.words[i]),
            IQT => WriteEffect::QueueTail,
            0x30 if touched(FSTS) => WriteEffect::FaultStatus,
            FECTL if touched(FECTL) => WriteEffect::FaultControl,
            IECTL if touched(IECTL) => WriteEffect::InvalidationControl,
            PECTL if touched(PECTL) => WriteEffect::PageRequestControl,
            b if b >= FRCD
                && b < FRCD + u64::from(self.fault_records) * 16
                && (b - FRCD) % 16 == 8 =>
            {
                WriteEffect::FaultRecord
            }
            _ => WriteEffect::None,
        }
    }
}

const fn word_base(off: u64) -> u64 {
    off & !7
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rf() -> RegisterFile {
        RegisterFile::new(&Config::default())
    }

    fn r32(r: &RegisterFile, off: u64) -> u32 {
        let mut b = [0u8; 4];
        r.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn r64(r: &RegisterFile, off: u64) -> u64 {
        let mut b = [0u8; 8];
        r.read(off, &mut b);
        u64::from_le_bytes(b)
    }

    #[test]
    fn identification_registers_are_read_only() {
        let mut r = rf();
        let cap = r64(&r, CAP);
        assert_eq!(cap, Config::default().cap());
        assert_eq!(r64(&r, ECAP), Config::default().ecap());
        assert_eq!(r32(&r, VER), 0x10);
        r.write(CAP, &0u64.to_le_bytes());
        r.write(ECAP, &0u64.to_le_bytes());
        r.write(VER, &0u32.to_le_bytes());
        assert_eq!(r64(&r, CAP), cap);
        assert_eq!(r32(&r, VER), 0x10);
    }

    #[test]
    fn gcmd_is_write_only_and_reports_command() {
        let mut r = rf();
        assert_eq!(
            r.write(GCMD, &gcmd::TE.to_le_bytes()),
            WriteEffect::Gcmd(gcmd::TE)
        );
        assert_eq!(r32(&r, GCMD), 0);
        r.update32(GSTS, gcmd::TE, true);
        assert_eq!(r32(&r, GSTS), gcmd::TE);
        assert_eq!(r.write(GSTS, &0u32.to_le_bytes()), WriteEffect::None);
        assert_eq!(r32(&r, GSTS), gcmd::TE);
    }

    #[test]
    fn rtaddr_keeps_ttm_and_drops_reserved() {
        let mut r = rf();
        r.write(RTADDR, &(0x1234_5000u64 | (1 << 10) | 0xff).to_le_bytes());
        assert_eq!(r64(&r, RTADDR), 0x1234_5000 | (1 << 10));
    }

    #[test]
    fn fsts_is_write_one_to_clear() {
        let mut r = rf();
        r.update32(FSTS, fsts::PFO | fsts::IQE | fsts::PPF, true);
        assert_eq!(
            r.write(FSTS, &fsts::IQE.to_le_bytes()),
            WriteEffect::FaultStatus
        );
        assert_eq!(r32(&r, FSTS), fsts::PFO | fsts::PPF);
        r.write(FSTS, &fsts::PPF.to_le_bytes());
        assert_eq!(r32(&r, FSTS), fsts::PFO | fsts::PPF, "PPF is read-only");
    }

    #[test]
    fn event_control_registers() {
        let mut r = rf();
        for (ctl, eff) in [
            (FECTL, WriteEffect::FaultControl),
            (IECTL, WriteEffect::InvalidationControl),
            (PECTL, WriteEffect::PageRequestControl),
        ] {
            assert_eq!(r32(&r, ctl), CTL_IM, "masked at reset");
            r.update32(ctl, CTL_IP, true);
            assert_eq!(r.write(ctl, &0u32.to_le_bytes()), eff);
            assert_eq!(r32(&r, ctl), CTL_IP, "IP is read-only");
            r.write(ctl + 4, &0x4021u32.to_le_bytes());
            assert_eq!(r32(&r, ctl + 4), 0x4021);
        }
        r.write(FEADDR, &0xfee0_0003u32.to_le_bytes());
        assert_eq!(r32(&r, FEADDR), 0xfee0_0000);
        r.write(FEUADDR, &7u32.to_le_bytes());
        assert_eq!(r32(&r, FEUADDR), 7);
    }

    #[test]
    fn queue_registers() {
        let mut r = rf();
        r.write(IQA, &(0x8000u64 | (1 << 11) | 1 | 0x300).to_le_bytes());
        assert_eq!(r64(&r, IQA), 0x8000 | (1 << 11) | 1);
        assert_eq!(r.write(IQT, &0x20u64.to_le_bytes()), WriteEffect::QueueTail);
        assert_eq!(r64(&r, IQT), 0x20);
        r.write(IQH, &0x40u64.to_le_bytes());
        assert_eq!(r64(&r, IQH), 0, "IQH is read-only");
        r.update32(ICS, 1, true);
        r.write(ICS, &1u32.to_le_bytes());
        assert_eq!(r32(&r, ICS), 0);
        r.set64(IQER, 5);
        r.write(IQER, &0u64.to_le_bytes());
        assert_eq!(r64(&r, IQER), 5, "IQER is read-only");
    }

    #[test]
    fn page_request_registers() {
        let mut r = rf();
        r.write(PQA, &(0x10000u64 | 4).to_le_bytes());
        assert_eq!(r64(&r, PQA), 0x10004);
        r.write(PQH, &0x60u64.to_le_bytes());
        assert_eq!(r64(&r, PQH), 0x60);
        r.write(PQT, &0u64.to_le_bytes());
        assert_eq!(r64(&r, PQT), 0);
        r.update32(PRS, 3, true);
        r.write(PRS, &1u32.to_le_bytes());
        assert_eq!(r32(&r, PRS), 2);
    }

    #[test]
    fn command_registers_report_commands() {
        let mut r = rf();
        assert_eq!(
            r.write(CCMD, &(1u64 << 61).to_le_bytes()),
            WriteEffect::None
        );
        let v = (1u64 << 63) | (1 << 61);
        assert_eq!(
            r.write(CCMD, &v.to_le_bytes()),
            WriteEffect::ContextCommand(v)
        );
        let v = (1u64 << 63) | (1 << 60);
        assert_eq!(
            r.write(IOTLB, &v.to_le_bytes()),
            WriteEffect::IotlbCommand(v)
        );
        r.write(IVA, &(0x5000u64 | 0x43).to_le_bytes());
        assert_eq!(r64(&r, IVA), 0x5043);
    }

    #[test]
    fn fault_record_f_bit_is_w1c() {
        let mut r = rf();
        let hi = FRCD + 8;
        r.set64(hi, (1 << 63) | 0x71 << 32);
        assert_eq!(
            r.write(hi + 4, &(1u32 << 31).to_le_bytes()),
            WriteEffect::FaultRecord
        );
        assert_eq!(r64(&r, hi), 0x71 << 32);
        let past = FRCD + u64::from(r.fault_records()) * 16 + 8;
        assert_eq!(r.write(past, &0u64.to_le_bytes()), WriteEffect::None);
    }

    #[test]
    fn reject_odd_sizes_and_offsets() {
        let mut r = rf();
        let mut b = [0xffu8; 2];
        r.read(CAP, &mut b);
        assert_eq!(b, [0, 0]);
        let mut b = [0xffu8; 8];
        r.read(CAP + 4, &mut b);
        assert_eq!(b, [0; 8]);
        r.read(REGISTER_BLOCK_SIZE, &mut b);
        assert_eq!(b, [0; 8]);
        assert_eq!(r.write(IQT + 2, &[1, 2]), WriteEffect::None);
        assert_eq!(r.write(u64::MAX - 3, &[0; 4]), WriteEffect::None);
    }
}
