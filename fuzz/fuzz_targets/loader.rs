//! The kernel loaders on arbitrary files: ELF (with or without a PVH note)
//! and bzImage, as `--kernel FILE` hands them to `loader::load_image`, with
//! the boot information written after them; and the bzImage setup-header
//! parser on its own.
#![no_main]

use std::io::Cursor;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stalewalk_vmm::VmConfig;
use stalewalk_vmm::loader::{load_image, parse_bzimage_header};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Guest memory the images load into (the smallest `--memory` accepted).
const MEM: u64 = 16 << 20;

fn memory() -> &'static GuestMemoryMmap {
    static MEMORY: OnceLock<GuestMemoryMmap> = OnceLock::new();
    MEMORY.get_or_init(|| {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).expect("fuzz memory")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_bzimage_header("fuzz", data);
    let cfg = VmConfig {
        memory: MEM,
        cmdline: "console=ttyS0".to_string(),
        ..VmConfig::default()
    };
    let mut image = Cursor::new(data);
    let _ = load_image(memory(), &cfg, "fuzz", &mut image);
});
