//! MSI-X: the capability in config space, the vector table and the pending
//! bit array (PBA) that live in a BAR.
//!
//! A device owns one [`Msix`], forwards its BAR accesses in the table and
//! PBA ranges here, calls [`Msix::config_written`] after every config write
//! (enable and function mask live in config space), and calls
//! [`Msix::notify`] to signal a vector. A masked vector sets its pending bit
//! and is delivered when it is unmasked, as the PCI specification requires.

use super::capability::CAP_ID_MSIX;
use super::config::{ConfigError, PciConfig};
use crate::interrupt::{InterruptSink, MsiMessage};

/// Message control: MSI-X enable.
const CTRL_ENABLE: u16 = 1 << 15;
/// Message control: function mask.
const CTRL_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control: per-vector mask.
const VECTOR_MASKED: u32 = 1;
/// Bytes per table entry.
pub const ENTRY_SIZE: u64 = 16;
/// Largest table the capability can describe (11-bit table size field).
pub const MAX_VECTORS: u16 = 2048;

/// Errors setting up MSI-X (VMM configuration errors).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MsixError {
    /// The vector count must be 1..=2048.
    #[error("invalid MSI-X vector count {0}")]
    BadVectorCount(u16),
    /// Table and PBA offsets must be 8-byte aligned and the BIR below 6.
    #[error("invalid MSI-X placement: BAR {bar}, offset {offset:#x}")]
    BadPlacement {
        /// BAR index.
        bar: u8,
        /// Offset inside the BAR.
        offset: u32,
    },
    /// The capability did not fit.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    address: u64,
    data: u32,
    control: u32,
}

/// MSI-X state of one function.
#[derive(Debug)]
pub struct Msix {
    cap: u16,
    entries: Vec<Entry>,
    pending: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    delivered: u64,
    pended: u64,
}

impl Msix {
    /// Adds the capability to `config` with `vectors` entries, the table in
    /// BAR `table_bar` at `table_offset` and the PBA in BAR `pba_bar` at
    /// `pba_offset`. The device must map those ranges of its BARs to
    /// [`Self::table_read`] / [`Self::table_write`] / [`Self::pba_read`].
    pub fn new(
        config: &mut PciConfig,
        vectors: u16,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> Result<Self, MsixError> {
        if vectors == 0 || vectors > MAX_VECTORS {
            return Err(MsixError::BadVectorCount(vectors));
        }
        for (bar, offset) in [(table_bar, table_offset), (pba_bar, pba_offset)] {
            if bar > 5 || offset & 7 != 0 {
                return Err(MsixError::BadPlacement { bar, offset });
            }
        }
        let mut body = [0u8; 12];
        body[2..4].copy_from_slice(&(vectors - 1).to_le_bytes());
        body[4..8].copy_from_slice(&(table_offset | u32::from(table_bar)).to_le_bytes());
        body[8..12].copy_from_slice(&(pba_offset | u32::from(pba_bar)).to_le_bytes());
        let mut rw = [0u8; 12];
        rw[2..4].copy_from_slice(&(CTRL_ENABLE | CTRL_FUNCTION_MASK).to_le_bytes());
        let cap = config.add_capability(CAP_ID_MSIX, &body, &rw, &[])?;
        let entry = Entry {
            address: 0,
            data: 0,
            control: VECTOR_MASKED,
        };
        Ok(Self {
            cap,
            entries: vec![entry; usize::from(vectors)],
            pending: vec![0; usize::from(vectors).div_ceil(64)],
            enabled: false,
            function_masked: false,
            delivered: 0,
            pended: 0,
        })
    }

    /// Offset of the capability in config space.
    pub fn cap_offset(&self) -> u16 {
        self.cap
    }

    /// Size in bytes of the table.
    pub fn table_len(&self) -> u64 {
        ENTRY_SIZE * self.entries.len() as u64
    }

    /// Size in bytes of the PBA (whole qwords).
    pub fn pba_len(&self) -> u64 {
        8 * self.pending.len() as u64
    }

    /// Whether MSI-X is enabled in the capability.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// MSIs delivered and MSIs left pending so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.delivered, self.pended)
    }

    /// Re-reads enable and function mask after a config write; delivers
    /// pending vectors that became unmasked.
    pub fn config_written(&mut self, config: &PciConfig, sink: &dyn InterruptSink) {
        let ctrl = config.read_u16(self.cap + 2);
        self.enabled = ctrl & CTRL_ENABLE != 0;
        self.function_masked = ctrl & CTRL_FUNCTION_MASK != 0;
        for v in 0..self.entries.len() {
            self.deliver_if_pending(v, sink);
        }
    }

    fn masked(&self, v: usize) -> bool {
        self.function_masked || self.entries[v].control & VECTOR_MASKED != 0
    }

    fn is_pending(&self, v: usize) -> bool {
        self.pending[v / 64] & (1 << (v % 64)) != 0
    }

    fn deliver_if_pending(&mut self, v: usize, sink: &dyn InterruptSink) {
        if self.enabled && !self.masked(v) && self.is_pending(v) {
            self.pending[v / 64] &= !(1 << (v % 64));
            self.send(v, sink);
        }
    }

    fn send(&mut self, v: usize, sink: &dyn InterruptSink) {
        let e = self.entries[v];
        self.delivered += 1;
        sink.raise_msi(MsiMessage {
            address: e.address,
            data: e.data,
        });
    }

    /// Signals `vector`: delivered now if MSI-X is enabled and the vector is
    /// unmasked, else its pending bit is set (when enabled) for delivery on
    /// unmask. Out-of-range vectors and signals while MSI-X is disabled are
    /// dropped. Returns whether an MSI was sent.
    pub fn notify(&mut self, vector: u16, sink: &dyn InterruptSink) -> bool {
        let v = usize::from(vector);
        if v >= self.entries.len() || !self.enabled {
            return false;
        }
        if self.masked(v) {
            self.pending[v / 64] |= 1 << (v % 64);
            self.pended += 1;
            return false;
        }
        self.send(v, sink);
        true
    }

    /// A read in the table range (`offset` relative to the table start).
    /// Dword and qword accesses inside one entry are served; others read
    /// zero.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some((v, field)) = self.locate(offset, data.len()) else {
            return;
        };
        let e = &self.entries[v];
        let mut bytes = [0u8; 16];
        bytes[0..8].copy_from_slice(&e.address.to_le_bytes());
        bytes[8..12].copy_from_slice(&e.data.to_le_bytes());
        bytes[12..16].copy_from_slice(&e.control.to_le_bytes());
        data.copy_from_slice(&bytes[field..field + data.len()]);
    }

    /// A write in the table range. Unmasking a vector with its pending bit
    /// set delivers it.
    pub fn table_write(&mut self, offset: u64, data: &[u8], sink: &dyn InterruptSink) {
        let Some((v, field)) = self.locate(offset, data.len()) else {
            return;
        };
        let e = &mut self.entries[v];
        let mut bytes = [0u8; 16];
        bytes[0..8].copy_from_slice(&e.address.to_le_bytes());
        bytes[8..12].copy_from_slice(&e.data.to_le_bytes());
        bytes[12..16].copy_from_slice(&e.control.to_le_bytes());
        bytes[field..field + data.len()].copy_from_slice(data);
        let mut q = [0u8; 8];
        q.copy_from_slice(&bytes[0..8]);
        e.address = u64::from_le_bytes(q);
        let mut d = [0u8; 4];
        d.copy_from_slice(&bytes[8..12]);
        e.data = u32::from_le_bytes(d);
        d.copy_from_slice(&bytes[12..16]);
        // Only the mask bit is defined in vector control.
        e.control = u32::from_le_bytes(d) & VECTOR_MASKED;
        self.deliver_if_pending(v, sink);
    }

    /// A read in the PBA range; writes there are ignored (read-only).
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            return;
        }
        let Some(q) = usize::try_from(offset / 8)
            .ok()
            .and_then(|i| self.pending.get(i))
        else {
            return;
        };
        let bytes = q.to_le_bytes();
        let start = usize::try_from(offset % 8).unwrap_or(0);
        data.copy_from_slice(&bytes[start..start + data.len()]);
    }

    /// Entry index and byte offset inside it for a naturally aligned 4- or
    /// 8-byte access, or `None`.
    fn locate(&self, offset: u64, len: usize) -> Option<(usize, usize)> {
        if !matches!(len, 4 | 8) || offset % len as u64 != 0 {
            return None;
        }
        let v = usize::try_from(offset / ENTRY_SIZE).ok()?;
        if v >= self.entries.len() {
            return None;
        }
        let field = usize::try_from(offset % ENTRY_SIZE).ok()?;
        Some((v, field))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::config::PciIdentity;
    use super::*;
    use std::sync::Mutex;

    /// An interrupt sink that records what it is given.
    #[derive(Debug, Default)]
    pub(crate) struct RecordingSink {
        pub(crate) msis: Mutex<Vec<MsiMessage>>,
    }

    impl InterruptSink for RecordingSink {
        fn raise_msi(&self, msi: MsiMessage) {
            self.msis.lock().unwrap().push(msi);
        }
        fn set_irq_line(&self, _gsi: u32, _level: bool) {}
    }

    impl RecordingSink {
        pub(crate) fn take(&self) -> Vec<MsiMessage> {
            std::mem::take(&mut *self.msis.lock().unwrap())
        }
    }

    fn setup(vectors: u16) -> (PciConfig, Msix) {
        let mut c = PciConfig::new(PciIdentity {
            vendor_id: 1,
            device_id: 2,
            revision: 0,
            class_code: 0,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
        });
        let m = Msix::new(&mut c, vectors, 0, 0x2000, 0, 0x3000).unwrap();
        (c, m)
    }

    fn program(m: &mut Msix, v: u64, addr: u64, data: u32, sink: &RecordingSink) {
        m.table_write(v * 16, &addr.to_le_bytes(), sink);
        m.table_write(v * 16 + 8, &data.to_le_bytes(), sink);
        m.table_write(v * 16 + 12, &0u32.to_le_bytes(), sink);
    }

    fn set_ctrl(c: &mut PciConfig, m: &mut Msix, ctrl: u16, sink: &RecordingSink) {
        c.write(m.cap_offset() + 2, &ctrl.to_le_bytes());
        m.config_written(c, sink);
    }

    #[test]
    fn capability_describes_table_and_pba() {
        let (c, m) = setup(3);
        let off = m.cap_offset();
        assert_eq!(c.read_u16(off) & 0xff, 0x11);
        assert_eq!(c.read_u16(off + 2), 2);
        assert_eq!(c.read_u32(off + 4), 0x2000);
        assert_eq!(c.read_u32(off + 8), 0x3000);
        assert_eq!((m.table_len(), m.pba_len()), (48, 8));
    }

    #[test]
    fn vectors_reset_masked_and_table_reads_back() {
        let (_, mut m) = setup(2);
        let sink = RecordingSink::default();
        let mut d = [0u8; 4];
        m.table_read(12, &mut d);
        assert_eq!(u32::from_le_bytes(d), 1);
        program(&mut m, 1, 0xfee0_1000, 0x41, &sink);
        let mut q = [0u8; 8];
        m.table_read(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0xfee0_1000);
        m.table_read(24, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x41);
    }

    #[test]
    fn delivers_when_enabled_and_unmasked() {
        let (mut c, mut m) = setup(2);
        let sink = RecordingSink::default();
        program(&mut m, 0, 0xfee0_0000, 0x30, &sink);
        assert!(!m.notify(0, &sink), "disabled: dropped");
        set_ctrl(&mut c, &mut m, CTRL_ENABLE, &sink);
        assert!(m.notify(0, &sink));
        assert_eq!(
            sink.take(),
            vec![MsiMessage {
                address: 0xfee0_0000,
                data: 0x30
            }]
        );
    }

    #[test]
    fn masked_vector_pends_and_fires_on_unmask() {
        let (mut c, mut m) = setup(2);
        let sink = RecordingSink::default();
        set_ctrl(&mut c, &mut m, CTRL_ENABLE, &sink);
        program(&mut m, 1, 0xfee0_0000, 0x31, &sink);
        m.table_write(16 + 12, &1u32.to_le_bytes(), &sink);
        assert!(!m.notify(1, &sink));
        let mut q = [0u8; 8];
        m.pba_read(0, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0b10);
        assert!(sink.take().is_empty());
        m.table_write(16 + 12, &0u32.to_le_bytes(), &sink);
        assert_eq!(sink.take().len(), 1);
        m.pba_read(0, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0);
    }

    #[test]
    fn function_mask_pends_all_vectors() {
        let (mut c, mut m) = setup(2);
        let sink = RecordingSink::default();
        program(&mut m, 0, 0xfee0_0000, 1, &sink);
        program(&mut m, 1, 0xfee0_0000, 2, &sink);
        set_ctrl(&mut c, &mut m, CTRL_ENABLE | CTRL_FUNCTION_MASK, &sink);
        m.notify(0, &sink);
        m.notify(1, &sink);
        assert!(sink.take().is_empty());
        assert_eq!(m.counts(), (0, 2));
        set_ctrl(&mut c, &mut m, CTRL_ENABLE, &sink);
        let got: Vec<u32> = sink.take().iter().map(|m| m.data).collect();
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn reject_odd_table_accesses_and_bad_vectors() {
        let (mut c, mut m) = setup(1);
        let sink = RecordingSink::default();
        set_ctrl(&mut c, &mut m, CTRL_ENABLE, &sink);
        m.table_write(1, &[0xff; 4], &sink);
        m.table_write(0, &[0xff; 2], &sink);
        m.table_write(16, &[0xff; 4], &sink);
        m.table_write(u64::MAX - 3, &[0xff; 4], &sink);
        let mut q = [0xaau8; 8];
        m.table_read(0, &mut q);
        assert_eq!(q, [0; 8]);
        m.table_read(u64::MAX - 7, &mut q);
        assert_eq!(q, [0; 8]);
        m.pba_read(4096, &mut q);
        assert_eq!(q, [0; 8]);
        assert!(!m.notify(5, &sink));
        assert_eq!(
            Msix::new(&mut c, 0, 0, 0, 0, 0x100).unwrap_err(),
            MsixError::BadVectorCount(0)
        );
        assert!(matches!(
            Msix::new(&mut c, 1, 6, 0, 0, 0x100),
            Err(MsixError::BadPlacement { .. })
        ));
    }
}
