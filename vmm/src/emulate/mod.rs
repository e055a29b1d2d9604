//! Instructions the VMM runs for the guest when KVM's instruction emulator
//! cannot (`KVM_EXIT_INTERNAL_ERROR`, suberror 1).
//!
//! On hosts without hardware virtualization (docs/KVM-NOTES.md), guest
//! kernel-mode code runs in KVM's emulator, which lacks instructions a
//! Linux kernel uses. For a documented set (docs/EMULATION.md) the VMM
//! reads the instruction through the guest's page tables, decodes it with
//! `iced-x86`, does what the CPU would on the vCPU's registers and on
//! guest memory, moves RIP on and lets the vCPU run again:
//!
//! - `int3`: #BP delivered to the guest, RIP past the `int3` (a trap);
//! - `popcnt`, `lzcnt`, `tzcnt`, BMI1, BMI2, `movbe`: computed in
//!   [`alu`] with the flags the SDM defines;
//! - `cmpxchg16b`: a locked `cmpxchg16b` on the host mapping of the guest
//!   page, so it stays atomic against the other vCPUs;
//! - `fwait` and the x87/SSE control instructions (`fninit`, `fnstsw`,
//!   `fnstcw`, `fldcw`, `stmxcsr`, `ldmxcsr`; a waiting form such as
//!   `fstsw` is `fwait` followed by the no-wait one) on the state
//!   `KVM_GET_XSAVE`/`KVM_SET_XSAVE` give.
//!
//! Exceptions the CPU would raise are injected (`#GP(0)` for a misaligned
//! `cmpxchg16b`, reserved MXCSR bits or a non-canonical address, `#NM`,
//! `#MF`, `#UD`). A memory operand on a not-present page raises `#PF` with
//! CR2 and the error code, where KVM syncs registers through `kvm_run`
//! (CR2 goes in with the system registers); without that the VM stops with
//! a clear error, since setting CR2 would take `KVM_SET_SREGS`, which the
//! vCPU seccomp filter does not allow. A page table outside guest RAM, or
//! an operand in MMIO, stops the VM.

pub mod alu;

use std::collections::BTreeMap;
use std::sync::Mutex;

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::{SyncReg, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::gva::{self, CR4_LA57, EFER_LMA, PagingMode, WalkError};
use alu::Op;

/// The longest x86 instruction, in bytes.
pub const INSN_BYTES: usize = 15;

/// KVM's suberror for an emulation failure (`KVM_INTERNAL_ERROR_EMULATION`).
pub const SUBERROR_EMULATION: u32 = 1;

const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR0_NE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const FSW_ES: u16 = 1 << 7;

const VEC_BP: u32 = 3;
const VEC_UD: u32 = 6;
const VEC_NM: u32 = 7;
const VEC_SS: u32 = 12;
const VEC_GP: u32 = 13;
const VEC_PF: u32 = 14;
const VEC_MF: u32 = 16;

/// Why the VMM did not run an instruction KVM could not emulate.
#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    /// A vCPU ioctl failed.
    #[error("{what} failed: {source}")]
    Kvm {
        /// The ioctl.
        what: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// Nothing could be read at RIP.
    #[error("no instruction bytes could be read at RIP {rip:#x}")]
    Fetch {
        /// The linear address of RIP.
        rip: u64,
    },
    /// The bytes do not decode.
    #[error("the bytes at RIP do not decode as an x86 instruction")]
    Decode,
    /// A known instruction outside the set.
    #[error("`{mnemonic}` is not one the VMM emulates (docs/EMULATION.md lists them)")]
    NotInSet {
        /// The decoded mnemonic.
        mnemonic: String,
    },
    /// A memory operand's page tables are not in guest RAM.
    #[error(
        "the VMM emulated `{mnemonic}` but its memory operand at {gva:#x} does not translate ({source}) \
         (docs/EMULATION.md)"
    )]
    Translate {
        /// The instruction.
        mnemonic: &'static str,
        /// The operand's linear address.
        gva: u64,
        /// Why.
        source: WalkError,
    },
    /// A memory operand's page is not present: the CPU raises #PF. With
    /// synced registers the VMM injects it (CR2 through the synced system
    /// registers); without, it stops here with this error.
    #[error(
        "the VMM emulated `{mnemonic}` but its memory operand at {gva:#x} page-faults ({source}); \
         without KVM's synced registers the VMM cannot set CR2, so it stops instead of injecting #PF \
         (docs/EMULATION.md)"
    )]
    PageFault {
        /// The instruction.
        mnemonic: &'static str,
        /// The faulting linear address (CR2).
        gva: u64,
        /// The #PF error code.
        error: u32,
        /// The walk's finding.
        source: WalkError,
    },
    /// A memory operand is not in guest RAM.
    #[error(
        "the VMM emulated `{mnemonic}` but its memory operand at {gva:#x} (guest-physical {gpa:#x}) \
         is not guest RAM (MMIO or beyond memory)"
    )]
    NotRam {
        /// The instruction.
        mnemonic: &'static str,
        /// The operand's linear address.
        gva: u64,
        /// Where it translated to.
        gpa: u64,
    },
    /// An operand form the VMM does not take (e.g. an 8-bit register).
    #[error("`{mnemonic}` with this operand form is not one the VMM emulates")]
    Form {
        /// The instruction.
        mnemonic: &'static str,
    },
    /// The instruction raises an exception (a non-canonical operand
    /// address): `emulate` injects it and the guest runs on; never returned
    /// from [`emulate`].
    #[error("the instruction raises exception {vector}")]
    Raise {
        /// The vector.
        vector: u32,
        /// The error code, if the exception has one.
        error: Option<u32>,
    },
    /// The host has no `cmpxchg16b`.
    #[error("the host CPU lacks cmpxchg16b, so the VMM cannot run the guest's atomically")]
    HostLacksCx16,
}

/// What the VMM ran, per mnemonic, for the report (`vmm_emulated`). Keys
/// come from a fixed set, so the map stays small whatever the guest does.
#[derive(Debug, Default)]
pub struct EmulatedCounts(Mutex<BTreeMap<&'static str, u64>>);

impl EmulatedCounts {
    /// Counts one `mnemonic`.
    pub fn record(&self, mnemonic: &'static str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(mnemonic).or_insert(0) += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect()
    }
}

/// The paging mode the vCPU's system registers give.
pub fn paging_mode(s: &kvm_sregs) -> PagingMode {
    PagingMode {
        cr0: s.cr0,
        cr3: s.cr3,
        cr4: s.cr4,
        efer: s.efer,
    }
}

/// The linear address of `rip` (CS.base is ignored in long mode).
pub fn linear_rip(regs: &kvm_regs, s: &kvm_sregs) -> u64 {
    if s.efer & EFER_LMA != 0 {
        regs.rip
    } else {
        s.cs.base.wrapping_add(regs.rip) & 0xffff_ffff
    }
}

/// Code size in bits of the vCPU's current code segment.
fn bitness(s: &kvm_sregs) -> u32 {
    if s.efer & EFER_LMA != 0 && s.cs.l != 0 {
        64
    } else if s.cs.db != 0 {
        32
    } else {
        16
    }
}

/// Whether `va` is canonical for `width` address bits (48, or 57 with
/// LA57): bits 63..width-1 all equal.
fn canonical(va: u64, width: u32) -> bool {
    #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
    let extended = (((va << (64 - width)) as i64) >> (64 - width)) as u64;
    extended == va
}

/// Index into [`gpr_mut`] and width of a general-purpose register of 16,
/// 32 or 64 bits (iced numbers them AX..R15W, EAX..R15D, RAX..R15).
fn gpr(r: Register) -> Option<(usize, u32)> {
    let n = r as u32;
    let (base, bits) = if (Register::AX as u32..=Register::R15W as u32).contains(&n) {
        (Register::AX as u32, 16)
    } else if (Register::EAX as u32..=Register::R15D as u32).contains(&n) {
        (Register::EAX as u32, 32)
    } else if (Register::RAX as u32..=Register::R15 as u32).contains(&n) {
        (Register::RAX as u32, 64)
    } else {
        return None;
    };
    usize::try_from(n - base).ok().map(|i| (i, bits))
}

/// The register slot `i` in x86 encoding order (rax, rcx, rdx, rbx, rsp,
/// rbp, rsi, rdi, r8..r15).
fn gpr_mut(regs: &mut kvm_regs, i: usize) -> &mut u64 {
    match i {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        _ => &mut regs.r15,
    }
}

/// What to do with the vCPU once an instruction was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Registers changed (RIP at least): write them back.
    Retire,
    /// Raise exception `vector` (with `error` code) at the instruction, as a
    /// fault: registers unchanged.
    Fault { vector: u32, error: Option<u32> },
}

/// One emulated instruction's view of the vCPU and guest memory.
struct Cpu<'a> {
    mem: &'a GuestMemoryMmap,
    regs: kvm_regs,
    sregs: kvm_sregs,
    mode: PagingMode,
    bits: u32,
    mnemonic: &'static str,
}

impl Cpu<'_> {
    fn get(&self, r: Register) -> Option<u64> {
        let (i, bits) = gpr(r)?;
        let mut regs = self.regs;
        Some(*gpr_mut(&mut regs, i) & alu::ones(bits))
    }

    /// Writes a register as the CPU does: a 32-bit write zero-extends, a
    /// 16-bit write keeps the upper bits.
    fn set(&mut self, r: Register, v: u64) -> Result<(), EmulateError> {
        let (i, bits) = gpr(r).ok_or(EmulateError::Form {
            mnemonic: self.mnemonic,
        })?;
        let slot = gpr_mut(&mut self.regs, i);
        *slot = match bits {
            64 => v,
            32 => v & 0xffff_ffff,
            _ => (*slot & !0xffff) | (v & 0xffff),
        };
        Ok(())
    }

    fn segment_base(&self, r: Register) -> Option<u64> {
        let s = &self.sregs;
        let seg = match r {
            Register::ES => &s.es,
            Register::CS => &s.cs,
            Register::SS => &s.ss,
            Register::DS => &s.ds,
            Register::FS => &s.fs,
            Register::GS => &s.gs,
            _ => return None,
        };
        // In 64-bit mode only FS and GS have a base.
        if self.bits == 64 && !matches!(r, Register::FS | Register::GS) {
            Some(0)
        } else {
            Some(seg.base)
        }
    }

    /// The linear address of memory operand `op`, `len` bytes long. In
    /// 64-bit mode a non-canonical one raises #GP(0), or #SS(0) through SS,
    /// as on the CPU (the page walk would otherwise ignore the high bits).
    fn address(&self, ins: &Instruction, op: u32, len: u64) -> Result<u64, EmulateError> {
        let va = ins
            .virtual_address(op, 0, |r, _, _| {
                self.segment_base(r).or_else(|| self.get(r))
            })
            .ok_or(EmulateError::Form {
                mnemonic: self.mnemonic,
            })?;
        if self.bits != 64 {
            return Ok(va & 0xffff_ffff);
        }
        let width = if self.mode.cr4 & CR4_LA57 != 0 {
            57
        } else {
            48
        };
        let last = va.wrapping_add(len.saturating_sub(1));
        if !canonical(va, width) || !canonical(last, width) {
            return Err(EmulateError::Raise {
                vector: if ins.memory_segment() == Register::SS {
                    VEC_SS
                } else {
                    VEC_GP
                },
                error: Some(0),
            });
        }
        Ok(va)
    }

    /// Guest-physical address of `gva`; a not-present entry on the walk, or
    /// a write to a read-only page under CR0.WP, is a page fault (`write`:
    /// the access writes).
    fn translate(&self, gva: u64, write: bool) -> Result<u64, EmulateError> {
        let user = u32::from(self.sregs.cs.selector & 3 == 3) << 2;
        gva::translate_access(self.mem, &self.mode, gva, write).map_err(|source| match source {
            // P=0, W, U (CPL 3), as the CPU reports a not-present fault.
            WalkError::NotPresent { .. } => EmulateError::PageFault {
                mnemonic: self.mnemonic,
                gva,
                error: (u32::from(write) << 1) | user,
                source,
            },
            // P=1, W: a write to a read-only page under CR0.WP.
            WalkError::WriteProtected { .. } => EmulateError::PageFault {
                mnemonic: self.mnemonic,
                gva,
                error: 1 | 2 | user,
                source,
            },
            _ => EmulateError::Translate {
                mnemonic: self.mnemonic,
                gva,
                source,
            },
        })
    }

    /// Reads or writes `buf` (at most 16 bytes) at `gva`, page by page.
    /// Every page is translated and checked before anything is written, so
    /// a store that faults on its second page leaves the first untouched,
    /// as on the CPU.
    fn access(&self, gva: u64, buf: &mut [u8], write: bool) -> Result<(), EmulateError> {
        // (gpa, offset in buf, length) of each page's part; 16 bytes span at
        // most two pages.
        let mut parts = [(0u64, 0usize, 0usize); 2];
        let mut count = 0usize;
        let mut done = 0usize;
        while done < buf.len() && count < parts.len() {
            let va = gva.wrapping_add(done as u64);
            let gpa = self.translate(va, write)?;
            let in_page = 0x1000 - usize::try_from(va & 0xfff).unwrap_or(0);
            let n = in_page.min(buf.len() - done);
            let mut probe = [0u8; 16];
            let len = n.min(probe.len());
            self.mem
                .read_slice(&mut probe[..len], GuestAddress(gpa))
                .map_err(|_| EmulateError::NotRam {
                    mnemonic: self.mnemonic,
                    gva: va,
                    gpa,
                })?;
            if !write {
                buf[done..done + len].copy_from_slice(&probe[..len]);
            }
            parts[count] = (gpa, done, len);
            count += 1;
            done += len;
        }
        if done < buf.len() {
            return Err(EmulateError::Form {
                mnemonic: self.mnemonic,
            });
        }
        if write {
            for &(gpa, off, len) in &parts[..count] {
                self.mem
                    .write_slice(&buf[off..off + len], GuestAddress(gpa))
                    .map_err(|_| EmulateError::NotRam {
                        mnemonic: self.mnemonic,
                        gva: gva.wrapping_add(off as u64),
                        gpa,
                    })?;
            }
        }
        Ok(())
    }

    fn read_mem(&self, gva: u64, bits: u32) -> Result<u64, EmulateError> {
        let mut b = [0u8; 8];
        let n = usize::try_from(bits / 8).unwrap_or(8).min(8);
        self.access(gva, &mut b[..n], false)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_mem(&self, gva: u64, bits: u32, v: u64) -> Result<(), EmulateError> {
        let mut b = v.to_le_bytes();
        let n = usize::try_from(bits / 8).unwrap_or(8).min(8);
        self.access(gva, &mut b[..n], true)
    }

    /// The value of operand `op` at `bits`.
    fn read(&self, ins: &Instruction, op: u32, bits: u32) -> Result<u64, EmulateError> {
        match ins.op_kind(op) {
            OpKind::Register => self.get(ins.op_register(op)).ok_or(EmulateError::Form {
                mnemonic: self.mnemonic,
            }),
            OpKind::Memory => self.read_mem(self.address(ins, op, u64::from(bits / 8))?, bits),
            OpKind::Immediate8 => Ok(u64::from(ins.immediate8())),
            _ => Err(EmulateError::Form {
                mnemonic: self.mnemonic,
            }),
        }
    }

    fn write(&mut self, ins: &Instruction, op: u32, bits: u32, v: u64) -> Result<(), EmulateError> {
        match ins.op_kind(op) {
            OpKind::Register => self.set(ins.op_register(op), v),
            OpKind::Memory => self.write_mem(self.address(ins, op, u64::from(bits / 8))?, bits, v),
            _ => Err(EmulateError::Form {
                mnemonic: self.mnemonic,
            }),
        }
    }

    /// Operand size: the first register operand's width.
    fn operand_bits(&self, ins: &Instruction) -> Result<u32, EmulateError> {
        (0..ins.op_count())
            .find(|&i| ins.op_kind(i) == OpKind::Register)
            .and_then(|i| gpr(ins.op_register(i)))
            .map(|(_, bits)| bits)
            .ok_or(EmulateError::Form {
                mnemonic: self.mnemonic,
            })
    }
}

/// The integer operation and report name of `m`, for the ALU group.
fn alu_op(m: Mnemonic) -> Option<(Op, &'static str)> {
    Some(match m {
        Mnemonic::Popcnt => (Op::Popcnt, "popcnt"),
        Mnemonic::Lzcnt => (Op::Lzcnt, "lzcnt"),
        Mnemonic::Tzcnt => (Op::Tzcnt, "tzcnt"),
        Mnemonic::Andn => (Op::Andn, "andn"),
        Mnemonic::Bextr => (Op::Bextr, "bextr"),
        Mnemonic::Blsi => (Op::Blsi, "blsi"),
        Mnemonic::Blsmsk => (Op::Blsmsk, "blsmsk"),
        Mnemonic::Blsr => (Op::Blsr, "blsr"),
        Mnemonic::Bzhi => (Op::Bzhi, "bzhi"),
        Mnemonic::Pdep => (Op::Pdep, "pdep"),
        Mnemonic::Pext => (Op::Pext, "pext"),
        Mnemonic::Rorx => (Op::Rorx, "rorx"),
        Mnemonic::Sarx => (Op::Sarx, "sarx"),
        Mnemonic::Shlx => (Op::Shlx, "shlx"),
        Mnemonic::Shrx => (Op::Shrx, "shrx"),
        _ => return None,
    })
}

/// The report name of an instruction in the set, or `None`.
fn name_of(ins: &Instruction) -> Option<&'static str> {
    if let Some((_, name)) = alu_op(ins.mnemonic()) {
        return Some(name);
    }
    Some(match ins.code() {
        Code::Int3 => "int3",
        Code::Wait => "fwait",
        Code::Fninit => "fninit",
        Code::Fnstsw_AX | Code::Fnstsw_m2byte => "fnstsw",
        Code::Fnstcw_m2byte => "fnstcw",
        Code::Fldcw_m2byte => "fldcw",
        Code::Stmxcsr_m32 => "stmxcsr",
        Code::Ldmxcsr_m32 => "ldmxcsr",
        Code::Cmpxchg16b_m128 => "cmpxchg16b",
        Code::Movbe_r16_m16
        | Code::Movbe_r32_m32
        | Code::Movbe_r64_m64
        | Code::Movbe_m16_r16
        | Code::Movbe_m32_r32
        | Code::Movbe_m64_r64 => "movbe",
        Code::VEX_Mulx_r32_r32_rm32 | Code::VEX_Mulx_r64_r64_rm64 => "mulx",
        _ => return None,
    })
}

/// Decodes `bytes` as code of `bits` at `rip`.
fn decode(bytes: &[u8], bits: u32, rip: u64) -> Result<Instruction, EmulateError> {
    let mut d = Decoder::with_ip(bits, bytes, rip, DecoderOptions::NONE);
    let ins = d.decode();
    if ins.is_invalid() {
        return Err(EmulateError::Decode);
    }
    Ok(ins)
}

/// Where the vCPU's registers come from and go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegAccess {
    /// `kvm_run`'s synced registers (`KVM_CAP_SYNC_REGS`: regs, sregs and
    /// events valid on every exit, written back through `kvm_dirty_regs`):
    /// no extra ioctl, each of which costs a `vcpu_load` (MSR reads) here.
    Synced,
    /// `KVM_GET_REGS`/`KVM_GET_SREGS`/`KVM_SET_REGS` and
    /// `KVM_GET/SET_VCPU_EVENTS`, where KVM has no sync regs.
    Ioctls,
}

/// Asks KVM to copy registers, system registers and events into
/// `kvm_run` on every exit, so [`RegAccess::Synced`] can use them.
pub fn enable_sync_regs(fd: &mut VcpuFd) {
    fd.set_sync_valid_reg(SyncReg::Register);
    fd.set_sync_valid_reg(SyncReg::SystemRegister);
    fd.set_sync_valid_reg(SyncReg::VcpuEvents);
}

/// The `KVM_CAP_SYNC_REGS` bits [`enable_sync_regs`] needs.
pub const SYNC_REGS_NEEDED: u64 = kvm_bindings::KVM_SYNC_X86_REGS as u64
    | kvm_bindings::KVM_SYNC_X86_SREGS as u64
    | kvm_bindings::KVM_SYNC_X86_EVENTS as u64;

/// Handles the instruction at the vCPU's RIP that KVM could not emulate.
/// On success the vCPU is ready to run on and the result names the
/// instruction (for the report); an error means the VM must stop.
pub fn emulate(
    fd: &mut VcpuFd,
    mem: &GuestMemoryMmap,
    access: RegAccess,
) -> Result<&'static str, EmulateError> {
    let kvm = |what: &'static str| move |source| EmulateError::Kvm { what, source };
    let (regs, sregs) = match access {
        RegAccess::Synced => {
            let s = fd.sync_regs();
            (s.regs, s.sregs)
        }
        RegAccess::Ioctls => (
            fd.get_regs().map_err(kvm("KVM_GET_REGS"))?,
            fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
        ),
    };
    let mode = paging_mode(&sregs);
    let lin = linear_rip(&regs, &sregs);
    let bytes = gva::read_bytes(mem, &mode, lin, INSN_BYTES);
    if bytes.is_empty() {
        return Err(EmulateError::Fetch { rip: lin });
    }
    let bits = bitness(&sregs);
    let ins = decode(&bytes, bits, regs.rip)?;
    let Some(mnemonic) = name_of(&ins) else {
        return Err(EmulateError::NotInSet {
            mnemonic: format!("{:?}", ins.mnemonic()).to_lowercase(),
        });
    };
    let mut cpu = Cpu {
        mem,
        regs,
        sregs,
        mode,
        bits,
        mnemonic,
    };
    let after = match execute(&mut cpu, &ins, fd) {
        Ok(a) => a,
        Err(EmulateError::Raise { vector, error }) => After::Fault { vector, error },
        Err(EmulateError::PageFault { gva, error, .. }) if access == RegAccess::Synced => {
            // CR2 goes in with the synced system registers (the values KVM
            // just stored, CR2 changed); the #PF with the event below.
            let s = fd.sync_regs_mut();
            s.sregs.cr2 = gva;
            fd.set_sync_dirty_reg(SyncReg::SystemRegister);
            After::Fault {
                vector: VEC_PF,
                error: Some(error),
            }
        }
        Err(e) => return Err(e),
    };
    match after {
        After::Retire => {
            cpu.regs.rip = if bits == 64 {
                ins.next_ip()
            } else {
                ins.next_ip() & 0xffff_ffff
            };
            match access {
                RegAccess::Synced => {
                    fd.sync_regs_mut().regs = cpu.regs;
                    fd.set_sync_dirty_reg(SyncReg::Register);
                }
                RegAccess::Ioctls => fd.set_regs(&cpu.regs).map_err(kvm("KVM_SET_REGS"))?,
            }
            if ins.code() == Code::Int3 {
                inject(fd, access, VEC_BP, None)?;
            }
        }
        After::Fault { vector, error } => inject(fd, access, vector, error)?,
    }
    Ok(mnemonic)
}

/// Queues exception `vector` for delivery at the next entry.
fn inject(
    fd: &mut VcpuFd,
    access: RegAccess,
    vector: u32,
    error: Option<u32>,
) -> Result<(), EmulateError> {
    let mut ev = match access {
        RegAccess::Synced => fd.sync_regs().events,
        RegAccess::Ioctls => fd.get_vcpu_events().map_err(|source| EmulateError::Kvm {
            what: "KVM_GET_VCPU_EVENTS",
            source,
        })?,
    };
    ev.exception.injected = 1;
    ev.exception.pending = 0;
    ev.exception.nr = u8::try_from(vector).unwrap_or(0);
    ev.exception.has_error_code = u8::from(error.is_some());
    ev.exception.error_code = error.unwrap_or(0);
    // Only the exception changes: the optional parts (NMI pending, SIPI,
    // shadow, SMM, payload) are left as they are.
    ev.flags = 0;
    match access {
        RegAccess::Synced => {
            fd.sync_regs_mut().events = ev;
            fd.set_sync_dirty_reg(SyncReg::VcpuEvents);
            Ok(())
        }
        RegAccess::Ioctls => fd.set_vcpu_events(&ev).map_err(|source| EmulateError::Kvm {
            what: "KVM_SET_VCPU_EVENTS",
            source,
        }),
    }
}

fn execute(cpu: &mut Cpu<'_>, ins: &Instruction, fd: &VcpuFd) -> Result<After, EmulateError> {
    match execute_integer(cpu, ins) {
        Some(r) => r,
        None => fpu(cpu, ins, fd),
    }
}

/// The instructions of the set that need only registers and memory (all
/// but the x87/SSE ones); `None` for the others.
fn execute_integer(cpu: &mut Cpu<'_>, ins: &Instruction) -> Option<Result<After, EmulateError>> {
    if let Some((op, _)) = alu_op(ins.mnemonic()) {
        return Some(execute_alu(cpu, ins, op));
    }
    Some(match ins.code() {
        Code::Int3 => Ok(After::Retire),
        Code::VEX_Mulx_r32_r32_rm32 | Code::VEX_Mulx_r64_r64_rm64 => execute_mulx(cpu, ins),
        Code::Movbe_r16_m16
        | Code::Movbe_r32_m32
        | Code::Movbe_r64_m64
        | Code::Movbe_m16_r16
        | Code::Movbe_m32_r32
        | Code::Movbe_m64_r64 => execute_movbe(cpu, ins),
        Code::Cmpxchg16b_m128 => cmpxchg16b(cpu, ins),
        _ => return None,
    })
}

fn execute_alu(cpu: &mut Cpu<'_>, ins: &Instruction, op: Op) -> Result<After, EmulateError> {
    let bits = cpu.operand_bits(ins)?;
    let (a, b) = match op {
        Op::Popcnt | Op::Lzcnt | Op::Tzcnt | Op::Blsi | Op::Blsmsk | Op::Blsr => {
            (cpu.read(ins, 1, bits)?, 0)
        }
        _ => (cpu.read(ins, 1, bits)?, cpu.read(ins, 2, bits)?),
    };
    let (r, flags) = alu::compute(op, bits, a, b);
    cpu.write(ins, 0, bits, r)?;
    cpu.regs.rflags = flags.apply(cpu.regs.rflags);
    Ok(After::Retire)
}

fn execute_mulx(cpu: &mut Cpu<'_>, ins: &Instruction) -> Result<After, EmulateError> {
    let bits = cpu.operand_bits(ins)?;
    let src = cpu.read(ins, 2, bits)?;
    let (hi, lo) = alu::mulx(bits, cpu.regs.rdx, src);
    // Low half first: with both destinations the same register the high
    // half is what stays.
    cpu.write(ins, 1, bits, lo)?;
    cpu.write(ins, 0, bits, hi)?;
    Ok(After::Retire)
}

fn execute_movbe(cpu: &mut Cpu<'_>, ins: &Instruction) -> Result<After, EmulateError> {
    let bits = cpu.operand_bits(ins)?;
    let v = cpu.read(ins, 1, bits)?;
    cpu.write(ins, 0, bits, alu::byte_swap(bits, v))?;
    Ok(After::Retire)
}

fn cmpxchg16b(cpu: &mut Cpu<'_>, ins: &Instruction) -> Result<After, EmulateError> {
    let gva = cpu.address(ins, 0, 16)?;
    if gva & 15 != 0 {
        return Ok(After::Fault {
            vector: VEC_GP,
            error: Some(0),
        });
    }
    if !std::arch::is_x86_feature_detected!("cmpxchg16b") {
        return Err(EmulateError::HostLacksCx16);
    }
    // A locked read-modify-write faults as a write.
    let gpa = cpu.translate(gva, true)?;
    let not_ram = EmulateError::NotRam {
        mnemonic: cpu.mnemonic,
        gva,
        gpa,
    };
    let Ok(slice) = cpu.mem.get_slice(GuestAddress(gpa), 16) else {
        return Err(not_ram);
    };
    let guard = slice.ptr_guard_mut();
    let ptr = guard.as_ptr();
    if ptr.align_offset(16) != 0 {
        return Err(not_ram);
    }
    let old = (u128::from(cpu.regs.rdx) << 64) | u128::from(cpu.regs.rax);
    let new = (u128::from(cpu.regs.rcx) << 64) | u128::from(cpu.regs.rbx);
    // SAFETY: `ptr` points at 16 bytes of guest RAM (get_slice checked the
    // range lies in one mapped region), 16-byte aligned (checked), kept
    // mapped by `guard`; the host has cmpxchg16b (checked). Other vCPUs may
    // access the same bytes, which is what the locked instruction is for.
    let prev = unsafe { locked_cmpxchg16b(ptr.cast(), old, new) };
    let equal = prev == old;
    if !equal {
        #[allow(clippy::cast_possible_truncation)]
        {
            cpu.regs.rax = prev as u64;
            cpu.regs.rdx = (prev >> 64) as u64;
        }
    }
    let f = alu::Flags {
        mask: alu::ZF,
        value: if equal { alu::ZF } else { 0 },
    };
    cpu.regs.rflags = f.apply(cpu.regs.rflags);
    Ok(After::Retire)
}

/// `lock cmpxchg16b [ptr]`: stores `new` if `*ptr == old`; returns what
/// `*ptr` held.
///
/// # Safety
/// `ptr` must be valid for reads and writes of 16 bytes and 16-byte
/// aligned, and the CPU must have cmpxchg16b.
unsafe fn locked_cmpxchg16b(ptr: *mut u8, old: u128, new: u128) -> u128 {
    #[allow(clippy::cast_possible_truncation)]
    let (old_lo, old_hi, new_lo, new_hi) = (
        old as u64,
        (old >> 64) as u64,
        new as u64,
        (new >> 64) as u64,
    );
    let (lo, hi): (u64, u64);
    // SAFETY: the caller's contract; rbx is reserved by the compiler, so it
    // is swapped with a scratch register around the instruction.
    unsafe {
        std::arch::asm!(
            "xchg {tmp}, rbx",
            "lock cmpxchg16b xmmword ptr [{p}]",
            "mov rbx, {tmp}",
            p = in(reg) ptr,
            tmp = inout(reg) new_lo => _,
            inout("rax") old_lo => lo,
            inout("rdx") old_hi => hi,
            in("rcx") new_hi,
            options(nostack)
        );
    }
    (u128::from(hi) << 64) | u128::from(lo)
}

fn fpu(cpu: &mut Cpu<'_>, ins: &Instruction, fd: &VcpuFd) -> Result<After, EmulateError> {
    let cr0 = cpu.sregs.cr0;
    let code = ins.code();
    let sse = matches!(code, Code::Stmxcsr_m32 | Code::Ldmxcsr_m32);
    // Device-not-available and undefined-opcode checks, in the SDM's order.
    if sse && (cr0 & CR0_EM != 0 || cpu.sregs.cr4 & CR4_OSFXSR == 0) {
        return Ok(After::Fault {
            vector: VEC_UD,
            error: None,
        });
    }
    let nm = if code == Code::Wait {
        cr0 & CR0_TS != 0 && cr0 & CR0_MP != 0
    } else {
        cr0 & CR0_TS != 0 || (!sse && cr0 & CR0_EM != 0)
    };
    if nm {
        return Ok(After::Fault {
            vector: VEC_NM,
            error: None,
        });
    }
    let mut x = Xstate(fd.get_xsave().map_err(|source| EmulateError::Kvm {
        what: "KVM_GET_XSAVE",
        source,
    })?);
    // `fwait` reports a pending unmasked x87 exception (#MF where CR0.NE
    // asks for native reporting; the legacy FERR# pin is not modelled).
    if code == Code::Wait && x.u16_at(FX_FSW) & FSW_ES != 0 && cr0 & CR0_NE != 0 {
        return Ok(After::Fault {
            vector: VEC_MF,
            error: None,
        });
    }
    let mut changed = false;
    match code {
        Code::Wait => {}
        Code::Fninit => {
            x.set_u16(FX_FCW, 0x037f);
            x.set_u16(FX_FSW, 0);
            x.set_u16(FX_FTW, 0); // abridged tag word: every register empty
            x.set_u16(FX_FOP, 0);
            x.set_u64(FX_FIP, 0);
            x.set_u64(FX_FDP, 0);
            x.mark(XSTATE_X87);
            changed = true;
        }
        Code::Fnstsw_AX => cpu.set(Register::AX, u64::from(x.u16_at(FX_FSW)))?,
        Code::Fnstsw_m2byte => cpu.write(ins, 0, 16, u64::from(x.u16_at(FX_FSW)))?,
        Code::Fnstcw_m2byte => cpu.write(ins, 0, 16, u64::from(x.u16_at(FX_FCW)))?,
        Code::Fldcw_m2byte => {
            let v = cpu.read(ins, 0, 16)?;
            x.set_u16(FX_FCW, u16::try_from(v & 0xffff).unwrap_or(0x037f));
            x.mark(XSTATE_X87);
            changed = true;
        }
        Code::Stmxcsr_m32 => cpu.write(ins, 0, 32, u64::from(x.u32_at(FX_MXCSR)))?,
        Code::Ldmxcsr_m32 => {
            let v = u32::try_from(cpu.read(ins, 0, 32)? & 0xffff_ffff).unwrap_or(u32::MAX);
            // Bits outside MXCSR_MASK raise #GP(0); a zero mask means the
            // default 0xffbf (SDM, FXSAVE).
            let mask = match x.u32_at(FX_MXCSR_MASK) {
                0 => MXCSR_DEFAULT_MASK,
                m => m,
            };
            if v & !mask != 0 {
                return Ok(After::Fault {
                    vector: VEC_GP,
                    error: Some(0),
                });
            }
            x.set_u32(FX_MXCSR, v);
            x.mark(XSTATE_SSE);
            changed = true;
        }
        _ => {
            return Err(EmulateError::Form {
                mnemonic: cpu.mnemonic,
            });
        }
    }
    if changed {
        // SAFETY: the VMM enables no dynamically sized XSTATE feature
        // (AMX), so the guest's state fits the 4096-byte kvm_xsave.
        unsafe { fd.set_xsave(&x.0) }.map_err(|source| EmulateError::Kvm {
            what: "KVM_SET_XSAVE",
            source,
        })?;
    }
    Ok(After::Retire)
}

// The legacy (FXSAVE) region of the XSAVE area, in bytes.
const FX_FCW: usize = 0;
const FX_FSW: usize = 2;
const FX_FTW: usize = 4;
const FX_FOP: usize = 6;
const FX_FIP: usize = 8;
const FX_FDP: usize = 16;
const FX_MXCSR: usize = 24;
const FX_MXCSR_MASK: usize = 28;
/// XSTATE_BV in the XSAVE header.
const XSAVE_XSTATE_BV: usize = 512;
const XSTATE_X87: u64 = 1 << 0;
const XSTATE_SSE: u64 = 1 << 1;
const MXCSR_DEFAULT_MASK: u32 = 0xffbf;

/// The vCPU's x87/SSE state as `KVM_GET_XSAVE` gives it. (`KVM_SET_FPU`
/// is no use here: it leaves the XSAVE header alone, so a component
/// marked "in its initial state" is restored as such and the write is
/// lost.)
struct Xstate(kvm_bindings::kvm_xsave);

impl Xstate {
    fn bytes(&self) -> [u8; 520] {
        let mut b = [0u8; 520];
        for (i, w) in self.0.region.iter().take(130).enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    fn get(&self, off: usize, n: usize) -> u64 {
        let b = self.bytes();
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&b[off..off + n]);
        u64::from_le_bytes(v)
    }

    fn put(&mut self, off: usize, n: usize, val: u64) {
        let mut b = self.bytes();
        b[off..off + n].copy_from_slice(&val.to_le_bytes()[..n]);
        for (i, w) in self.0.region.iter_mut().take(130).enumerate() {
            let mut q = [0u8; 4];
            q.copy_from_slice(&b[i * 4..i * 4 + 4]);
            *w = u32::from_le_bytes(q);
        }
    }

    fn u16_at(&self, off: usize) -> u16 {
        u16::try_from(self.get(off, 2)).unwrap_or(0)
    }

    fn u32_at(&self, off: usize) -> u32 {
        u32::try_from(self.get(off, 4)).unwrap_or(0)
    }

    fn set_u16(&mut self, off: usize, v: u16) {
        self.put(off, 2, u64::from(v));
    }

    fn set_u32(&mut self, off: usize, v: u32) {
        self.put(off, 4, u64::from(v));
    }

    fn set_u64(&mut self, off: usize, v: u64) {
        self.put(off, 8, v);
    }

    /// Marks `component` as holding state (not its initial state) in
    /// XSTATE_BV, so the restore uses what was written.
    fn mark(&mut self, component: u64) {
        let bv = self.get(XSAVE_XSTATE_BV, 8);
        self.put(XSAVE_XSTATE_BV, 8, bv | component);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode64(bytes: &[u8]) -> Instruction {
        decode(bytes, 64, 0x1000).unwrap()
    }

    #[test]
    fn the_set_is_named_and_the_rest_is_not() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (&[0xcc], Some("int3")),
            (&[0xf3, 0x48, 0x0f, 0xb8, 0xc1], Some("popcnt")),
            (&[0xf3, 0x0f, 0xbd, 0xc1], Some("lzcnt")),
            (&[0xf3, 0x0f, 0xbc, 0xc1], Some("tzcnt")),
            (&[0xc4, 0xe2, 0xf9, 0xf7, 0xc2], Some("shlx")),
            (&[0xc4, 0xe2, 0xf3, 0xf6, 0xc2], Some("mulx")),
            (&[0x48, 0x0f, 0x38, 0xf0, 0x07], Some("movbe")),
            (&[0xf0, 0x48, 0x0f, 0xc7, 0x0e], Some("cmpxchg16b")),
            (&[0x9b], Some("fwait")),
            // The waiting forms decode as `fwait` first (9b), then the
            // no-wait instruction: KVM stops on each in turn.
            (&[0x9b, 0xdb, 0xe3], Some("fwait")),
            (&[0xdb, 0xe3], Some("fninit")),
            (&[0xdf, 0xe0], Some("fnstsw")),
            (&[0x0f, 0xae, 0x17], Some("ldmxcsr")),
            // Outside the set: xrstor, pxor, cpuid.
            (&[0x0f, 0xae, 0x2f], None),
            (&[0x66, 0x0f, 0xef, 0xc0], None),
            (&[0x0f, 0xa2], None),
        ];
        for (bytes, want) in cases {
            assert_eq!(name_of(&decode64(bytes)), *want, "{bytes:02x?}");
        }
        assert!(matches!(
            decode(&[0x0f, 0xff], 64, 0),
            Err(EmulateError::Decode)
        ));
    }

    #[test]
    fn register_numbering_and_partial_writes() {
        assert_eq!(gpr(Register::RAX), Some((0, 64)));
        assert_eq!(gpr(Register::R15D), Some((15, 32)));
        assert_eq!(gpr(Register::SI), Some((6, 16)));
        assert_eq!(gpr(Register::AL), None);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut cpu = Cpu {
            mem: &mem,
            regs: kvm_regs {
                rbx: u64::MAX,
                rcx: u64::MAX,
                ..Default::default()
            },
            sregs: kvm_sregs::default(),
            mode: PagingMode::default(),
            bits: 64,
            mnemonic: "test",
        };
        cpu.set(Register::EBX, 5).unwrap();
        cpu.set(Register::CX, 7).unwrap();
        assert_eq!(cpu.regs.rbx, 5, "32-bit writes zero-extend");
        assert_eq!(cpu.regs.rcx, 0xffff_ffff_ffff_0007, "16-bit writes merge");
    }

    /// A 64-bit vCPU over identity-mapped memory (paging off), running
    /// decoded instructions through `execute`'s memory paths.
    fn cpu_on(mem: &GuestMemoryMmap) -> Cpu<'_> {
        Cpu {
            mem,
            regs: kvm_regs::default(),
            sregs: kvm_sregs::default(),
            mode: PagingMode::default(),
            bits: 64,
            mnemonic: "test",
        }
    }

    #[test]
    fn memory_operands_read_and_write_guest_memory() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut cpu = cpu_on(&mem);
        // movbe rax, [rdi] with the value straddling a page boundary.
        mem.write_obj(0x1122_3344_5566_7788u64, GuestAddress(0x1ffc))
            .unwrap();
        cpu.regs.rdi = 0x1ffc;
        let ins = decode64(&[0x48, 0x0f, 0x38, 0xf0, 0x07]);
        let bits = cpu.operand_bits(&ins).unwrap();
        let v = cpu.read(&ins, 1, bits).unwrap();
        cpu.write(&ins, 0, bits, alu::byte_swap(bits, v)).unwrap();
        assert_eq!(cpu.regs.rax, 0x8877_6655_4433_2211);
        // popcnt rcx, [rsi+8] with a GS-free 64-bit address.
        mem.write_obj(0xffu64, GuestAddress(0x3008)).unwrap();
        cpu.regs.rsi = 0x3000;
        let ins = decode64(&[0xf3, 0x48, 0x0f, 0xb8, 0x4e, 0x08]);
        assert_eq!(cpu.address(&ins, 1, 8).unwrap(), 0x3008);
        assert_eq!(cpu.read(&ins, 1, 64).unwrap(), 0xff);
        // gs: prefix adds GS.base.
        cpu.sregs.gs.base = 0x1000;
        let ins = decode64(&[0x65, 0xf3, 0x48, 0x0f, 0xb8, 0x4e, 0x08]);
        assert_eq!(cpu.address(&ins, 1, 8).unwrap(), 0x4008);
        // Beyond guest RAM: a clear error, no panic.
        cpu.regs.rsi = 0x1000_0000;
        let e = cpu.read(&ins, 1, 64).unwrap_err();
        assert!(matches!(e, EmulateError::NotRam { .. }), "{e}");
    }

    #[test]
    fn an_unmapped_operand_is_a_page_fault_with_the_address() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut cpu = cpu_on(&mem);
        // Long mode paging with an empty PML4 at 0x1000.
        cpu.mode = PagingMode {
            cr0: 0x8000_0001,
            cr3: 0x1000,
            cr4: 1 << 5,
            efer: EFER_LMA,
        };
        cpu.regs.rdi = 0x7000;
        let ins = decode64(&[0x48, 0x0f, 0x38, 0xf0, 0x07]);
        let e = cpu.read(&ins, 1, 64).unwrap_err();
        assert!(
            matches!(
                e,
                EmulateError::PageFault {
                    gva: 0x7000,
                    error: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("memory operand at 0x7000 page-faults (0x7000 is not mapped"),
            "{e}"
        );
        // A table beyond guest RAM is no page fault: the VM stops.
        cpu.mode.cr3 = 0x4000_0000;
        let e = cpu.read(&ins, 1, 64).unwrap_err();
        assert!(matches!(e, EmulateError::Translate { .. }), "{e}");
    }

    #[test]
    fn a_store_to_a_read_only_page_is_a_protection_fault() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut cpu = cpu_on(&mem);
        mem.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
        mem.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
        mem.write_obj(0x4003u64, GuestAddress(0x3000)).unwrap();
        mem.write_obj(0x9001u64, GuestAddress(0x4000 + 5 * 8))
            .unwrap(); // read-only
        cpu.mode = PagingMode {
            cr0: 0x8001_0001, // PG, WP, PE
            cr3: 0x1000,
            cr4: 1 << 5,
            efer: EFER_LMA,
        };
        mem.write_obj(0x5555u64, GuestAddress(0x9008)).unwrap();
        cpu.regs.rdi = 0x5008;
        // movbe [rdi], rax: #PF with P and W; memory untouched. A load works.
        let ins = decode64(&[0x48, 0x0f, 0x38, 0xf1, 0x07]);
        let e = cpu.write(&ins, 0, 64, 0).unwrap_err();
        assert!(
            matches!(
                e,
                EmulateError::PageFault {
                    gva: 0x5008,
                    error: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x9008)).unwrap(), 0x5555);
        let load = decode64(&[0x48, 0x0f, 0x38, 0xf0, 0x07]);
        assert_eq!(cpu.read(&load, 1, 64).unwrap(), 0x5555);
    }

    #[test]
    fn a_store_that_faults_on_its_second_page_writes_nothing() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut cpu = cpu_on(&mem);
        // 4-level paging: PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT
        // 0x4000; only page 0x5000 (-> 0x9000) is mapped, 0x6000 is not.
        mem.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
        mem.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
        mem.write_obj(0x4003u64, GuestAddress(0x3000)).unwrap();
        mem.write_obj(0x9003u64, GuestAddress(0x4000 + 5 * 8))
            .unwrap();
        cpu.mode = PagingMode {
            cr0: 0x8000_0001,
            cr3: 0x1000,
            cr4: 1 << 5,
            efer: EFER_LMA,
        };
        mem.write_obj(0x1111_1111u32, GuestAddress(0x9ffc)).unwrap();
        // movbe [rdi], rax with rdi = 0x5ffc: 4 bytes on the mapped page,
        // 4 on the unmapped one.
        cpu.regs.rdi = 0x5ffc;
        cpu.regs.rax = u64::MAX;
        let ins = decode64(&[0x48, 0x0f, 0x38, 0xf1, 0x07]);
        let e = cpu.write(&ins, 0, 64, 0).unwrap_err();
        assert!(
            matches!(
                e,
                EmulateError::PageFault {
                    gva: 0x6000,
                    error: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x9ffc)).unwrap(),
            0x1111_1111
        );
        // Within the page it is written.
        cpu.regs.rdi = 0x5ff8;
        cpu.write(&ins, 0, 64, 0x3333_3333_4444_4444).unwrap();
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(0x9ff8)).unwrap(),
            0x3333_3333_4444_4444
        );
    }

    #[test]
    fn a_non_canonical_operand_raises_gp_or_ss() {
        assert!(canonical(0xffff_8000_0000_0000, 48));
        assert!(canonical(0x0000_7fff_ffff_ffff, 48));
        assert!(!canonical(0x0000_8000_0000_0000, 48));
        assert!(canonical(0x0000_8000_0000_0000, 57));
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut cpu = cpu_on(&mem);
        // popcnt rcx, [rsi+8] at a non-canonical address: #GP(0).
        cpu.regs.rsi = 0x0000_8000_0000_0000;
        let ins = decode64(&[0xf3, 0x48, 0x0f, 0xb8, 0x4e, 0x08]);
        assert!(matches!(
            cpu.read(&ins, 1, 64),
            Err(EmulateError::Raise {
                vector: 13,
                error: Some(0)
            })
        ));
        // The last byte crossing the boundary counts too.
        cpu.regs.rsi = 0x0000_7fff_ffff_fff4;
        assert!(matches!(
            cpu.read(&ins, 1, 64),
            Err(EmulateError::Raise { vector: 13, .. })
        ));
        // Through SS (rbp/rsp base): #SS(0).
        cpu.regs.rbp = 0x0000_8000_0000_0000;
        let ins = decode64(&[0xf3, 0x48, 0x0f, 0xb8, 0x4d, 0x08]);
        assert!(matches!(
            cpu.read(&ins, 1, 64),
            Err(EmulateError::Raise { vector: 12, .. })
        ));
    }

    #[test]
    fn locked_cmpxchg16b_swaps_only_on_match() {
        if !std::arch::is_x86_feature_detected!("cmpxchg16b") {
            return;
        }
        #[repr(align(16))]
        struct Cell(u128);
        let mut c = Cell(5);
        let p = std::ptr::from_mut(&mut c.0).cast::<u8>();
        // SAFETY: a live, aligned 16-byte cell.
        assert_eq!(unsafe { locked_cmpxchg16b(p, 4, 9) }, 5);
        assert_eq!(c.0, 5);
        // SAFETY: as above.
        assert_eq!(unsafe { locked_cmpxchg16b(p, 5, 1 << 100) }, 5);
        assert_eq!(c.0, 1 << 100);
    }

    #[test]
    fn xstate_fields_and_header() {
        let mut x = Xstate(kvm_bindings::kvm_xsave::default());
        x.set_u16(FX_FCW, 0x027f);
        x.set_u32(FX_MXCSR, 0x1fa0);
        x.set_u64(FX_FDP, 0x1122_3344_5566_7788);
        x.mark(XSTATE_SSE);
        x.mark(XSTATE_X87);
        assert_eq!(x.u16_at(FX_FCW), 0x027f);
        assert_eq!(x.u32_at(FX_MXCSR), 0x1fa0);
        assert_eq!(x.0.region[0], 0x027f, "FCW is the first 16 bits");
        assert_eq!(x.0.region[6], 0x1fa0, "MXCSR at byte 24");
        assert_eq!(x.0.region[4], 0x5566_7788);
        assert_eq!(x.0.region[128], 3, "XSTATE_BV at byte 512");
    }

    #[test]
    fn locked_cmpxchg16b_is_atomic_across_threads() {
        if !std::arch::is_x86_feature_detected!("cmpxchg16b") {
            return;
        }
        #[repr(align(16))]
        struct Cell(std::cell::UnsafeCell<u128>);
        // SAFETY: only accessed through the locked instruction below.
        unsafe impl Sync for Cell {}
        let cell = std::sync::Arc::new(Cell(std::cell::UnsafeCell::new(0)));
        const PER_THREAD: u128 = 20_000;
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    let p = cell.0.get().cast::<u8>();
                    for _ in 0..PER_THREAD {
                        // A compare-and-swap loop, as a guest would use it:
                        // each increment adds 1 to both halves.
                        // SAFETY: a live, aligned 16-byte cell.
                        let mut seen = unsafe { locked_cmpxchg16b(p, 0, 0) };
                        loop {
                            let next = seen + ((1u128 << 64) | 1);
                            // SAFETY: as above.
                            let prev = unsafe { locked_cmpxchg16b(p, seen, next) };
                            if prev == seen {
                                break;
                            }
                            seen = prev;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: the threads are done.
        let v = unsafe { *cell.0.get() };
        assert_eq!(
            v,
            ((2 * PER_THREAD) << 64) | (2 * PER_THREAD),
            "lost updates"
        );
    }

    use proptest::prelude::*;

    /// Opcode stems of the integer set, followed by random bytes (ModRM,
    /// SIB, displacement, immediates).
    const STEMS: &[&[u8]] = &[
        &[0xcc],
        &[0xf3, 0x48, 0x0f, 0xb8],
        &[0xf3, 0x0f, 0xb8],
        &[0x66, 0xf3, 0x0f, 0xbd],
        &[0xf3, 0x0f, 0xbc],
        &[0xc4, 0xe2, 0xf8, 0xf2],
        &[0xc4, 0xe2, 0x78, 0xf7],
        &[0xc4, 0xe2, 0xf0, 0xf3],
        &[0xc4, 0xe2, 0xf8, 0xf5],
        &[0xc4, 0xe2, 0xf3, 0xf6],
        &[0xc4, 0xe2, 0xf3, 0xf5],
        &[0xc4, 0xe2, 0xf2, 0xf5],
        &[0xc4, 0xe3, 0xfb, 0xf0],
        &[0xc4, 0xe2, 0xfa, 0xf7],
        &[0xc4, 0xe2, 0xf9, 0xf7],
        &[0xc4, 0xe2, 0xfb, 0xf7],
        &[0x48, 0x0f, 0x38, 0xf0],
        &[0x66, 0x0f, 0x38, 0xf1],
        &[0xf0, 0x48, 0x0f, 0xc7],
        &[0x65, 0x48, 0x0f, 0xc7],
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Whatever the guest's registers, page tables and bytes, the
        /// integer paths return a result or an error: no panic, and memory
        /// outside guest RAM is never touched.
        #[test]
        fn hostile_operands_and_tables_do_not_panic(
            stem in 0usize..STEMS.len(),
            tail in proptest::collection::vec(any::<u8>(), 11),
            gprs in proptest::collection::vec(
                prop_oneof![any::<u64>(), 0u64..0x10_0000, Just(0x0000_8000_0000_0000u64)],
                16,
            ),
            cr0 in prop_oneof![Just(0u64), Just(0x8001_0001u64), any::<u64>()],
            cr3 in prop_oneof![0u64..0x10_0000, any::<u64>()],
            cr4 in any::<u64>(),
            efer in prop_oneof![Just(EFER_LMA), any::<u64>()],
            bits in prop_oneof![Just(64u32), Just(32u32), Just(16u32)],
            tables in proptest::collection::vec((0u64..0x200, any::<u64>()), 0..64),
        ) {
            let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
            for (slot, v) in tables {
                mem.write_obj(v, GuestAddress(((cr3 & 0xf_f000) + slot * 8) & 0xf_fff8)).unwrap();
            }
            let mut bytes = STEMS[stem].to_vec();
            bytes.extend_from_slice(&tail);
            let Ok(ins) = decode(&bytes, bits, 0x1000) else {
                return Ok(());
            };
            if name_of(&ins).is_none() {
                return Ok(());
            }
            let mut cpu = cpu_on(&mem);
            for (i, v) in gprs.iter().enumerate() {
                *gpr_mut(&mut cpu.regs, i) = *v;
            }
            cpu.bits = bits;
            cpu.sregs.cs.l = u8::from(bits == 64);
            cpu.sregs.cs.db = u8::from(bits == 32);
            cpu.sregs.gs.base = gprs[3];
            cpu.mode = PagingMode { cr0, cr3, cr4, efer };
            let _ = execute_integer(&mut cpu, &ins);
        }
    }

    #[test]
    fn counts_are_per_mnemonic() {
        let c = EmulatedCounts::default();
        c.record("int3");
        c.record("popcnt");
        c.record("int3");
        let s = c.snapshot();
        assert_eq!(s.get("int3"), Some(&2));
        assert_eq!(s.get("popcnt"), Some(&1));
        assert_eq!(s.len(), 2);
    }
}
