//! The vCPU run loop: one thread per vCPU runs `KVM_RUN` and dispatches
//! port-I/O and MMIO exits to the buses until the guest ends the run, an
//! error stops it, or the VM asks it to stop (a flag, and a signal that
//! interrupts `KVM_RUN`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use devices::bus::Bus;
use devices::legacy::{ShutdownReason, ShutdownSignal};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;

use crate::gva::{self, PagingMode};

/// Instruction bytes shown when KVM cannot emulate an instruction (the
/// longest x86 instruction is 15 bytes).
pub const INSN_BYTES: usize = 15;

/// What the vCPU threads share.
#[derive(Debug)]
pub struct VcpuShared {
    /// Port-I/O devices.
    pub pio: Bus,
    /// MMIO devices.
    pub mmio: Bus,
    /// Set by the devices that end the run.
    pub shutdown: Arc<ShutdownSignal>,
    /// Set by the VM when every vCPU must stop.
    pub stop: AtomicBool,
    /// Guest memory (for diagnostics).
    pub mem: GuestMemoryMmap,
    /// Port or MMIO accesses no device claimed.
    pub unclaimed: AtomicU64,
}

/// Why a vCPU thread ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VcpuStop {
    /// A device recorded a shutdown request.
    Shutdown(ShutdownReason),
    /// The VM asked this vCPU to stop (another vCPU ended the run).
    Stopped,
    /// `KVM_EXIT_SHUTDOWN`: the guest triple-faulted.
    TripleFault {
        /// RIP at the time.
        rip: u64,
    },
    /// `KVM_EXIT_INTERNAL_ERROR`.
    InternalError {
        /// KVM's suberror (1: emulation failure).
        suberror: u32,
        /// RIP of the instruction.
        rip: u64,
        /// The instruction's bytes, read through the guest page tables.
        bytes: Vec<u8>,
    },
    /// The VMM got SIGINT or SIGTERM (set by the VM thread, not a vCPU).
    Signal(i32),
    /// The run reached `--timeout` (set by the VM thread, not a vCPU).
    TimedOut,
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry {
        /// Hardware reason.
        reason: u64,
    },
    /// The guest halted with interrupts that can never arrive (only without
    /// an in-kernel irqchip).
    Halted,
    /// An exit the VMM does not handle.
    Unexpected(String),
    /// `KVM_RUN` failed.
    RunFailed(String),
}

fn rip(fd: &VcpuFd) -> u64 {
    fd.get_regs().map(|r| r.rip).unwrap_or(0)
}

fn internal_error(fd: &mut VcpuFd, mem: &GuestMemoryMmap) -> VcpuStop {
    // SAFETY: KVM filled the `internal` member of the exit union, since the
    // exit reason is KVM_EXIT_INTERNAL_ERROR; it is plain data.
    let suberror = unsafe { fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
    let regs = fd.get_regs().unwrap_or_default();
    let bytes = match fd.get_sregs() {
        Ok(s) => {
            let mode = PagingMode {
                cr0: s.cr0,
                cr3: s.cr3,
                cr4: s.cr4,
                efer: s.efer,
            };
            // In long mode CS.base is ignored; elsewhere it is added.
            let lin = if s.efer & (1 << 10) != 0 {
                regs.rip
            } else {
                s.cs.base.wrapping_add(regs.rip)
            };
            gva::read_bytes(mem, &mode, lin, INSN_BYTES)
        }
        Err(_) => Vec::new(),
    };
    VcpuStop::InternalError {
        suberror,
        rip: regs.rip,
        bytes,
    }
}

/// Runs vCPU `fd` until it stops.
pub fn run(mut fd: VcpuFd, shared: &VcpuShared) -> VcpuStop {
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return VcpuStop::Stopped;
        }
        let wrote = match fd.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                if !shared.pio.write(u64::from(port), data) {
                    shared.unclaimed.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                if !shared.pio.read(u64::from(port), data) {
                    data.fill(0xff);
                    shared.unclaimed.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if !shared.mmio.write(addr, data) {
                    shared.unclaimed.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !shared.mmio.read(addr, data) {
                    data.fill(0xff);
                    shared.unclaimed.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
            Ok(VcpuExit::Shutdown) => return VcpuStop::TripleFault { rip: rip(&fd) },
            Ok(VcpuExit::InternalError) => return internal_error(&mut fd, &shared.mem),
            Ok(VcpuExit::FailEntry(reason, _)) => return VcpuStop::FailEntry { reason },
            Ok(VcpuExit::SystemEvent(_, _)) => return VcpuStop::Shutdown(ShutdownReason::Reset),
            Ok(VcpuExit::Hlt) => return VcpuStop::Halted,
            Ok(VcpuExit::Intr) => false,
            Ok(other) => return VcpuStop::Unexpected(format!("{other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => false,
            Err(e) => return VcpuStop::RunFailed(e.to_string()),
        };
        if wrote {
            if let Some(reason) = shared.shutdown.requested() {
                return VcpuStop::Shutdown(reason);
            }
        }
    }
}
