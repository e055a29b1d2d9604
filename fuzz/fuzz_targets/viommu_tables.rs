//! Scalable-mode table parsing over memory that is entirely the fuzzer's:
//! root and context entries, the PASID directory and table, first-stage
//! walks at 4 and 5 levels, and invalidation descriptor decoding (a decoded
//! descriptor must encode back to one that decodes the same).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stalewalk_fuzz::Input;
use viommu::descriptor as qi;
use viommu::tables::{self, ContextEntry, PasidEntry};
use viommu::walk::{Geometry, Path, walk};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Memory the tables live in: 16 pages, filled from the input.
const MEM: usize = 0x1_0000;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let rid = input.u16();
    let pasid = input.u32();
    let root = u64::from(input.u32());
    let addr = input.u64();
    let levels = if input.bool() { 5 } else { 4 };
    let fl1gp = input.bool();
    let haw = 39 + input.below(14);
    let mut raw = [0u64; 4];
    for r in &mut raw {
        *r = input.u64();
    }

    // Entry decoders on raw values.
    let _ = ContextEntry::decode([raw[0], raw[1]]);
    let _ = PasidEntry::decode(raw, pasid);
    if let Ok(d) = qi::decode(raw) {
        let again = qi::decode(qi::encode(&d));
        assert_eq!(again, Ok(d), "descriptor {raw:x?} does not round-trip");
    }

    // Tables in memory the fuzzer filled.
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]) else {
        return;
    };
    let image = input.rest();
    let _ = mem.write_slice(&image[..image.len().min(MEM)], GuestAddress(0));
    let root = root % (MEM as u64);
    if let Ok(ctx) = tables::read_context(&mem, root, rid) {
        let _ = ctx.pasid_dir_entries();
        let _ = tables::read_pasid_entry(&mem, &ctx, pasid);
    }
    let geo = Geometry::new(levels, haw, fl1gp);
    let mut path = Path::default();
    if let Ok(leaf) = walk(&mem, &geo, geo.root(root), addr, &mut path) {
        let _ = leaf.output(addr);
    }
    let _ = path.entries();
});
