//! A KVM VM together with the guest memory registered in it.
//!
//! KVM's memory slots point at the VMM's mappings by host virtual address;
//! a slot must not outlive its mapping. [`GuestVm`] is the only place that
//! registers memory, and it owns a clone of that memory: the mappings
//! (shared, reference-counted regions) therefore live at least as long as
//! the VM file descriptor, whichever other clones are dropped first, and the
//! field order drops the VM before the memory. vCPU file descriptors are
//! the caller's: `vm::run` moves them into threads it joins before it
//! returns, so none runs the guest after that.

use std::ops::Deref;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// A VM whose memory slots cover `memory`, owned together.
#[derive(Debug)]
pub struct GuestVm {
    // Field order is drop order: the VM (closing it removes every slot)
    // goes before the mappings the slots point at.
    fd: VmFd,
    memory: GuestMemoryMmap,
}

impl GuestVm {
    /// Registers every region of `memory` as a memory slot of `fd` (slot
    /// numbers in region order) and keeps a clone of `memory` for as long as
    /// the VM lives.
    pub fn new(fd: VmFd, memory: &GuestMemoryMmap) -> Result<Self, kvm_ioctls::Error> {
        let vm = Self {
            fd,
            memory: memory.clone(),
        };
        for (slot, region) in vm.memory.iter().enumerate() {
            let region_desc = kvm_userspace_memory_region {
                slot: u32::try_from(slot).unwrap_or(u32::MAX),
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the region is a live mapping of `vm.memory`, which `vm`
            // owns; it is dropped after `vm.fd` (field order), so the slot
            // never points at unmapped memory while the VM exists.
            unsafe { vm.fd.set_user_memory_region(region_desc) }?;
        }
        Ok(vm)
    }

    /// The guest memory registered in the VM.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }
}

impl Deref for GuestVm {
    type Target = VmFd;

    fn deref(&self) -> &VmFd {
        &self.fd
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::*;

    #[test]
    fn the_vm_keeps_its_memory_mapped_after_the_callers_copy_is_gone() {
        if !stalewalk_integration::require_kvm(
            "kvm_vm::tests::the_vm_keeps_its_memory_mapped_after_the_callers_copy_is_gone",
        ) {
            return;
        }
        let kvm = kvm_ioctls::Kvm::new().unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        mem.write_obj(0x5a5a_u16, GuestAddress(0x1000)).unwrap();
        let vm = GuestVm::new(kvm.create_vm().unwrap(), &mem).unwrap();
        drop(mem);
        let v: u16 = vm.memory().read_obj(GuestAddress(0x1000)).unwrap();
        assert_eq!(v, 0x5a5a);
    }
}
