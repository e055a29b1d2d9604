//! Primary fault logging: fault recording registers written in a ring, FSTS
//! (PPF, PFO, FRI) kept consistent with them, and the fault event interrupt
//! (FECTL/FEDATA/FEADDR) raised or left pending according to FECTL.IM. The
//! same interrupt-control logic serves the invalidation-completion and
//! page-request events.

use serde::Serialize;

use crate::regs::{self, CTL_IM, CTL_IP, RegisterFile, fsts};
use crate::walk::Access;

/// A message-signalled interrupt the unit wants delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Msi {
    /// Address (FEUADDR:FEADDR or the matching pair).
    pub address: u64,
    /// Data.
    pub data: u32,
}

/// Why a fault could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// The next recording register still holds an unserviced fault: PFO set,
    /// this fault dropped.
    #[error("fault recording register {index} still pending: overflow")]
    Overflow {
        /// The ring index that was full.
        index: u16,
    },
    /// FSTS.PFO is already set; faults are dropped until software clears it.
    #[error("primary fault overflow already pending")]
    OverflowPending,
}

/// What a fault records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultInfo {
    /// Requester id.
    pub rid: u16,
    /// PASID, if any.
    pub pasid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// VT-d reason code.
    pub reason: u8,
    /// Access kind.
    pub access: Access,
    /// Supervisor request.
    pub privileged: bool,
}

impl FaultInfo {
    /// The 128-bit fault record (low, high).
    pub fn encode(&self) -> [u64; 2] {
        let lo = self.addr & !0xfff;
        let mut hi = u64::from(self.rid) | (u64::from(self.reason) << 32) | (1 << 63);
        if let Some(p) = self.pasid {
            hi |= (1 << 31) | (u64::from(p & 0xf_ffff) << 40);
            if self.privileged {
                hi |= 1 << 29;
            }
            if self.access == Access::Execute {
                hi |= 1 << 30;
            }
        }
        if self.access != Access::Write {
            hi |= 1 << 62; // T1: read (or execute)
        }
        [lo, hi]
    }
}

/// The fault recording ring.
#[derive(Debug, Default)]
pub struct FaultUnit {
    next: u16,
}

fn record_offset(i: u16) -> u64 {
    regs::FRCD + u64::from(i) * 16
}

impl FaultUnit {
    /// Records `info`. Returns the index used, or why it was dropped; in both
    /// cases the caller raises the fault event if [`event_condition`] says so.
    pub fn record(&mut self, regs: &mut RegisterFile, info: &FaultInfo) -> Result<u16, FaultError> {
        let n = regs.fault_records().max(1);
        if regs.get32(regs::FSTS) & fsts::PFO != 0 {
            return Err(FaultError::OverflowPending);
        }
        let i = self.next % n;
        let off = record_offset(i);
        if regs.get64(off + 8) >> 63 != 0 {
            regs.update32(regs::FSTS, fsts::PFO, true);
            return Err(FaultError::Overflow { index: i });
        }
        let [lo, hi] = info.encode();
        regs.set64(off, lo);
        regs.set64(off + 8, hi);
        self.next = (i + 1) % n;
        refresh_pending(regs);
        Ok(i)
    }
}

/// Recomputes FSTS.PPF and FRI from the records' F bits.
pub fn refresh_pending(regs: &mut RegisterFile) {
    let n = regs.fault_records();
    let first = (0..n).find(|i| regs.get64(record_offset(*i) + 8) >> 63 != 0);
    let mut v = regs.get32(regs::FSTS) & !(fsts::PPF | (0xff << fsts::FRI_SHIFT));
    if let Some(i) = first {
        v |= fsts::PPF | (u32::from(i & 0xff) << fsts::FRI_SHIFT);
    }
    regs.set32(regs::FSTS, v);
}

/// Whether any fault event condition is set in FSTS (PPF, PFO, IQE, ICE, ITE, PRO).
pub fn event_condition(regs: &RegisterFile) -> bool {
    regs.get32(regs::FSTS) & (fsts::PPF | fsts::PFO | fsts::IQE | fsts::ICE | fsts::ITE) != 0
}

/// Signals an interrupt through the control register at `ctl` (FECTL, IECTL
/// or PECTL; data at +4, address at +8, upper address at +12): an MSI when
/// unmasked, else IP is set and the MSI waits for the unmask.
pub fn signal(regs: &mut RegisterFile, ctl: u64) -> Option<Msi> {
    let c = regs.get32(ctl);
    if c & CTL_IP != 0 {
        return None;
    }
    if c & CTL_IM != 0 {
        regs.update32(ctl, CTL_IP, true);
        return None;
    }
    Some(msi_for(regs, ctl))
}

/// After a control-register write: a pending interrupt fires once unmasked.
/// `still_wanted` says whether the condition is still set (a pending fault
/// event whose status was cleared meanwhile is dropped).
pub fn on_control_write(regs: &mut RegisterFile, ctl: u64, still_wanted: bool) -> Option<Msi> {
    let c = regs.get32(ctl);
    if c & CTL_IP != 0 && c & CTL_IM == 0 {
        regs.update32(ctl, CTL_IP, false);
        return still_wanted.then(|| msi_for(regs, ctl));
    }
    None
}

fn msi_for(regs: &RegisterFile, ctl: u64) -> Msi {
    let data = regs.get32(ctl + 4);
    let address = u64::from(regs.get32(ctl + 8)) | (u64::from(regs.get32(ctl + 12)) << 32);
    Msi { address, data }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn info(reason: u8) -> FaultInfo {
        FaultInfo {
            rid: 0x20,
            pasid: Some(7),
            addr: 0xdead_b123,
            reason,
            access: Access::Read,
            privileged: true,
        }
    }

    fn regs(n: u16) -> RegisterFile {
        RegisterFile::new(&Config {
            fault_records: n,
            ..Config::default()
        })
    }

    #[test]
    fn record_layout() {
        let [lo, hi] = info(0x71).encode();
        assert_eq!(lo, 0xdead_b000);
        assert_eq!(hi & 0xffff, 0x20);
        assert_eq!((hi >> 32) & 0xff, 0x71);
        assert_eq!((hi >> 40) & 0xf_ffff, 7);
        assert_ne!(hi & (1 << 31), 0, "PASID present");
        assert_ne!(hi & (1 << 29), 0, "privileged");
        assert_ne!(hi & (1 << 62), 0, "read");
        assert_ne!(hi & (1 << 63), 0, "F");
    }

    #[test]
    fn records_ring_and_overflow() {
        let mut r = regs(2);
        let mut u = FaultUnit::default();
        assert_eq!(u.record(&mut r, &info(1)), Ok(0));
        assert_eq!(r.get32(regs::FSTS) & fsts::PPF, fsts::PPF);
        assert_eq!((r.get32(regs::FSTS) >> 8) & 0xff, 0);
        assert_eq!(u.record(&mut r, &info(2)), Ok(1));
        assert_eq!(
            u.record(&mut r, &info(3)),
            Err(FaultError::Overflow { index: 0 })
        );
        assert_ne!(r.get32(regs::FSTS) & fsts::PFO, 0);
        assert_eq!(u.record(&mut r, &info(4)), Err(FaultError::OverflowPending));
        // Software clears record 0 and PFO.
        r.write(regs::FRCD + 12, &(1u32 << 31).to_le_bytes());
        refresh_pending(&mut r);
        assert_eq!(
            (r.get32(regs::FSTS) >> 8) & 0xff,
            1,
            "FRI points at record 1"
        );
        r.write(regs::FSTS, &fsts::PFO.to_le_bytes());
        assert_eq!(u.record(&mut r, &info(5)), Ok(0));
    }

    #[test]
    fn event_respects_mask() {
        let mut r = regs(8);
        r.set32(regs::FEDATA, 0x41);
        r.set32(regs::FEADDR, 0xfee0_0000);
        assert_eq!(signal(&mut r, regs::FECTL), None, "masked at reset");
        assert_ne!(r.get32(regs::FECTL) & CTL_IP, 0);
        r.write(regs::FECTL, &0u32.to_le_bytes());
        assert_eq!(
            on_control_write(&mut r, regs::FECTL, true),
            Some(Msi {
                address: 0xfee0_0000,
                data: 0x41
            })
        );
        assert_eq!(r.get32(regs::FECTL) & CTL_IP, 0);
        assert_eq!(
            signal(&mut r, regs::FECTL),
            Some(Msi {
                address: 0xfee0_0000,
                data: 0x41
            })
        );
    }
}
