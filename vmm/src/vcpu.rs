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

use crate::emulate::{self, EmulatedCounts, RegAccess, SUBERROR_EMULATION};
use crate::gva;

/// Instruction bytes shown when KVM cannot emulate an instruction (the
/// longest x86 instruction is 15 bytes).
pub const INSN_BYTES: usize = emulate::INSN_BYTES;

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
    /// Run the instructions KVM's emulator cannot, from the set in
    /// [`emulate`] (`--emulate-in-vmm`).
    pub emulate: bool,
    /// What the VMM emulated, per mnemonic.
    pub emulated: EmulatedCounts,
    /// KVM offers synced registers in `kvm_run` (`KVM_CAP_SYNC_REGS`):
    /// emulation then reads and writes registers without ioctls.
    pub sync_regs: bool,
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
        /// Why the VMM did not run it either (with `--emulate-in-vmm on`).
        note: Option<String>,
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

/// KVM's suberror of the internal-error exit just taken.
fn suberror(fd: &mut VcpuFd) -> u32 {
    // SAFETY: KVM filled the `internal` member of the exit union, since the
    // exit reason is KVM_EXIT_INTERNAL_ERROR; it is plain data.
    unsafe { fd.get_kvm_run().__bindgen_anon_1.internal.suberror }
}

fn internal_error(fd: &mut VcpuFd, mem: &GuestMemoryMmap, note: Option<String>) -> VcpuStop {
    let suberror = suberror(fd);
    let regs = fd.get_regs().unwrap_or_default();
    let bytes = match fd.get_sregs() {
        Ok(s) => gva::read_bytes(
            mem,
            &emulate::paging_mode(&s),
            emulate::linear_rip(&regs, &s),
            INSN_BYTES,
        ),
        Err(_) => Vec::new(),
    };
    VcpuStop::InternalError {
        suberror,
        rip: regs.rip,
        bytes,
        note,
    }
}

/// An internal-error exit: with `--emulate-in-vmm on`, an emulation
/// failure on an instruction of the set is handled and the vCPU runs on
/// (`None`); anything else stops it.
fn on_internal_error(fd: &mut VcpuFd, shared: &VcpuShared) -> Option<VcpuStop> {
    if !shared.emulate || suberror(fd) != SUBERROR_EMULATION {
        return Some(internal_error(fd, &shared.mem, None));
    }
    let access = if shared.sync_regs {
        RegAccess::Synced
    } else {
        RegAccess::Ioctls
    };
    match emulate::emulate(fd, &shared.mem, access) {
        Ok(mnemonic) => {
            shared.emulated.record(mnemonic);
            None
        }
        Err(e) => Some(internal_error(fd, &shared.mem, Some(e.to_string()))),
    }
}

/// The most data one I/O-port exit carries: KVM stages it in one page of
/// the kvm_run mapping (KVM_PIO_PAGE_OFFSET).
const PIO_DATA_MAX: usize = 4096;

/// One I/O-port exit (`out`/`in`, or a string form such as `rep outsb`):
/// KVM hands over `count` elements of `size` bytes, and each is one access
/// of the port, in order. (The exit's byte slice alone would hand a device
/// all of a `rep outsb` at once, and a 1-byte register keeps only its first
/// byte.) Returns whether the guest wrote.
fn port_io(fd: &mut VcpuFd, shared: &VcpuShared, out: bool) -> bool {
    let run = fd.get_kvm_run();
    // SAFETY: called only right after KVM_RUN returned KVM_EXIT_IO (the
    // caller matched VcpuExit::IoIn/IoOut), so `io` is the member of the
    // exit union the kernel filled in; it is plain data.
    let io = unsafe { run.__bindgen_anon_1.io };
    let size = usize::from(io.size);
    let len = usize::try_from(io.count)
        .ok()
        .and_then(|c| c.checked_mul(size))
        .filter(|&l| l <= PIO_DATA_MAX);
    let offset = usize::try_from(io.data_offset)
        .ok()
        .filter(|&o| o >= std::mem::size_of::<kvm_bindings::kvm_run>());
    let (Some(len), Some(offset), 1 | 2 | 4) = (len, offset, size) else {
        shared.unclaimed.fetch_add(1, Ordering::Relaxed);
        return out;
    };
    let base: *mut u8 = std::ptr::from_mut(run).cast();
    // SAFETY: the kernel stages the `count * size` data bytes at
    // `data_offset` inside this vCPU's kvm_run mapping (the PIO page),
    // which lives as long as `fd`; this is the slice kvm-ioctls builds for
    // VcpuExit::IoIn/IoOut, whose borrow has ended. The length was checked
    // against the one page KVM uses.
    let data = unsafe { std::slice::from_raw_parts_mut(base.add(offset), len) };
    let port = u64::from(io.port);
    for element in data.chunks_mut(size) {
        let claimed = if out {
            shared.pio.write(port, element)
        } else {
            shared.pio.read(port, element)
        };
        if !claimed {
            if !out {
                element.fill(0xff);
            }
            shared.unclaimed.fetch_add(1, Ordering::Relaxed);
        }
    }
    out
}

/// Runs vCPU `fd` until it stops.
pub fn run(mut fd: VcpuFd, shared: &VcpuShared) -> VcpuStop {
    if shared.emulate && shared.sync_regs {
        emulate::enable_sync_regs(&mut fd);
    }
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return VcpuStop::Stopped;
        }
        let wrote = match fd.run() {
            // Port I/O is handled from kvm_run itself, which gives the
            // element size that string forms need (see port_io).
            Ok(VcpuExit::IoOut(..)) => port_io(&mut fd, shared, true),
            Ok(VcpuExit::IoIn(..)) => port_io(&mut fd, shared, false),
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
            Ok(VcpuExit::InternalError) => match on_internal_error(&mut fd, shared) {
                Some(stop) => return stop,
                None => false,
            },
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
