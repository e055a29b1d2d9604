//! The built-in mini guest (guest/mini), built by build.rs with gcc.

/// The mini guest ELF with its PVH note (booted when `run` has no
/// `--kernel`; the same file boots under QEMU's microvm).
pub const MINI_GUEST_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mini.elf"));

/// The same kernel linked without the PVH note, so loaders enter it at its
/// 64-bit ELF entry with a Linux zero page (tests that path).
pub const MINI_GUEST_ELF_NO_PVH: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mini-nopvh.elf"));
