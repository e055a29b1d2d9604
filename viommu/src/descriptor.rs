//! The invalidation descriptor format: the nine VT-d descriptor types with
//! every granularity as a typed [`Descriptor`], decoded from and encoded to
//! their 128/256-bit queue form. Pure data: the queue that fetches and applies
//! them is `qi`, the register-based forms (CCMD, IOTLB registers) are decoded
//! by the register front end.

use serde::Serialize;

/// Descriptor type codes (qword 0 bits 3:0, with bits 11:9 as the high part).
pub mod kind {
    /// Context-cache invalidation.
    pub const CONTEXT: u8 = 1;
    /// IOTLB invalidation.
    pub const IOTLB: u8 = 2;
    /// Device-TLB invalidation.
    pub const DEVTLB: u8 = 3;
    /// Interrupt-entry-cache invalidation.
    pub const IEC: u8 = 4;
    /// Invalidation wait.
    pub const WAIT: u8 = 5;
    /// PASID-based IOTLB invalidation.
    pub const PIOTLB: u8 = 6;
    /// PASID-cache invalidation.
    pub const PASID_CACHE: u8 = 7;
    /// PASID-based device-TLB invalidation.
    pub const PDEVTLB: u8 = 8;
    /// Page group response.
    pub const PAGE_RESPONSE: u8 = 9;
}

/// Context-cache invalidation granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "granularity", rename_all = "snake_case")]
pub enum ContextGranularity {
    /// Everything.
    Global,
    /// One domain.
    Domain {
        /// Domain id.
        did: u16,
    },
    /// One device (source id with function mask).
    Device {
        /// Domain id.
        did: u16,
        /// Source id.
        sid: u16,
        /// Function mask.
        fm: u8,
    },
}

/// IOTLB invalidation granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "granularity", rename_all = "snake_case")]
pub enum IotlbGranularity {
    /// Everything.
    Global,
    /// One domain.
    Domain {
        /// Domain id.
        did: u16,
    },
    /// Pages within a domain.
    Page {
        /// Domain id.
        did: u16,
        /// Address.
        addr: u64,
        /// Address mask (log2 pages).
        am: u8,
        /// Invalidation hint: only leaves changed.
        ih: bool,
    },
}

/// PASID-based IOTLB invalidation granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "granularity", rename_all = "snake_case")]
pub enum PiotlbGranularity {
    /// Every address of the PASID.
    Pasid,
    /// Pages within the PASID.
    Page {
        /// Address.
        addr: u64,
        /// Address mask (log2 pages, up to 63 accepted; >= 52 means everything).
        am: u8,
        /// Invalidation hint: only leaves changed.
        ih: bool,
    },
}

/// PASID-cache invalidation granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "granularity", rename_all = "snake_case")]
pub enum PasidCacheGranularity {
    /// All PASIDs of the domain.
    Domain,
    /// One PASID of the domain.
    Pasid {
        /// PASID.
        pasid: u32,
    },
    /// Everything.
    Global,
}

/// A device-TLB (ATS) invalidation for a device's address translation cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DevTlbInvalidation {
    /// Source id of the device.
    pub sid: u16,
    /// PASID (PASID-based form), `None` for the untagged form.
    pub pasid: Option<u32>,
    /// First address.
    pub addr: u64,
    /// Size in bytes (`u64::MAX` for everything).
    pub size: u64,
    /// PASID-based form's G bit (global mappings too).
    pub global: bool,
}

impl DevTlbInvalidation {
    /// True if `addr` is covered.
    pub fn covers(&self, addr: u64) -> bool {
        self.size == u64::MAX || (addr >= self.addr && addr - self.addr < self.size)
    }
}

/// A decoded descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Descriptor {
    /// Type 1.
    ContextCache {
        /// Granularity.
        #[serde(flatten)]
        granularity: ContextGranularity,
    },
    /// Type 2.
    Iotlb {
        /// Granularity.
        #[serde(flatten)]
        granularity: IotlbGranularity,
        /// Drain reads.
        dr: bool,
        /// Drain writes.
        dw: bool,
    },
    /// Type 3.
    DevTlb {
        /// What to invalidate.
        inv: DevTlbInvalidation,
        /// Invalidate queue depth.
        qdep: u8,
    },
    /// Type 4.
    Iec {
        /// Global (else index-selective).
        global: bool,
        /// Interrupt index.
        index: u16,
        /// Index mask.
        im: u8,
    },
    /// Type 5.
    Wait {
        /// Status write.
        sw: bool,
        /// Interrupt.
        interrupt: bool,
        /// Fence.
        fence: bool,
        /// Page-request drain.
        pd: bool,
        /// Status data.
        status_data: u32,
        /// Status address.
        status_addr: u64,
    },
    /// Type 6.
    Piotlb {
        /// Domain id.
        did: u16,
        /// PASID.
        pasid: u32,
        /// Granularity.
        #[serde(flatten)]
        granularity: PiotlbGranularity,
    },
    /// Type 7.
    PasidCache {
        /// Domain id.
        did: u16,
        /// Granularity.
        #[serde(flatten)]
        granularity: PasidCacheGranularity,
    },
    /// Type 8.
    PasidDevTlb {
        /// What to invalidate.
        inv: DevTlbInvalidation,
    },
    /// Type 9.
    PageGroupResponse {
        /// Requester id.
        rid: u16,
        /// PASID if present.
        pasid: Option<u32>,
        /// Response code.
        code: u8,
        /// Page request group index.
        group_index: u16,
        /// Last page in group.
        lpig: bool,
    },
}

/// Errors that stop the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QiError {
    /// IQT beyond the queue or not aligned to the descriptor width.
    #[error("invalid queue tail {tail:#x} for queue of {size:#x} bytes")]
    Tail {
        /// IQT value.
        tail: u64,
        /// Queue size in bytes.
        size: u64,
    },
    /// The descriptor could not be fetched.
    #[error("descriptor at {gpa:#x} not readable")]
    Fetch {
        /// Descriptor address.
        gpa: u64,
    },
    /// Unknown descriptor type.
    #[error("descriptor {qw0:#x} has invalid type")]
    Type {
        /// Qword 0.
        qw0: u64,
    },
    /// Reserved granularity or field.
    #[error("descriptor {qw0:#x} has a reserved field set")]
    Reserved {
        /// Qword 0.
        qw0: u64,
    },
    /// The wait descriptor's status write failed.
    #[error("wait status address {gpa:#x} not writable")]
    StatusWrite {
        /// Status address.
        gpa: u64,
    },
}

impl QiError {
    /// IQER.IQEI for this error.
    pub fn iqei(&self) -> u64 {
        match self {
            QiError::Tail { .. } => 1,
            QiError::Fetch { .. } => 2,
            QiError::Type { .. } => 3,
            QiError::Reserved { .. } => 4,
            QiError::StatusWrite { .. } => 7,
        }
    }
}

fn bit(v: u64, b: u32) -> bool {
    v >> b & 1 != 0
}

/// Bits `lo..lo+width` of `v` as `T` (the width always fits `T`).
fn field<T: TryFrom<u64> + Default>(v: u64, lo: u32, width: u32) -> T {
    T::try_from((v >> lo) & ((1u64 << width) - 1)).unwrap_or_default()
}

/// Decodes the device-TLB size encoding: with S=1 the number of trailing ones
/// from bit 12 gives 2^(ones+1) pages; all ones means everything.
fn devtlb_range(addr: u64, s: bool) -> (u64, u64) {
    let a = addr & !0xfff;
    if !s {
        return (a, 4096);
    }
    let ones = (a >> 12).trailing_ones();
    if ones >= 51 {
        return (0, u64::MAX);
    }
    let size = 1u64 << (12 + ones + 1);
    (a & !(size - 1), size)
}

/// Decodes one descriptor (qwords 2 and 3 are zero for 128-bit descriptors).
#[inline]
pub fn decode(qw: [u64; 4]) -> Result<Descriptor, QiError> {
    let q0 = qw[0];
    let q1 = qw[1];
    if field::<u64>(q0, 9, 3) != 0 {
        return Err(QiError::Type { qw0: q0 });
    }
    let g: u64 = field(q0, 4, 2);
    let did = field::<u16>(q0, 16, 16);
    let reserved = Err(QiError::Reserved { qw0: q0 });
    let d = match field::<u8>(q0, 0, 4) {
        kind::CONTEXT => {
            let granularity = match g {
                1 => ContextGranularity::Global,
                2 => ContextGranularity::Domain { did },
                3 => ContextGranularity::Device {
                    did,
                    sid: field::<u16>(q0, 32, 16),
                    fm: field::<u8>(q0, 48, 2),
                },
                _ => return reserved,
            };
            Descriptor::ContextCache { granularity }
        }
        kind::IOTLB => {
            let granularity = match g {
                1 => IotlbGranularity::Global,
                2 => IotlbGranularity::Domain { did },
                3 => IotlbGranularity::Page {
                    did,
                    addr: q1 & !0xfff,
                    am: field::<u8>(q1, 0, 6),
                    ih: bit(q1, 6),
                },
                _ => return reserved,
            };
            Descriptor::Iotlb {
                granularity,
                dr: bit(q0, 7),
                dw: bit(q0, 6),
            }
        }
        kind::DEVTLB => {
            let (addr, size) = devtlb_range(q1, bit(q1, 0));
            Descriptor::DevTlb {
                inv: DevTlbInvalidation {
                    sid: field::<u16>(q0, 32, 16),
                    pasid: None,
                    addr,
                    size,
                    global: false,
                },
                qdep: field::<u8>(q0, 16, 5),
            }
        }
        kind::IEC => Descriptor::Iec {
            global: !bit(q0, 4),
            im: field::<u8>(q0, 27, 5),
            index: field::<u16>(q0, 32, 16),
        },
        kind::WAIT => Descriptor::Wait {
            interrupt: bit(q0, 4),
            sw: bit(q0, 5),
            fence: bit(q0, 6),
            pd: bit(q0, 7),
            status_data: field::<u32>(q0, 32, 32),
            status_addr: q1 & !3,
        },
        kind::PIOTLB => {
            let granularity = match g {
                2 => PiotlbGranularity::Pasid,
                3 => PiotlbGranularity::Page {
                    addr: q1 & !0xfff,
                    am: field::<u8>(q1, 0, 6),
                    ih: bit(q1, 6),
                },
                _ => return reserved,
            };
            Descriptor::Piotlb {
                did,
                pasid: field::<u32>(q0, 32, 20),
                granularity,
            }
        }
        kind::PASID_CACHE => {
            let granularity = match g {
                0 => PasidCacheGranularity::Domain,
                1 => PasidCacheGranularity::Pasid {
                    pasid: field::<u32>(q0, 32, 20),
                },
                3 => PasidCacheGranularity::Global,
                _ => return reserved,
            };
            Descriptor::PasidCache { did, granularity }
        }
        kind::PDEVTLB => {
            let (addr, size) = devtlb_range(q1, bit(q1, 11));
            Descriptor::PasidDevTlb {
                inv: DevTlbInvalidation {
                    sid: field::<u16>(q0, 16, 16),
                    pasid: Some(field::<u32>(q0, 32, 20)),
                    addr,
                    size,
                    global: bit(q1, 0),
                },
            }
        }
        kind::PAGE_RESPONSE => Descriptor::PageGroupResponse {
            rid: field::<u16>(q0, 16, 16),
            pasid: bit(q0, 4).then_some(field::<u32>(q0, 32, 20)),
            code: field::<u8>(q0, 12, 4),
            group_index: field::<u16>(q1, 3, 9),
            lpig: bit(q1, 2),
        },
        _ => return Err(QiError::Type { qw0: q0 }),
    };
    Ok(d)
}

/// Encodes a descriptor (the inverse of [`decode`]; for harnesses and tests).
pub fn encode(d: &Descriptor) -> [u64; 4] {
    let b = |v: bool, n: u32| u64::from(v) << n;
    match *d {
        Descriptor::ContextCache { granularity } => match granularity {
            ContextGranularity::Global => [1 | (1 << 4), 0, 0, 0],
            ContextGranularity::Domain { did } => [1 | (2 << 4) | (u64::from(did) << 16), 0, 0, 0],
            ContextGranularity::Device { did, sid, fm } => [
                1 | (3 << 4)
                    | (u64::from(did) << 16)
                    | (u64::from(sid) << 32)
                    | (u64::from(fm & 3) << 48),
                0,
                0,
                0,
            ],
        },
        Descriptor::Iotlb {
            granularity,
            dr,
            dw,
        } => {
            let base = 2 | b(dw, 6) | b(dr, 7);
            match granularity {
                IotlbGranularity::Global => [base | (1 << 4), 0, 0, 0],
                IotlbGranularity::Domain { did } => {
                    [base | (2 << 4) | (u64::from(did) << 16), 0, 0, 0]
                }
                IotlbGranularity::Page { did, addr, am, ih } => [
                    base | (3 << 4) | (u64::from(did) << 16),
                    (addr & !0xfff) | b(ih, 6) | u64::from(am & 0x3f),
                    0,
                    0,
                ],
            }
        }
        Descriptor::DevTlb { inv, qdep } => {
            let (a, s) = devtlb_encode(&inv);
            [
                3 | (u64::from(qdep & 0x1f) << 16) | (u64::from(inv.sid) << 32),
                a | u64::from(s),
                0,
                0,
            ]
        }
        Descriptor::Iec { global, index, im } => [
            4 | b(!global, 4) | (u64::from(im & 0x1f) << 27) | (u64::from(index) << 32),
            0,
            0,
            0,
        ],
        Descriptor::Wait {
            sw,
            interrupt,
            fence,
            pd,
            status_data,
            status_addr,
        } => [
            5 | b(interrupt, 4)
                | b(sw, 5)
                | b(fence, 6)
                | b(pd, 7)
                | (u64::from(status_data) << 32),
            status_addr & !3,
            0,
            0,
        ],
        Descriptor::Piotlb {
            did,
            pasid,
            granularity,
        } => {
            let base = 6 | (u64::from(did) << 16) | (u64::from(pasid & 0xf_ffff) << 32);
            match granularity {
                PiotlbGranularity::Pasid => [base | (2 << 4), 0, 0, 0],
                PiotlbGranularity::Page { addr, am, ih } => [
                    base | (3 << 4),
                    (addr & !0xfff) | b(ih, 6) | u64::from(am & 0x3f),
                    0,
                    0,
                ],
            }
        }
        Descriptor::PasidCache { did, granularity } => {
            let base = 7 | (u64::from(did) << 16);
            match granularity {
                PasidCacheGranularity::Domain => [base, 0, 0, 0],
                PasidCacheGranularity::Pasid { pasid } => [
                    base | (1 << 4) | (u64::from(pasid & 0xf_ffff) << 32),
                    0,
                    0,
                    0,
                ],
                PasidCacheGranularity::Global => [base | (3 << 4), 0, 0, 0],
            }
        }
        Descriptor::PasidDevTlb { inv } => {
            let (a, s) = devtlb_encode(&inv);
            [
                8 | (u64::from(inv.sid) << 16)
                    | (u64::from(inv.pasid.unwrap_or(0) & 0xf_ffff) << 32),
                a | (u64::from(s) << 11) | u64::from(inv.global),
                0,
                0,
            ]
        }
        Descriptor::PageGroupResponse {
            rid,
            pasid,
            code,
            group_index,
            lpig,
        } => [
            9 | b(pasid.is_some(), 4)
                | (u64::from(code & 0xf) << 12)
                | (u64::from(rid) << 16)
                | (u64::from(pasid.unwrap_or(0) & 0xf_ffff) << 32),
            b(lpig, 2) | (u64::from(group_index & 0x1ff) << 3),
            0,
            0,
        ],
    }
}

fn devtlb_encode(inv: &DevTlbInvalidation) -> (u64, bool) {
    if inv.size == u64::MAX {
        return (0x7fff_ffff_ffff_f000, true);
    }
    if inv.size <= 4096 {
        return (inv.addr & !0xfff, false);
    }
    let size = inv.size.next_power_of_two();
    ((inv.addr & !(size - 1)) | ((size >> 1) - 1) & !0xfff, true)
}

/// The context-cache invalidation a CCMD register write (with ICC=1) asks
/// for: CIRG 63:62 (1 global, 2 domain, 3 device), DID 15:0, SID 31:16,
/// FM 33:32; `None` for the reserved CIRG 0.
pub fn from_ccmd(v: u64) -> Option<Descriptor> {
    let did = field::<u16>(v, 0, 16);
    let granularity = match field::<u8>(v, 61, 2) {
        1 => ContextGranularity::Global,
        2 => ContextGranularity::Domain { did },
        3 => ContextGranularity::Device {
            did,
            sid: field::<u16>(v, 16, 16),
            fm: field::<u8>(v, 32, 2),
        },
        _ => return None,
    };
    Some(Descriptor::ContextCache { granularity })
}

/// The IOTLB invalidation an IOTLB register write (with IVT=1) asks for,
/// with the IVA register's address, AM and IH for page-selective ones: IIRG
/// 61:60 (1 global, 2 domain, 3 page), DR 49, DW 48, DID 47:32; `None` for
/// the reserved IIRG 0.
pub fn from_iotlb_register(v: u64, iva: u64) -> Option<Descriptor> {
    let did = field::<u16>(v, 32, 16);
    let granularity = match field::<u8>(v, 60, 2) {
        1 => IotlbGranularity::Global,
        2 => IotlbGranularity::Domain { did },
        3 => IotlbGranularity::Page {
            did,
            addr: iva & !0xfff,
            am: field::<u8>(iva, 0, 6),
            ih: bit(iva, 6),
        },
        _ => return None,
    };
    Some(Descriptor::Iotlb {
        granularity,
        dr: bit(v, 49),
        dw: bit(v, 48),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Descriptor> {
        let inv = DevTlbInvalidation {
            sid: 0x20,
            pasid: None,
            addr: 0x4000,
            size: 0x4000,
            global: false,
        };
        vec![
            Descriptor::ContextCache {
                granularity: ContextGranularity::Global,
            },
            Descriptor::ContextCache {
                granularity: ContextGranularity::Domain { did: 3 },
            },
            Descriptor::ContextCache {
                granularity: ContextGranularity::Device {
                    did: 3,
                    sid: 0x21,
                    fm: 2,
                },
            },
            Descriptor::Iotlb {
                granularity: IotlbGranularity::Global,
                dr: true,
                dw: true,
            },
            Descriptor::Iotlb {
                granularity: IotlbGranularity::Domain { did: 9 },
                dr: false,
                dw: false,
            },
            Descriptor::Iotlb {
                granularity: IotlbGranularity::Page {
                    did: 9,
                    addr: 0x12_3000,
                    am: 3,
                    ih: true,
                },
                dr: false,
                dw: true,
            },
            Descriptor::DevTlb { inv, qdep: 4 },
            Descriptor::DevTlb {
                inv: DevTlbInvalidation { size: 4096, ..inv },
                qdep: 0,
            },
            Descriptor::Iec {
                global: true,
                index: 0,
                im: 0,
            },
            Descriptor::Iec {
                global: false,
                index: 17,
                im: 2,
            },
            Descriptor::Wait {
                sw: true,
                interrupt: true,
                fence: true,
                pd: true,
                status_data: 7,
                status_addr: 0x1000,
            },
            Descriptor::Piotlb {
                did: 1,
                pasid: 5,
                granularity: PiotlbGranularity::Pasid,
            },
            Descriptor::Piotlb {
                did: 1,
                pasid: 5,
                granularity: PiotlbGranularity::Page {
                    addr: 0xffff_8000_0000_0000,
                    am: 52,
                    ih: false,
                },
            },
            Descriptor::PasidCache {
                did: 1,
                granularity: PasidCacheGranularity::Domain,
            },
            Descriptor::PasidCache {
                did: 1,
                granularity: PasidCacheGranularity::Pasid { pasid: 5 },
            },
            Descriptor::PasidCache {
                did: 1,
                granularity: PasidCacheGranularity::Global,
            },
            Descriptor::PasidDevTlb {
                inv: DevTlbInvalidation {
                    sid: 0x20,
                    pasid: Some(5),
                    addr: 0,
                    size: u64::MAX,
                    global: true,
                },
            },
            Descriptor::PageGroupResponse {
                rid: 0x20,
                pasid: Some(5),
                code: 0,
                group_index: 300,
                lpig: true,
            },
            Descriptor::PageGroupResponse {
                rid: 0x20,
                pasid: None,
                code: 0xf,
                group_index: 1,
                lpig: false,
            },
        ]
    }

    #[test]
    fn every_descriptor_round_trips() {
        for d in all_kinds() {
            assert_eq!(decode(encode(&d)), Ok(d), "{d:?}");
        }
    }

    #[test]
    fn register_based_forms() {
        assert_eq!(from_ccmd(1 << 63), None);
        assert_eq!(
            from_ccmd((1 << 63) | (3 << 61) | (2 << 32) | (0x21 << 16) | 5),
            Some(Descriptor::ContextCache {
                granularity: ContextGranularity::Device {
                    did: 5,
                    sid: 0x21,
                    fm: 2
                }
            })
        );
        assert_eq!(from_iotlb_register(1 << 63, 0), None);
        assert_eq!(
            from_iotlb_register(
                (1 << 63) | (3 << 60) | (1 << 49) | (7 << 32),
                0x5000 | 0x40 | 3
            ),
            Some(Descriptor::Iotlb {
                granularity: IotlbGranularity::Page {
                    did: 7,
                    addr: 0x5000,
                    am: 3,
                    ih: true
                },
                dr: true,
                dw: false
            })
        );
    }

    #[test]
    fn devtlb_size_encoding() {
        assert_eq!(devtlb_range(0x5000, false), (0x5000, 4096));
        assert_eq!(devtlb_range(0x4000, true), (0x4000, 0x2000));
        assert_eq!(devtlb_range(0x5000, true), (0x4000, 0x4000));
        assert_eq!(devtlb_range(0x7000, true), (0, 0x10000));
        assert_eq!(devtlb_range(0x7fff_ffff_ffff_f000, true), (0, u64::MAX));
    }

    #[test]
    fn reject_invalid_types_and_granularities() {
        for qw0 in [0u64, 10, 15, 1 | (1 << 9), 6 | (1 << 11)] {
            assert_eq!(decode([qw0, 0, 0, 0]), Err(QiError::Type { qw0 }));
        }
        for qw0 in [1u64, 2, 6, 6 | (1 << 4), 7 | (2 << 4)] {
            assert_eq!(decode([qw0, 0, 0, 0]), Err(QiError::Reserved { qw0 }));
        }
    }

    #[test]
    fn decode_linux_style_fields() {
        // Page-selective PASID-based IOTLB: DID 1, PASID 0x10, addr, AM 2, IH 0.
        let d = decode([
            6 | (3 << 4) | (1 << 16) | (0x10 << 32),
            0x7f00_1000 | 2,
            0,
            0,
        ])
        .unwrap();
        assert_eq!(
            d,
            Descriptor::Piotlb {
                did: 1,
                pasid: 0x10,
                granularity: PiotlbGranularity::Page {
                    addr: 0x7f00_1000,
                    am: 2,
                    ih: false
                }
            }
        );
        let w = decode([5 | (1 << 5) | (0xdead_beef << 32), 0x2004, 0, 0]).unwrap();
        assert!(matches!(
            w,
            Descriptor::Wait {
                sw: true,
                status_data: 0xdead_beef,
                status_addr: 0x2004,
                ..
            }
        ));
    }
}
