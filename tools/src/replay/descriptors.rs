//! Invalidation-queue descriptors as the harness writes them into guest
//! memory: the 256-bit encodings of the VT-d queued-invalidation descriptor
//! types a scenario can submit (context-cache, IOTLB, device-TLB, wait,
//! PASID-based IOTLB, PASID-cache, PASID-based device-TLB).
//!
//! Field positions follow the VT-d specification (rev 4.x, chapter 6.5.2) as
//! summarised in `shared/VTD-FACTS.md`. Only encoding lives here; the model
//! decodes them on its own. The two upper quadwords of a 256-bit descriptor
//! are zero for every type used here.

use super::parser::{DevtlbSize, Invalidation};

/// One 256-bit descriptor, four little-endian quadwords.
pub type Descriptor = [u64; 4];

/// Descriptor type: context-cache invalidation.
pub const TYPE_CONTEXT: u64 = 1;
/// Descriptor type: IOTLB invalidation.
pub const TYPE_IOTLB: u64 = 2;
/// Descriptor type: device-TLB invalidation.
pub const TYPE_DEVTLB: u64 = 3;
/// Descriptor type: invalidation wait.
pub const TYPE_WAIT: u64 = 5;
/// Descriptor type: PASID-based IOTLB invalidation.
pub const TYPE_PIOTLB: u64 = 6;
/// Descriptor type: PASID-cache invalidation.
pub const TYPE_PASID_CACHE: u64 = 7;
/// Descriptor type: PASID-based device-TLB invalidation.
pub const TYPE_PDEVTLB: u64 = 8;

/// Granularity field (bits 5:4) value `g`.
const fn granularity(g: u64) -> u64 {
    g << 4
}

/// Wait descriptor: status write.
const WAIT_SW: u64 = 1 << 5;
/// Wait descriptor: fence.
const WAIT_FN: u64 = 1 << 6;
/// Device-TLB descriptor (type 3) size bit in qw1.
const DEVTLB_S: u64 = 1;
/// PASID-based device-TLB descriptor (type 8) size bit in qw1.
const PDEVTLB_S: u64 = 1 << 11;
/// The device-TLB address encoding meaning "every address" (with S=1).
pub const DEVTLB_ALL_ADDR: u64 = 0x7fff_ffff_ffff_f000;
/// Page offset bits.
const PAGE_MASK: u64 = !0xfff;

/// The physical-function source id split the way descriptors carry it
/// (bits 15:12 and 63:52 of qw0); for a function that is no VF it is the
/// requester's own id.
fn pfsid(sid: u16) -> u64 {
    let sid = u64::from(sid);
    ((sid & 0xf) << 12) | ((sid & 0xfff0) << 48)
}

/// The device-TLB address with the ATS size encoding: for 2^order pages
/// (order >= 1) bits 12..12+order-2 are set and bit 12+order-1 is clear,
/// with the S bit given by the caller.
fn devtlb_address(addr: u64, size: DevtlbSize, s_bit: u64) -> u64 {
    match size {
        DevtlbSize::All => DEVTLB_ALL_ADDR | s_bit,
        DevtlbSize::Pages { order: 0 } => addr & PAGE_MASK,
        DevtlbSize::Pages { order } => {
            // order <= 51 (the parser bounds sizes to 2^63 bytes).
            let shift = 11u32.saturating_add(u32::from(order)).min(63);
            let ones = (1u64 << shift).wrapping_sub(1);
            ((addr | ones) & PAGE_MASK) | s_bit
        }
    }
}

/// Encodes one `inv` line.
pub fn encode(inv: &Invalidation) -> Descriptor {
    match *inv {
        Invalidation::ContextGlobal => [TYPE_CONTEXT | granularity(1), 0, 0, 0],
        Invalidation::IotlbGlobal => [TYPE_IOTLB | granularity(1), 0, 0, 0],
        Invalidation::IotlbDomain { did } => [
            TYPE_IOTLB | granularity(2) | (u64::from(did) << 16),
            0,
            0,
            0,
        ],
        Invalidation::PiotlbPasid { pasid, did } => [
            TYPE_PIOTLB | granularity(2) | (u64::from(did) << 16) | (u64::from(pasid) << 32),
            0,
            0,
            0,
        ],
        Invalidation::PiotlbPage {
            pasid,
            did,
            addr,
            am,
            ih,
        } => [
            TYPE_PIOTLB | granularity(3) | (u64::from(did) << 16) | (u64::from(pasid) << 32),
            (addr & PAGE_MASK) | (u64::from(ih) << 6) | (u64::from(am) & 0x3f),
            0,
            0,
        ],
        Invalidation::IotlbPage { did, addr, am, ih } => [
            TYPE_IOTLB | granularity(3) | (u64::from(did) << 16),
            (addr & PAGE_MASK) | (u64::from(ih) << 6) | (u64::from(am) & 0x3f),
            0,
            0,
        ],
        Invalidation::PasidCacheDomain { did } => [
            TYPE_PASID_CACHE | granularity(0) | (u64::from(did) << 16),
            0,
            0,
            0,
        ],
        Invalidation::PasidCacheGlobal => [TYPE_PASID_CACHE | granularity(3), 0, 0, 0],
        Invalidation::PasidCache { pasid, did } => [
            TYPE_PASID_CACHE | granularity(1) | (u64::from(did) << 16) | (u64::from(pasid) << 32),
            0,
            0,
            0,
        ],
        Invalidation::Devtlb {
            rid,
            pasid: None,
            addr,
            size,
        } => [
            TYPE_DEVTLB | (u64::from(rid.source_id()) << 32) | pfsid(rid.source_id()),
            devtlb_address(addr, size, DEVTLB_S),
            0,
            0,
        ],
        Invalidation::Devtlb {
            rid,
            pasid: Some(pasid),
            addr,
            size,
        } => [
            TYPE_PDEVTLB
                | (u64::from(rid.source_id()) << 16)
                | (u64::from(pasid) << 32)
                | pfsid(rid.source_id()),
            devtlb_address(addr, size, PDEVTLB_S),
            0,
            0,
        ],
    }
}

/// An invalidation-wait descriptor that writes `data` to `status_gpa` (4-byte
/// aligned) when every earlier descriptor is done; fenced, no interrupt.
pub fn wait(status_gpa: u64, data: u32) -> Descriptor {
    [
        TYPE_WAIT | WAIT_SW | WAIT_FN | (u64::from(data) << 32),
        status_gpa & !0x3,
        0,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parser::{DEFAULT_RID, Rid};

    #[test]
    fn context_and_iotlb() {
        assert_eq!(encode(&Invalidation::ContextGlobal), [0x11, 0, 0, 0]);
        assert_eq!(encode(&Invalidation::IotlbGlobal), [0x12, 0, 0, 0]);
        assert_eq!(
            encode(&Invalidation::IotlbDomain { did: 0xabcd }),
            [0xabcd_0022, 0, 0, 0]
        );
    }

    /// The new forms decode, in the model's own decoder, to the descriptors
    /// they name.
    #[test]
    fn iotlb_page_and_pasid_cache_granularities_decode() {
        use viommu::descriptor::{self as qi, IotlbGranularity, PasidCacheGranularity};
        let d = qi::decode(encode(&Invalidation::IotlbPage {
            did: 3,
            addr: 0xffff_8880_0020_0000,
            am: 9,
            ih: true,
        }))
        .unwrap();
        assert_eq!(
            d,
            viommu::Descriptor::Iotlb {
                granularity: IotlbGranularity::Page {
                    did: 3,
                    addr: 0xffff_8880_0020_0000,
                    am: 9,
                    ih: true
                },
                dr: false,
                dw: false
            }
        );
        let d = qi::decode(encode(&Invalidation::PasidCacheDomain { did: 7 })).unwrap();
        assert_eq!(
            d,
            viommu::Descriptor::PasidCache {
                did: 7,
                granularity: PasidCacheGranularity::Domain
            }
        );
        let d = qi::decode(encode(&Invalidation::PasidCacheGlobal)).unwrap();
        assert!(matches!(
            d,
            viommu::Descriptor::PasidCache {
                granularity: PasidCacheGranularity::Global,
                ..
            }
        ));
    }

    #[test]
    fn piotlb() {
        let d = encode(&Invalidation::PiotlbPage {
            pasid: 0xfffff,
            did: 1,
            addr: 0xffff_8880_0020_0000,
            am: 9,
            ih: true,
        });
        assert_eq!(d[0], 0x000f_ffff_0001_0036);
        assert_eq!(d[1], 0xffff_8880_0020_0049);
        assert_eq!(&d[2..], &[0, 0]);
        let d = encode(&Invalidation::PiotlbPage {
            pasid: 1,
            did: 2,
            addr: 0,
            am: 52,
            ih: false,
        });
        assert_eq!(d[1], 52);
        assert_eq!(
            encode(&Invalidation::PiotlbPasid { pasid: 5, did: 1 })[0],
            0x0000_0005_0001_0026
        );
    }

    #[test]
    fn pasid_cache() {
        assert_eq!(
            encode(&Invalidation::PasidCache { pasid: 3, did: 7 }),
            [0x0000_0003_0007_0017, 0, 0, 0]
        );
    }

    #[test]
    fn devtlb_sizes() {
        let rid = Rid {
            bus: 0x12,
            device: 0x1f,
            function: 7,
        };
        // SID 0x12ff: PFSID low nibble 0xf at 15:12, 0x12f at 63:52.
        let d = encode(&Invalidation::Devtlb {
            rid,
            pasid: None,
            addr: 0x5000,
            size: DevtlbSize::Pages { order: 0 },
        });
        assert_eq!(d[0], 0x12f0_12ff_0000_f003);
        assert_eq!(d[1], 0x5000);
        // 2 pages at 0x6000: bit 12 clear, S=1.
        let d = encode(&Invalidation::Devtlb {
            rid: DEFAULT_RID,
            pasid: None,
            addr: 0x6000,
            size: DevtlbSize::Pages { order: 1 },
        });
        assert_eq!(d[1], 0x6001);
        // 2 MiB at 0x200000: bits 12..19 set, bit 20 clear.
        let d = encode(&Invalidation::Devtlb {
            rid: DEFAULT_RID,
            pasid: None,
            addr: 0x20_0000,
            size: DevtlbSize::Pages { order: 9 },
        });
        assert_eq!(d[1], 0x2f_f001);
        let d = encode(&Invalidation::Devtlb {
            rid: DEFAULT_RID,
            pasid: None,
            addr: 0,
            size: DevtlbSize::All,
        });
        assert_eq!(d[1], 0x7fff_ffff_ffff_f001);
    }

    #[test]
    fn pasid_devtlb() {
        let d = encode(&Invalidation::Devtlb {
            rid: DEFAULT_RID,
            pasid: Some(0x42),
            addr: 0x20_0000,
            size: DevtlbSize::Pages { order: 9 },
        });
        // SID 0x0020 at 31:16, PASID at 51:32, PFSID low nibble 0 and 0x002 at 63:52.
        assert_eq!(d[0], 0x0020_0042_0020_0008);
        assert_eq!(d[1], 0x2f_f800);
        let d = encode(&Invalidation::Devtlb {
            rid: DEFAULT_RID,
            pasid: Some(1),
            addr: 0,
            size: DevtlbSize::All,
        });
        assert_eq!(d[1], 0x7fff_ffff_ffff_f800);
        let d = encode(&Invalidation::Devtlb {
            rid: DEFAULT_RID,
            pasid: Some(1),
            addr: 0x3000,
            size: DevtlbSize::Pages { order: 0 },
        });
        assert_eq!(d[1], 0x3000);
    }

    #[test]
    fn wait_descriptor() {
        assert_eq!(
            wait(0x3ff_f004, 0xdead_beef),
            [0xdead_beef_0000_0065, 0x3ff_f004, 0, 0]
        );
    }
}
