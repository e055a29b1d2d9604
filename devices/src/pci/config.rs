//! A PCI Express type 0 configuration space (4 KiB).
//!
//! Models the bytes a function exposes through ECAM or CF8/CFC: the header
//! (identity, command/status, BARs with sizing, capabilities pointer), the
//! standard capability list from 0x40 and the extended capability list from
//! 0x100. Write semantics are driven by per-byte masks (read-write and
//! write-1-to-clear), so sizing a BAR with all-ones works without special
//! cases. It does not decode BARs: [`super::root::PciRoot`] does that from the
//! addresses this type reports.

/// Size of one function's configuration space.
pub const CONFIG_SPACE_SIZE: usize = 4096;
/// Offset of the first extended capability.
pub const EXT_CAP_START: u16 = 0x100;
/// First offset available to standard capabilities (after the header).
pub const CAP_START: u16 = 0x40;
/// Number of BAR registers in a type 0 header.
pub const BAR_COUNT: usize = 6;

/// Vendor ID register.
pub const VENDOR_ID: u16 = 0x00;
/// Device ID register.
pub const DEVICE_ID: u16 = 0x02;
/// Command register.
pub const COMMAND: u16 = 0x04;
/// Status register.
pub const STATUS: u16 = 0x06;
/// Revision ID (1 byte) followed by the 3-byte class code.
pub const REVISION_ID: u16 = 0x08;
/// Header type register.
pub const HEADER_TYPE: u16 = 0x0e;
/// First BAR register.
pub const BAR0: u16 = 0x10;
/// Subsystem vendor ID.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
/// Subsystem ID.
pub const SUBSYSTEM_ID: u16 = 0x2e;
/// Capabilities pointer.
pub const CAPABILITIES_POINTER: u16 = 0x34;
/// Interrupt line (RW scratch for the OS).
pub const INTERRUPT_LINE: u16 = 0x3c;

/// Command: memory space enable.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command: bus master enable.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command bits a guest may change: memory, bus master, parity error
/// response, SERR enable, interrupt disable. I/O space is not implemented.
const COMMAND_WRITABLE: u16 = COMMAND_MEMORY | COMMAND_BUS_MASTER | (1 << 6) | (1 << 8) | (1 << 10);
/// Status: capabilities list present.
const STATUS_CAP_LIST: u16 = 1 << 4;
/// Status bits that are write-1-to-clear (error bits 15:11 and 8).
const STATUS_W1C: u16 = 0xf900;

/// Errors building a configuration space (VMM configuration errors, never
/// guest-triggered).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// BAR index out of range or already defined (or the upper half of a
    /// 64-bit BAR).
    #[error("BAR {index} cannot be defined")]
    BarUnavailable {
        /// The BAR index.
        index: usize,
    },
    /// BAR sizes must be powers of two, at least 16 bytes, below 4 GiB for
    /// 32-bit BARs.
    #[error("invalid BAR size {size:#x} for BAR {index}")]
    BadBarSize {
        /// The BAR index.
        index: usize,
        /// The rejected size.
        size: u64,
    },
    /// A capability does not fit in the remaining space.
    #[error("capability {id:#x} of {len:#x} bytes does not fit at {offset:#x}")]
    NoSpace {
        /// Capability ID.
        id: u16,
        /// Its length.
        len: usize,
        /// Where it would have started.
        offset: usize,
    },
    /// A capability body must hold at least its header.
    #[error("capability {id:#x} body of {len} bytes is shorter than its header")]
    TooShort {
        /// Capability ID.
        id: u16,
        /// Its length.
        len: usize,
    },
}

/// The kind of memory a BAR maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR.
    Memory32,
    /// 64-bit memory BAR (occupies this BAR and the next).
    Memory64,
}

/// One BAR as the device defines it and the guest currently programs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// BAR index (0..6).
    pub index: usize,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// 32- or 64-bit.
    pub kind: BarKind,
    /// Prefetchable bit.
    pub prefetchable: bool,
    /// The address currently in the BAR register(s).
    pub address: u64,
}

#[derive(Clone, Copy, Debug)]
struct BarDef {
    size: u64,
    kind: BarKind,
    prefetchable: bool,
}

/// One function's configuration space.
#[derive(Clone)]
pub struct PciConfig {
    bytes: Box<[u8; CONFIG_SPACE_SIZE]>,
    write_mask: Box<[u8; CONFIG_SPACE_SIZE]>,
    w1c_mask: Box<[u8; CONFIG_SPACE_SIZE]>,
    bars: [Option<BarDef>; BAR_COUNT],
    last_cap: Option<u16>,
    next_cap: u16,
    last_ext_cap: Option<u16>,
    next_ext_cap: u16,
}

impl std::fmt::Debug for PciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciConfig")
            .field("vendor", &format_args!("{:#06x}", self.read_u16(VENDOR_ID)))
            .field("device", &format_args!("{:#06x}", self.read_u16(DEVICE_ID)))
            .field("bars", &self.bars)
            .finish()
    }
}

/// Identity of a function: what the header's read-only fields say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIdentity {
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code: base class << 16 | subclass << 8 | programming interface.
    pub class_code: u32,
    /// Subsystem vendor ID.
    pub subsystem_vendor_id: u16,
    /// Subsystem ID.
    pub subsystem_id: u16,
}

impl PciConfig {
    /// A type 0 header with `id`, no BARs and no capabilities.
    pub fn new(id: PciIdentity) -> Self {
        let mut c = Self {
            bytes: Box::new([0; CONFIG_SPACE_SIZE]),
            write_mask: Box::new([0; CONFIG_SPACE_SIZE]),
            w1c_mask: Box::new([0; CONFIG_SPACE_SIZE]),
            bars: [None; BAR_COUNT],
            last_cap: None,
            next_cap: CAP_START,
            last_ext_cap: None,
            next_ext_cap: EXT_CAP_START,
        };
        c.set_u16(VENDOR_ID, id.vendor_id);
        c.set_u16(DEVICE_ID, id.device_id);
        c.bytes[usize::from(REVISION_ID)] = id.revision;
        let class = id.class_code.to_le_bytes();
        c.bytes[0x09..0x0c].copy_from_slice(&class[..3]);
        c.set_u16(SUBSYSTEM_VENDOR_ID, id.subsystem_vendor_id);
        c.set_u16(SUBSYSTEM_ID, id.subsystem_id);
        c.set_mask_u16(COMMAND, COMMAND_WRITABLE, 0);
        c.set_mask_u16(STATUS, 0, STATUS_W1C);
        c.write_mask[usize::from(INTERRUPT_LINE)] = 0xff;
        c
    }

    /// Reads `data.len()` bytes at `offset`; bytes beyond the space read
    /// as all-ones.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::from(offset)
                .checked_add(i)
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0xff);
        }
    }

    /// A guest write: only bits in the write mask change; bits in the
    /// write-1-to-clear mask are cleared where `data` has ones. Bytes beyond
    /// the space are dropped.
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let Some(o) = usize::from(offset)
                .checked_add(i)
                .filter(|&o| o < CONFIG_SPACE_SIZE)
            else {
                return;
            };
            let old = self.bytes[o];
            let m = self.write_mask[o];
            let mut new = (old & !m) | (v & m);
            new &= !(v & self.w1c_mask[o]);
            self.bytes[o] = new;
        }
    }

    /// Host-side read of a little-endian u16 (bounds-checked; all-ones out
    /// of range).
    pub fn read_u16(&self, offset: u16) -> u16 {
        let mut b = [0; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    /// Host-side read of a little-endian u32.
    pub fn read_u32(&self, offset: u16) -> u32 {
        let mut b = [0; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Host-side store ignoring the write masks (for read-only fields the
    /// device itself updates).
    pub fn set_bytes(&mut self, offset: u16, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            if let Some(b) = usize::from(offset)
                .checked_add(i)
                .and_then(|o| self.bytes.get_mut(o))
            {
                *b = v;
            }
        }
    }

    /// Host-side store of a u16 ignoring the write masks.
    pub fn set_u16(&mut self, offset: u16, v: u16) {
        self.set_bytes(offset, &v.to_le_bytes());
    }

    /// Host-side store of a u32 ignoring the write masks.
    pub fn set_u32(&mut self, offset: u16, v: u32) {
        self.set_bytes(offset, &v.to_le_bytes());
    }

    /// Sets the read-write and write-1-to-clear masks of a u16 field.
    pub fn set_mask_u16(&mut self, offset: u16, rw: u16, w1c: u16) {
        self.set_masks(offset, &rw.to_le_bytes(), &w1c.to_le_bytes());
    }

    /// Sets the read-write and write-1-to-clear masks of a u32 field.
    pub fn set_mask_u32(&mut self, offset: u16, rw: u32, w1c: u32) {
        self.set_masks(offset, &rw.to_le_bytes(), &w1c.to_le_bytes());
    }

    fn set_masks(&mut self, offset: u16, rw: &[u8], w1c: &[u8]) {
        for i in 0..rw.len().max(w1c.len()) {
            if let Some(o) = usize::from(offset)
                .checked_add(i)
                .filter(|&o| o < CONFIG_SPACE_SIZE)
            {
                self.write_mask[o] = rw.get(i).copied().unwrap_or(0);
                self.w1c_mask[o] = w1c.get(i).copied().unwrap_or(0);
            }
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.read_u16(COMMAND)
    }

    /// Whether the memory space decode is on.
    pub fn memory_enabled(&self) -> bool {
        self.command() & COMMAND_MEMORY != 0
    }

    /// Whether the function may master the bus (do DMA and send MSIs).
    pub fn bus_master(&self) -> bool {
        self.command() & COMMAND_BUS_MASTER != 0
    }

    /// Defines BAR `index` (and `index + 1` for a 64-bit BAR) with `size`
    /// bytes, initially at address 0.
    pub fn add_bar(
        &mut self,
        index: usize,
        size: u64,
        kind: BarKind,
        prefetchable: bool,
    ) -> Result<(), ConfigError> {
        let slots = if kind == BarKind::Memory64 { 2 } else { 1 };
        let last = index.checked_add(slots - 1).filter(|&l| l < BAR_COUNT);
        let Some(last) = last else {
            return Err(ConfigError::BarUnavailable { index });
        };
        let taken = |i: usize| {
            self.bars[i].is_some()
                || (i > 0
                    && matches!(
                        self.bars[i - 1],
                        Some(BarDef {
                            kind: BarKind::Memory64,
                            ..
                        })
                    ))
        };
        if (index..=last).any(taken) {
            return Err(ConfigError::BarUnavailable { index });
        }
        let max = if kind == BarKind::Memory32 {
            1 << 31
        } else {
            1 << 62
        };
        if !size.is_power_of_two() || !(16..=max).contains(&size) {
            return Err(ConfigError::BadBarSize { index, size });
        }
        let mask = !(size - 1);
        let type_bits: u32 = match kind {
            BarKind::Memory32 => 0,
            BarKind::Memory64 => 0b100,
        } | if prefetchable { 0b1000 } else { 0 };
        let reg = bar_reg(index);
        self.set_u32(reg, type_bits);
        self.set_mask_u32(reg, low32(mask) & !0xf, 0);
        if kind == BarKind::Memory64 {
            let hi = bar_reg(last);
            self.set_u32(hi, 0);
            self.set_mask_u32(hi, high32(mask), 0);
        }
        self.bars[index] = Some(BarDef {
            size,
            kind,
            prefetchable,
        });
        Ok(())
    }

    /// Host-side placement of BAR `index` at `address` (which must be
    /// aligned to its size; the register masks drop the low bits).
    pub fn set_bar_address(&mut self, index: usize, address: u64) {
        let Some(Some(def)) = self.bars.get(index).copied() else {
            return;
        };
        let reg = bar_reg(index);
        let type_bits = self.read_u32(reg) & 0xf;
        self.set_u32(
            reg,
            (low32(address) & !0xf & low32(!(def.size - 1))) | type_bits,
        );
        if def.kind == BarKind::Memory64 {
            self.set_u32(reg + 4, high32(address & !(def.size - 1)));
        }
    }

    /// The BARs defined on this function with their current addresses.
    pub fn bars(&self) -> Vec<BarInfo> {
        self.bars
            .iter()
            .enumerate()
            .filter_map(|(index, d)| {
                let d = d.as_ref()?;
                let reg = bar_reg(index);
                let mut address = u64::from(self.read_u32(reg) & !0xf);
                if d.kind == BarKind::Memory64 {
                    address |= u64::from(self.read_u32(reg + 4)) << 32;
                }
                Some(BarInfo {
                    index,
                    size: d.size,
                    kind: d.kind,
                    prefetchable: d.prefetchable,
                    address,
                })
            })
            .collect()
    }

    /// Appends a standard capability. `body` is the whole capability
    /// including its 2-byte header (ID and next pointer are filled in here);
    /// `rw`/`w1c` are masks of the same length (shorter masks leave the rest
    /// read-only). Capabilities start 16-byte aligned from 0x40. Returns the
    /// capability's offset.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        rw: &[u8],
        w1c: &[u8],
    ) -> Result<u16, ConfigError> {
        if body.len() < 2 {
            return Err(ConfigError::TooShort {
                id: u16::from(id),
                len: body.len(),
            });
        }
        let offset = self.next_cap;
        let end = usize::from(offset) + body.len();
        if end > usize::from(EXT_CAP_START) {
            return Err(ConfigError::NoSpace {
                id: u16::from(id),
                len: body.len(),
                offset: usize::from(offset),
            });
        }
        self.set_bytes(offset, body);
        self.bytes[usize::from(offset)] = id;
        self.bytes[usize::from(offset) + 1] = 0;
        self.set_masks(offset, rw, w1c);
        // The header itself is never writable.
        self.set_masks(offset, &[0, 0], &[0, 0]);
        match self.last_cap {
            None => {
                self.bytes[usize::from(CAPABILITIES_POINTER)] = low8(offset);
                let status = self.read_u16(STATUS) | STATUS_CAP_LIST;
                self.set_u16(STATUS, status);
            }
            Some(prev) => self.bytes[usize::from(prev) + 1] = low8(offset),
        }
        self.last_cap = Some(offset);
        self.next_cap = align16(end);
        Ok(offset)
    }

    /// Appends an extended capability (from 0x100, 16-byte aligned). `body`
    /// includes the 4-byte header, which is filled in here.
    pub fn add_ext_capability(
        &mut self,
        id: u16,
        version: u8,
        body: &[u8],
        rw: &[u8],
        w1c: &[u8],
    ) -> Result<u16, ConfigError> {
        if body.len() < 4 {
            return Err(ConfigError::TooShort {
                id,
                len: body.len(),
            });
        }
        let offset = self.next_ext_cap;
        let end = usize::from(offset) + body.len();
        if end > CONFIG_SPACE_SIZE {
            return Err(ConfigError::NoSpace {
                id,
                len: body.len(),
                offset: usize::from(offset),
            });
        }
        self.set_bytes(offset, body);
        let header = u32::from(id) | (u32::from(version & 0xf) << 16);
        self.set_u32(offset, header);
        self.set_masks(offset, rw, w1c);
        self.set_masks(offset, &[0; 4], &[0; 4]);
        if let Some(prev) = self.last_ext_cap {
            let h = self.read_u32(prev) & 0x000f_ffff;
            self.set_u32(prev, h | (u32::from(offset) << 20));
        }
        self.last_ext_cap = Some(offset);
        self.next_ext_cap = align16(end);
        Ok(offset)
    }

    /// Finds a standard capability by ID, walking the list as a guest would
    /// (bounded by the number of 4-byte slots, so a loop cannot hang).
    pub fn find_capability(&self, id: u8) -> Option<u16> {
        let mut ptr = u16::from(self.bytes[usize::from(CAPABILITIES_POINTER)] & 0xfc);
        // Limit: 48 dword slots between 0x40 and 0x100.
        for _ in 0..48 {
            if ptr < CAP_START {
                return None;
            }
            if self.bytes[usize::from(ptr)] == id {
                return Some(ptr);
            }
            ptr = u16::from(self.bytes[usize::from(ptr) + 1] & 0xfc);
        }
        None
    }

    /// Finds an extended capability by ID (bounded walk, as above).
    pub fn find_ext_capability(&self, id: u16) -> Option<u16> {
        let mut ptr = EXT_CAP_START;
        // Limit: 960 dword slots between 0x100 and 0x1000.
        for _ in 0..960 {
            let h = self.read_u32(ptr);
            if h == 0 || h == u32::MAX {
                return None;
            }
            if h & 0xffff == u32::from(id) {
                return Some(ptr);
            }
            let next = u16::try_from(h >> 20).unwrap_or(0) & 0xffc;
            if next < EXT_CAP_START {
                return None;
            }
            ptr = next;
        }
        None
    }
}

fn bar_reg(index: usize) -> u16 {
    // index < BAR_COUNT everywhere this is called.
    BAR0 + 4 * u16::try_from(index).unwrap_or(0)
}

fn align16(v: usize) -> u16 {
    u16::try_from((v + 15) & !15).unwrap_or(u16::MAX)
}

fn low8(v: u16) -> u8 {
    v.to_le_bytes()[0]
}

fn low32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

fn high32(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PciConfig {
        PciConfig::new(PciIdentity {
            vendor_id: 0x1234,
            device_id: 0x5678,
            revision: 2,
            class_code: 0x08_80_00,
            subsystem_vendor_id: 0x1234,
            subsystem_id: 1,
        })
    }

    #[test]
    fn header_identity_is_read_only() {
        let mut c = cfg();
        c.write(0, &[0xff; 4]);
        assert_eq!(c.read_u32(0), 0x5678_1234);
        assert_eq!(c.read_u32(0x08), 0x0880_0002);
        assert_eq!(c.read_u16(0x2e), 1);
    }

    #[test]
    fn command_masks_unsupported_bits_and_status_is_w1c() {
        let mut c = cfg();
        c.write(COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), COMMAND_WRITABLE);
        assert!(c.memory_enabled() && c.bus_master());
        c.set_u16(STATUS, 0x8010);
        c.write(STATUS, &0x0010u16.to_le_bytes());
        assert_eq!(c.read_u16(STATUS), 0x8010, "cap-list bit is read-only");
        c.write(STATUS, &0x8000u16.to_le_bytes());
        assert_eq!(c.read_u16(STATUS), 0x0010);
    }

    #[test]
    fn bar32_sizing_and_programming() {
        let mut c = cfg();
        c.add_bar(0, 0x4000, BarKind::Memory32, false).unwrap();
        c.write(BAR0, &[0xff; 4]);
        assert_eq!(c.read_u32(BAR0), 0xffff_c000);
        c.write(BAR0, &0xc000_4000u32.to_le_bytes());
        assert_eq!(c.bars()[0].address, 0xc000_4000);
        c.set_bar_address(0, 0xd000_0000);
        assert_eq!(c.read_u32(BAR0), 0xd000_0000);
        // An unimplemented BAR reads zero whatever is written.
        c.write(BAR0 + 4, &[0xff; 4]);
        assert_eq!(c.read_u32(BAR0 + 4), 0);
    }

    #[test]
    fn bar64_sizing_uses_both_registers() {
        let mut c = cfg();
        c.add_bar(2, 0x10_0000, BarKind::Memory64, true).unwrap();
        c.write(BAR0 + 8, &[0xff; 4]);
        c.write(BAR0 + 12, &[0xff; 4]);
        assert_eq!(c.read_u32(BAR0 + 8), 0xfff0_000c);
        assert_eq!(c.read_u32(BAR0 + 12), 0xffff_ffff);
        c.write(BAR0 + 12, &1u32.to_le_bytes());
        c.write(BAR0 + 8, &0x2000_0000u32.to_le_bytes());
        let b = c.bars()[0];
        assert_eq!(
            (b.index, b.address, b.kind, b.prefetchable),
            (2, 0x1_2000_0000, BarKind::Memory64, true)
        );
    }

    #[test]
    fn reject_bad_bar_definitions() {
        let mut c = cfg();
        assert_eq!(
            c.add_bar(0, 0x3000, BarKind::Memory32, false),
            Err(ConfigError::BadBarSize {
                index: 0,
                size: 0x3000
            })
        );
        assert_eq!(
            c.add_bar(5, 0x1000, BarKind::Memory64, false),
            Err(ConfigError::BarUnavailable { index: 5 })
        );
        c.add_bar(0, 0x1000, BarKind::Memory64, false).unwrap();
        assert_eq!(
            c.add_bar(1, 0x1000, BarKind::Memory32, false),
            Err(ConfigError::BarUnavailable { index: 1 })
        );
        assert_eq!(
            c.add_bar(6, 0x1000, BarKind::Memory32, false),
            Err(ConfigError::BarUnavailable { index: 6 })
        );
    }

    #[test]
    fn capability_lists_chain_and_are_found() {
        let mut c = cfg();
        let a = c.add_capability(0x10, &[0; 0x3c], &[], &[]).unwrap();
        let b = c.add_capability(0x11, &[0; 12], &[], &[]).unwrap();
        assert_eq!((a, b), (0x40, 0x80));
        assert_eq!(c.read_u16(STATUS) & STATUS_CAP_LIST, STATUS_CAP_LIST);
        assert_eq!(c.read_u16(0x34) & 0xff, 0x40);
        assert_eq!(c.read_u16(0x40), 0x8010);
        assert_eq!(c.read_u16(0x80), 0x0011);
        assert_eq!(c.find_capability(0x11), Some(0x80));
        assert_eq!(c.find_capability(0x05), None);
        let p = c.add_ext_capability(0x1b, 1, &[0; 8], &[], &[]).unwrap();
        let q = c.add_ext_capability(0x0f, 1, &[0; 8], &[], &[]).unwrap();
        assert_eq!((p, q), (0x100, 0x110));
        assert_eq!(c.read_u32(0x100), 0x1101_001b);
        assert_eq!(c.read_u32(0x110), 0x0001_000f);
        assert_eq!(c.find_ext_capability(0x0f), Some(0x110));
        assert_eq!(c.find_ext_capability(0x13), None);
        // Headers are read-only.
        c.write(0x100, &[0; 4]);
        assert_eq!(c.read_u32(0x100), 0x1101_001b);
    }

    #[test]
    fn reject_capability_overflow() {
        let mut c = cfg();
        assert!(c.add_capability(0x09, &[0; 0xc0], &[], &[]).is_ok());
        assert!(matches!(
            c.add_capability(0x09, &[0; 4], &[], &[]),
            Err(ConfigError::NoSpace { .. })
        ));
        assert!(matches!(
            c.add_capability(0x09, &[0], &[], &[]),
            Err(ConfigError::TooShort { .. })
        ));
        assert!(matches!(
            c.add_ext_capability(0x0b, 1, &[0; 0xf01], &[], &[]),
            Err(ConfigError::NoSpace { .. })
        ));
    }

    #[test]
    fn reject_out_of_range_accesses() {
        let mut c = cfg();
        let mut d = [0u8; 4];
        c.read(0xffe, &mut d);
        assert_eq!(d, [0, 0, 0xff, 0xff]);
        c.write(0xfff, &[1, 2, 3, 4]);
        c.read(u16::MAX, &mut d);
        assert_eq!(d, [0xff; 4]);
    }
}
