//! The SVA test device's 64-byte ring descriptor and the completion record
//! written back into it (layout in `docs/DEVICES.md`).
//!
//! Parsing checks every reserved field, so a malformed descriptor has its
//! own status and is never mistaken for a valid operation.

use crate::dma::DmaFault;

/// Bytes per descriptor slot.
pub const DESCRIPTOR_SIZE: u64 = 64;
/// Offset of the completion record inside a slot.
pub const COMPLETION_OFFSET: u64 = 0x30;
/// Largest `len` of one operation (64 MiB): bounds the work of one
/// descriptor.
pub const MAX_TRANSFER: u64 = 64 << 20;
/// Number of PASID bits the device supports.
pub const PASID_BITS: u32 = 20;

/// Opcode: no operation.
pub const OP_NOP: u8 = 0;
/// Opcode: copy `len` bytes from `addr_a` to `addr_b`.
pub const OP_COPY: u8 = 1;
/// Opcode: fill `len` bytes at `addr_b` with `pattern`.
pub const OP_FILL: u8 = 2;
/// Opcode: compare `len` bytes at `addr_a` and `addr_b`.
pub const OP_COMPARE: u8 = 3;
/// Opcode: translate `addr_a` and touch one byte.
pub const OP_PROBE: u8 = 4;
/// Opcode: ATS translation request for `addr_a`.
pub const OP_ATS_TRANSLATE: u8 = 5;

/// Flag: requests carry the descriptor's PASID.
pub const FLAG_PASID: u8 = 1 << 0;
/// Flag: supervisor request.
pub const FLAG_PRIV: u8 = 1 << 1;
/// Flag: MSI-X vector 0 on completion.
pub const FLAG_IRQ: u8 = 1 << 2;
/// Flag: PROBE / ATS_TRANSLATE ask for write access.
pub const FLAG_WRITE: u8 = 1 << 3;
const FLAGS_DEFINED: u8 = FLAG_PASID | FLAG_PRIV | FLAG_IRQ | FLAG_WRITE;

/// Completion flag: a page request was sent for this operation.
pub const CFLAG_PAGE_REQUESTED: u16 = 1 << 0;
/// Completion flag: the operation succeeded after a page response.
pub const CFLAG_RETRIED: u16 = 1 << 1;
/// Completion flag: COMPARE found a difference.
pub const CFLAG_MISMATCH: u16 = 1 << 2;
/// Completion flag: ATS_TRANSLATE was answered from the ATC.
pub const CFLAG_ATC_HIT: u16 = 1 << 3;

/// Status: success.
pub const STATUS_SUCCESS: u8 = 1;

/// Why an operation did not succeed. The completion status the guest sees
/// is derived from the variant ([`OpError::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A translation faulted.
    #[error(transparent)]
    TranslationFault(#[from] DmaFault),
    /// Unknown opcode.
    #[error("unknown opcode {0:#x}")]
    BadOpcode(u8),
    /// Reserved bits set, PASID too wide, or PRIV without PASID.
    #[error("malformed descriptor: {0}")]
    BadDescriptor(&'static str),
    /// Length zero, above the limit, or a range that wraps.
    #[error("bad length {len:#x} at {addr:#x}")]
    BadLength {
        /// The length asked for.
        len: u64,
        /// The address it starts at.
        addr: u64,
    },
    /// PASID (or privileged mode) used while not enabled in the capability.
    #[error("PASID or privileged mode not enabled")]
    PasidDisabled,
    /// The page group response said Response Failure.
    #[error("page response failure for {addr:#x}")]
    PageResponseFailure {
        /// The page the request was for.
        addr: u64,
    },
    /// ATS_TRANSLATE while ATS is disabled.
    #[error("ATS not enabled")]
    AtsDisabled,
    /// The translated address is not guest RAM.
    #[error("translated address {gpa:#x} is not guest memory")]
    NotMemory {
        /// The guest-physical address.
        gpa: u64,
    },
}

impl OpError {
    /// The completion status code for this error.
    pub fn status(&self) -> u8 {
        match self {
            Self::TranslationFault(_) => 2,
            Self::BadOpcode(_) => 3,
            Self::BadDescriptor(_) => 4,
            Self::BadLength { .. } => 5,
            Self::PasidDisabled => 6,
            Self::PageResponseFailure { .. } => 7,
            Self::AtsDisabled => 8,
            Self::NotMemory { .. } => 9,
        }
    }

    /// The fault reason byte of the completion (0 unless a fault).
    pub fn fault_reason(&self) -> u8 {
        match self {
            Self::TranslationFault(f) => f.reason,
            _ => 0,
        }
    }

    /// The result field of a failed completion: the faulting address, or 0.
    pub fn result(&self) -> u64 {
        match self {
            Self::TranslationFault(f) => f.addr,
            Self::PageResponseFailure { addr } => *addr,
            Self::NotMemory { gpa } => *gpa,
            _ => 0,
        }
    }
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Nothing.
    Nop,
    /// Copy `len` bytes.
    Copy {
        /// Source.
        src: u64,
        /// Destination.
        dst: u64,
        /// Length.
        len: u64,
    },
    /// Fill with a repeated 8-byte pattern.
    Fill {
        /// Destination.
        dst: u64,
        /// Pattern.
        pattern: u64,
        /// Length.
        len: u64,
    },
    /// Compare two buffers.
    Compare {
        /// First buffer.
        a: u64,
        /// Second buffer.
        b: u64,
        /// Length.
        len: u64,
    },
    /// Translate and touch one byte (write `value` if `Some`).
    Probe {
        /// Address.
        addr: u64,
        /// Byte to write, for a write probe.
        value: Option<u8>,
    },
    /// ATS translation request.
    AtsTranslate {
        /// Address.
        addr: u64,
        /// Ask for write permission.
        write: bool,
    },
}

/// A parsed descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The operation.
    pub kind: OpKind,
    /// PASID tag, if any.
    pub pasid: Option<u32>,
    /// Supervisor request.
    pub privileged: bool,
    /// Raise vector 0 on completion.
    pub irq: bool,
}

fn u64_at(raw: &[u8; 64], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[off..off + 8]);
    u64::from_le_bytes(b)
}

fn check_range(addr: u64, len: u64) -> Result<(), OpError> {
    if len == 0 || len > MAX_TRANSFER || addr.checked_add(len - 1).is_none() {
        return Err(OpError::BadLength { len, addr });
    }
    Ok(())
}

/// Whether the IRQ flag is set, readable even when the rest is malformed
/// (so a bad descriptor still interrupts if asked to).
pub fn wants_irq(raw: &[u8; 64]) -> bool {
    raw[1] & FLAG_IRQ != 0
}

/// Parses a descriptor slot.
pub fn parse(raw: &[u8; 64]) -> Result<Op, OpError> {
    let opcode = raw[0];
    let flags = raw[1];
    if flags & !FLAGS_DEFINED != 0 {
        return Err(OpError::BadDescriptor("undefined flag bits"));
    }
    if raw[2] != 0 || raw[3] != 0 || u64_at(raw, 0x28) != 0 {
        return Err(OpError::BadDescriptor("reserved field not zero"));
    }
    let mut p = [0u8; 4];
    p.copy_from_slice(&raw[4..8]);
    let pasid_raw = u32::from_le_bytes(p);
    let pasid = if flags & FLAG_PASID != 0 {
        if pasid_raw >> PASID_BITS != 0 {
            return Err(OpError::BadDescriptor("PASID wider than 20 bits"));
        }
        Some(pasid_raw)
    } else {
        if pasid_raw != 0 {
            return Err(OpError::BadDescriptor(
                "PASID field set without the PASID flag",
            ));
        }
        None
    };
    let privileged = flags & FLAG_PRIV != 0;
    if privileged && pasid.is_none() {
        return Err(OpError::BadDescriptor("PRIV without PASID"));
    }
    let (a, b, len, pattern) = (
        u64_at(raw, 0x08),
        u64_at(raw, 0x10),
        u64_at(raw, 0x18),
        u64_at(raw, 0x20),
    );
    let write = flags & FLAG_WRITE != 0;
    let kind = match opcode {
        OP_NOP => OpKind::Nop,
        OP_COPY => {
            check_range(a, len)?;
            check_range(b, len)?;
            OpKind::Copy {
                src: a,
                dst: b,
                len,
            }
        }
        OP_FILL => {
            check_range(b, len)?;
            OpKind::Fill {
                dst: b,
                pattern,
                len,
            }
        }
        OP_COMPARE => {
            check_range(a, len)?;
            check_range(b, len)?;
            OpKind::Compare { a, b, len }
        }
        OP_PROBE => OpKind::Probe {
            addr: a,
            value: write.then_some(pattern.to_le_bytes()[0]),
        },
        OP_ATS_TRANSLATE => OpKind::AtsTranslate { addr: a, write },
        other => return Err(OpError::BadOpcode(other)),
    };
    if write && !matches!(kind, OpKind::Probe { .. } | OpKind::AtsTranslate { .. }) {
        return Err(OpError::BadDescriptor(
            "WRITE flag on an operation without a single access",
        ));
    }
    Ok(Op {
        kind,
        pasid,
        privileged,
        irq: flags & FLAG_IRQ != 0,
    })
}

/// The 16-byte completion record (bytes 0x30..0x40 of the slot).
pub fn completion(status: u8, fault_reason: u8, flags: u16, result: u64) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = status;
    c[1] = fault_reason;
    c[2..4].copy_from_slice(&flags.to_le_bytes());
    c[8..16].copy_from_slice(&result.to_le_bytes());
    c
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a descriptor slot.
    pub(crate) fn raw(
        opcode: u8,
        flags: u8,
        pasid: u32,
        a: u64,
        b: u64,
        len: u64,
        pattern: u64,
    ) -> [u8; 64] {
        let mut r = [0u8; 64];
        r[0] = opcode;
        r[1] = flags;
        r[4..8].copy_from_slice(&pasid.to_le_bytes());
        r[8..16].copy_from_slice(&a.to_le_bytes());
        r[16..24].copy_from_slice(&b.to_le_bytes());
        r[24..32].copy_from_slice(&len.to_le_bytes());
        r[32..40].copy_from_slice(&pattern.to_le_bytes());
        r
    }

    #[test]
    fn parses_each_opcode() {
        let op = parse(&raw(
            OP_COPY,
            FLAG_PASID | FLAG_IRQ,
            7,
            0x1000,
            0x2000,
            16,
            0,
        ))
        .unwrap();
        assert_eq!(
            op.kind,
            OpKind::Copy {
                src: 0x1000,
                dst: 0x2000,
                len: 16
            }
        );
        assert_eq!((op.pasid, op.privileged, op.irq), (Some(7), false, true));
        let op = parse(&raw(OP_FILL, 0, 0, 0, 0x3000, 8, 0xaa)).unwrap();
        assert_eq!(
            op.kind,
            OpKind::Fill {
                dst: 0x3000,
                pattern: 0xaa,
                len: 8
            }
        );
        let op = parse(&raw(
            OP_PROBE,
            FLAG_PASID | FLAG_PRIV | FLAG_WRITE,
            1,
            0x5000,
            0,
            0,
            0x1234,
        ))
        .unwrap();
        assert_eq!(
            op.kind,
            OpKind::Probe {
                addr: 0x5000,
                value: Some(0x34)
            }
        );
        assert!(op.privileged);
        let op = parse(&raw(OP_ATS_TRANSLATE, 0, 0, 0x6000, 0, 0, 0)).unwrap();
        assert_eq!(
            op.kind,
            OpKind::AtsTranslate {
                addr: 0x6000,
                write: false
            }
        );
        assert_eq!(
            parse(&raw(OP_NOP, 0, 0, 0, 0, 0, 0)).unwrap().kind,
            OpKind::Nop
        );
    }

    #[test]
    fn reject_malformed_descriptors() {
        let bad = |r: [u8; 64]| parse(&r).unwrap_err().status();
        assert_eq!(bad(raw(9, 0, 0, 0, 0, 0, 0)), 3);
        assert_eq!(bad(raw(OP_NOP, 0x80, 0, 0, 0, 0, 0)), 4);
        assert_eq!(bad(raw(OP_NOP, FLAG_PASID, 1 << 20, 0, 0, 0, 0)), 4);
        assert_eq!(bad(raw(OP_NOP, 0, 5, 0, 0, 0, 0)), 4);
        assert_eq!(bad(raw(OP_NOP, FLAG_PRIV, 0, 0, 0, 0, 0)), 4);
        assert_eq!(bad(raw(OP_FILL, FLAG_WRITE, 0, 0, 0x1000, 1, 0)), 4);
        let mut r = raw(OP_NOP, 0, 0, 0, 0, 0, 0);
        r[0x2a] = 1;
        assert_eq!(bad(r), 4);
        r = raw(OP_NOP, 0, 0, 0, 0, 0, 0);
        r[2] = 1;
        assert_eq!(bad(r), 4);
    }

    #[test]
    fn reject_bad_lengths() {
        let bad = |r: [u8; 64]| parse(&r).unwrap_err();
        assert_eq!(bad(raw(OP_COPY, 0, 0, 0, 0x1000, 0, 0)).status(), 5);
        assert_eq!(
            bad(raw(OP_FILL, 0, 0, 0, 0, MAX_TRANSFER + 1, 0)).status(),
            5
        );
        assert_eq!(bad(raw(OP_COPY, 0, 0, u64::MAX - 2, 0, 4, 0)).status(), 5);
        assert_eq!(bad(raw(OP_COMPARE, 0, 0, 0, u64::MAX, 2, 0)).status(), 5);
        assert!(parse(&raw(OP_COPY, 0, 0, u64::MAX - 3, 0, 4, 0)).is_ok());
    }

    #[test]
    fn completion_layout() {
        let c = completion(2, 0x05, CFLAG_PAGE_REQUESTED, 0xdead_b000);
        assert_eq!(c[0], 2);
        assert_eq!(c[1], 5);
        assert_eq!(u16::from_le_bytes([c[2], c[3]]), 1);
        assert_eq!(&c[4..8], &[0; 4]);
        assert_eq!(
            u64::from_le_bytes(c[8..16].try_into().unwrap()),
            0xdead_b000
        );
    }
}
