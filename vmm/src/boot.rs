//! The vCPU state at the kernel's entry: segments, control registers,
//! general registers, FPU, MSRs and the local APIC's LINT pins, plus the
//! boot GDT and identity page tables the 64-bit entries need.

use kvm_bindings::{Msrs, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::loader::{EntryPoint, layout};

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Selectors of the boot GDT, as Linux's boot protocol names them.
const BOOT_CS: u16 = 0x10;
const BOOT_DS: u16 = 0x18;
/// MSR numbers.
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_IA32_CR_PAT: u32 = 0x277;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// IA32_MISC_ENABLE.FAST_STRING, as firmware leaves it.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// The architectural reset value of IA32_PAT.
const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// LAPIC LVT LINT0/LINT1 register offsets and delivery modes.
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 7;
const APIC_MODE_NMI: u32 = 4;

/// Errors setting up a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A KVM vCPU ioctl failed.
    #[error("{what} failed on vCPU {vcpu}: {source}")]
    Kvm {
        /// Which operation.
        what: &'static str,
        /// The vCPU.
        vcpu: u32,
        /// The KVM error.
        source: kvm_ioctls::Error,
    },
    /// KVM accepted fewer MSRs than given.
    #[error("KVM_SET_MSRS set {set} of {wanted} MSRs on vCPU {vcpu} (first refused: {first:#x})")]
    Msrs {
        /// The vCPU.
        vcpu: u32,
        /// How many were set.
        set: usize,
        /// How many were given.
        wanted: usize,
        /// The first MSR not set.
        first: u32,
    },
    /// Writing the GDT or page tables failed.
    #[error("cannot write the boot {what} at {addr:#x}: {source}")]
    GuestWrite {
        /// Which structure.
        what: &'static str,
        /// Where.
        addr: u64,
        /// vm-memory's error.
        source: vm_memory::GuestMemoryError,
    },
}

/// A GDT entry from its parts (flags: the high nibble of byte 6 and the
/// access byte, as in 0xa09b).
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = u64::from(base);
    let limit = u64::from(limit);
    let flags = u64::from(flags);
    ((base & 0xff00_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
        | ((limit & 0x000f_0000) << 32)
        | ((flags & 0xf0ff) << 40)
}

fn segment(entry: u64, selector: u16) -> kvm_segment {
    let bit = |n: u32| u8::from(entry >> n & 1 == 1);
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit = (entry & 0xffff) | ((entry >> 32) & 0x000f_0000);
    let g = bit(55);
    let limit = if g == 1 { (limit << 12) | 0xfff } else { limit };
    kvm_segment {
        base,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        selector,
        type_: u8::try_from((entry >> 40) & 0xf).unwrap_or(0),
        present: bit(47),
        dpl: u8::try_from((entry >> 45) & 0x3).unwrap_or(0),
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g,
        avl: bit(52),
        unusable: u8::from(bit(47) == 0),
        padding: 0,
    }
}

fn write_u64s(
    mem: &GuestMemoryMmap,
    what: &'static str,
    addr: u64,
    values: &[u64],
) -> Result<(), BootError> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(addr))
        .map_err(|source| BootError::GuestWrite { what, addr, source })
}

/// Writes the boot GDT and, for 64-bit entries, the identity map of the
/// first 4 GiB (2 MiB pages).
pub fn write_boot_tables(mem: &GuestMemoryMmap, entry: &EntryPoint) -> Result<(), BootError> {
    let code = match entry {
        EntryPoint::Pvh { .. } => gdt_entry(0xc09b, 0, 0xfffff),
        EntryPoint::Linux64 { .. } => gdt_entry(0xa09b, 0, 0xfffff),
    };
    write_u64s(
        mem,
        "GDT",
        layout::GDT,
        &[0, 0, code, gdt_entry(0xc093, 0, 0xfffff)],
    )?;
    if let EntryPoint::Linux64 { .. } = entry {
        write_u64s(mem, "PML4", layout::PML4, &[layout::PDPT | 0x3])?;
        let pdpt: Vec<u64> = (0..4).map(|i| (layout::PD + i * 0x1000) | 0x3).collect();
        write_u64s(mem, "PDPT", layout::PDPT, &pdpt)?;
        let pd: Vec<u64> = (0..2048u64).map(|i| (i << 21) | 0x83).collect();
        write_u64s(mem, "page directories", layout::PD, &pd)?;
    }
    Ok(())
}

fn kvm<T>(what: &'static str, vcpu: u32, r: Result<T, kvm_ioctls::Error>) -> Result<T, BootError> {
    r.map_err(|source| BootError::Kvm { what, vcpu, source })
}

/// Puts the boot vCPU at the kernel's entry.
pub fn setup_boot_vcpu(fd: &VcpuFd, entry: &EntryPoint) -> Result<(), BootError> {
    let mut sregs: kvm_sregs = kvm("KVM_GET_SREGS", 0, fd.get_sregs())?;
    let (code, data) = match entry {
        EntryPoint::Pvh { .. } => (gdt_entry(0xc09b, 0, 0xfffff), gdt_entry(0xc093, 0, 0xfffff)),
        EntryPoint::Linux64 { .. } => {
            (gdt_entry(0xa09b, 0, 0xfffff), gdt_entry(0xc093, 0, 0xfffff))
        }
    };
    sregs.gdt.base = layout::GDT;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = segment(code, BOOT_CS);
    let ds = segment(data, BOOT_DS);
    sregs.ds = ds;
    sregs.es = ds;
    sregs.fs = ds;
    sregs.gs = ds;
    sregs.ss = ds;
    let mut regs = kvm_regs {
        rflags: 0x2,
        ..Default::default()
    };
    match *entry {
        EntryPoint::Pvh { entry, start_info } => {
            sregs.cr0 = CR0_PE | CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rip = entry;
            regs.rbx = start_info;
        }
        EntryPoint::Linux64 { entry, boot_params } => {
            sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
            sregs.cr3 = layout::PML4;
            sregs.cr4 = CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
            regs.rip = entry;
            regs.rsi = boot_params;
            regs.rsp = layout::BOOT_STACK_TOP;
            regs.rbp = layout::BOOT_STACK_TOP;
        }
    }
    kvm("KVM_SET_SREGS", 0, fd.set_sregs(&sregs))?;
    kvm("KVM_SET_REGS", 0, fd.set_regs(&regs))?;
    Ok(())
}

/// State every vCPU gets: FPU defaults, MSRs, LINT0 = ExtINT (the legacy
/// PIC), LINT1 = NMI, as firmware leaves them.
pub fn setup_common(fd: &VcpuFd, vcpu: u32) -> Result<(), BootError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    kvm("KVM_SET_FPU", vcpu, fd.set_fpu(&fpu))?;
    let list = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_LSTAR, 0),
        (MSR_CSTAR, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_IA32_CR_PAT, PAT_RESET),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
    ];
    let entries: Vec<kvm_msr_entry> = list
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| BootError::Msrs {
        vcpu,
        set: 0,
        wanted: list.len(),
        first: list[0].0,
    })?;
    let set = kvm("KVM_SET_MSRS", vcpu, fd.set_msrs(&msrs))?;
    if set != list.len() {
        let first = list.get(set).map_or(0, |m| m.0);
        return Err(BootError::Msrs {
            vcpu,
            set,
            wanted: list.len(),
            first,
        });
    }
    let mut lapic = kvm("KVM_GET_LAPIC", vcpu, fd.get_lapic())?;
    set_lvt_mode(&mut lapic.regs, APIC_LVT_LINT0, APIC_MODE_EXTINT);
    set_lvt_mode(&mut lapic.regs, APIC_LVT_LINT1, APIC_MODE_NMI);
    kvm("KVM_SET_LAPIC", vcpu, fd.set_lapic(&lapic))?;
    Ok(())
}

fn set_lvt_mode(regs: &mut [std::os::raw::c_char], offset: usize, mode: u32) {
    let Some(bytes) = regs.get_mut(offset..offset + 4) else {
        return;
    };
    let mut raw = [0u8; 4];
    for (d, s) in raw.iter_mut().zip(bytes.iter()) {
        *d = s.to_ne_bytes()[0];
    }
    let v = (u32::from_le_bytes(raw) & !0x700) | (mode << 8);
    for (d, s) in bytes.iter_mut().zip(v.to_le_bytes()) {
        *d = std::os::raw::c_char::from_ne_bytes([s]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_the_usual_encodings() {
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(0xc09b, 0, 0xfffff), 0x00cf_9b00_0000_ffff);
    }

    #[test]
    fn segments_decode_their_descriptor() {
        let cs = segment(gdt_entry(0xa09b, 0, 0xfffff), BOOT_CS);
        assert_eq!(
            (cs.l, cs.db, cs.g, cs.present, cs.s, cs.type_),
            (1, 0, 1, 1, 1, 0xb)
        );
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = segment(gdt_entry(0xc093, 0, 0xfffff), BOOT_DS);
        assert_eq!((ds.l, ds.db, ds.type_), (0, 1, 3));
    }

    #[test]
    fn lint_modes_are_set() {
        let mut regs = [0 as std::os::raw::c_char; 1024];
        regs[APIC_LVT_LINT0 + 1] = 0x07; // some mode bits set
        set_lvt_mode(&mut regs, APIC_LVT_LINT0, APIC_MODE_NMI);
        assert_eq!(regs[APIC_LVT_LINT0 + 1], 0x04);
        set_lvt_mode(&mut regs, 1022, APIC_MODE_NMI); // out of range: ignored
    }
}
