//! What the fuzz targets share: a reader that turns the fuzzer's bytes into
//! values (running out of input reads zeros, never fails), small guest
//! memories, an interrupt sink that only counts, and a guest VT-d driver's
//! set-up that points the unit's tables, queues and page tables into the
//! memory the fuzzer then scribbles over.
//!
//! Nothing here checks results: a target passes when the code under test
//! neither panics, hangs, nor grows without bound (libFuzzer's `-timeout`
//! and `-rss_limit_mb` catch the last two).

use std::sync::atomic::{AtomicU64, Ordering};

use devices::interrupt::{InterruptSink, MsiMessage};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The fuzzer's input, consumed front to back.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn fixed<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let src = self.bytes(N);
        b[..src.len()].copy_from_slice(src);
        b
    }

    /// A byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        self.fixed::<1>()[0]
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.fixed())
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.fixed())
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.fixed())
    }

    /// A flag (lowest bit of a byte).
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// A value below `n` (`n` > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        self.u32() % n.max(1)
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let i = self.u16() as usize % items.len().max(1);
        items[i]
    }
}

/// Guest memory of `size` bytes at GPA 0, zeroed.
pub fn memory(size: usize) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).expect("fuzz memory")
}

/// Guest memory of `size` bytes at GPA 0 plus a second region of `size`
/// bytes at 4 GiB (so accesses also meet a hole and a region end).
pub fn memory_with_hole(size: usize) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size), (GuestAddress(1 << 32), size)])
        .expect("fuzz memory")
}

/// Writes `v` at `gpa` if it is backed (fuzzers aim anywhere).
pub fn poke(mem: &GuestMemoryMmap, gpa: u64, v: u64) {
    let _ = mem.write_obj(v, GuestAddress(gpa));
}

/// An interrupt sink that counts and drops.
#[derive(Debug, Default)]
pub struct CountingSink {
    /// MSIs raised.
    pub msis: AtomicU64,
    /// Line changes.
    pub lines: AtomicU64,
}

impl InterruptSink for CountingSink {
    fn raise_msi(&self, _msi: MsiMessage) {
        self.msis.fetch_add(1, Ordering::Relaxed);
    }

    fn set_irq_line(&self, _gsi: u32, _level: bool) {
        self.lines.fetch_add(1, Ordering::Relaxed);
    }
}

/// A guest VT-d driver's set-up, at fixed pages of a small memory.
pub mod vtd {
    use super::poke;
    use viommu::regs;
    use vm_memory::GuestMemoryMmap;

    /// Memory the vIOMMU targets use (1 MiB).
    pub const MEM_SIZE: u64 = 0x10_0000;
    /// Scalable-mode root table.
    pub const ROOT: u64 = 0x1000;
    /// Context table of bus 0.
    pub const CONTEXT: u64 = 0x2000;
    /// PASID directory shared by every device.
    pub const PASID_DIR: u64 = 0x3000;
    /// PASID table for PASIDs 0..63.
    pub const PASID_TABLE: u64 = 0x4000;
    /// Invalidation queue (one page, 256-bit descriptors: 128 slots).
    pub const IQ: u64 = 0x5000;
    /// Bytes in the invalidation queue.
    pub const IQ_BYTES: u64 = 0x1000;
    /// Page-request queue (one page).
    pub const PRQ: u64 = 0x6000;
    /// Invalidation-wait status area.
    pub const STATUS: u64 = 0x7000;
    /// First-stage PML4 of PASID 1..63.
    pub const PML4: u64 = 0x10000;
    /// Requester the context table is filled for: every devfn of bus 0.
    pub const DEVFNS: u64 = 256;

    /// Register accesses the set-up makes, in order (offset, bytes).
    pub fn register_writes() -> Vec<(u64, Vec<u8>)> {
        let w32 = |o: u64, v: u32| (o, v.to_le_bytes().to_vec());
        let w64 = |o: u64, v: u64| (o, v.to_le_bytes().to_vec());
        vec![
            w32(regs::FEDATA, 0x51),
            w32(regs::FEADDR, 0xfee0_0000),
            w32(regs::FECTL, 0),
            w64(regs::RTADDR, ROOT | (1 << 10)),
            w32(regs::GCMD, regs::gcmd::SRTP),
            w64(regs::IQT, 0),
            w64(regs::IQA, IQ | (1 << 11)),
            w32(regs::GCMD, regs::gcmd::QIE),
            w64(regs::PQH, 0),
            w64(regs::PQT, 0),
            w64(regs::PQA, PRQ),
            w32(regs::PEDATA, 0x52),
            w32(regs::PEADDR, 0xfee0_0000),
            w32(regs::PECTL, 0),
            w32(regs::GCMD, regs::gcmd::QIE | regs::gcmd::TE),
        ]
    }

    /// Writes tables giving every devfn of bus 0 a scalable-mode context
    /// entry (PASID, PRE, DTE) with PASID 0 pass-through and PASIDs 1..63
    /// bound (first-stage, SRE, DID 2) to [`PML4`], which is left empty for
    /// the fuzzer to fill.
    pub fn write_tables(mem: &GuestMemoryMmap) {
        poke(mem, ROOT, CONTEXT | 1);
        for devfn in 0..128 {
            poke(
                mem,
                CONTEXT + devfn * 32,
                PASID_DIR | (1 << 4) | (1 << 3) | (1 << 2) | 1,
            );
        }
        // The upper half of the root entry (devfn 128..255) reuses the
        // same context table.
        poke(mem, ROOT + 8, CONTEXT | 1);
        poke(mem, PASID_DIR, PASID_TABLE | 1);
        poke(mem, PASID_TABLE + 8, 1);
        poke(mem, PASID_TABLE, 1 | (4 << 6));
        for pasid in 1..64u64 {
            let pe = PASID_TABLE + pasid * 64;
            poke(mem, pe + 8, 2);
            poke(mem, pe + 16, PML4 | 1);
            poke(mem, pe, 1 | (1 << 6));
        }
    }

    /// A page-table entry pointing at page `page` of the fuzz memory with
    /// the low flag bits `flags` (and XD if asked): the walker's favourite
    /// food, so the fuzzer need not guess addresses that land in memory.
    pub fn entry(page: u8, flags: u16, xd: bool) -> u64 {
        let mut v = (u64::from(page) << 12) | u64::from(flags & 0xfff);
        if xd {
            v |= 1 << 63;
        }
        v
    }
}

/// The devices a guest reaches, wired by the platform builder the vmm uses
/// (`devices::platform::build`, without KVM): the PCIe root (host bridge,
/// ECAM, 0xcf8, BAR window), virtio-console, virtio-blk and virtio-rng
/// DMAing through the vIOMMU, one SVA device, the vIOMMU's register block,
/// and the port devices (COM1, i8042, debug-exit, the hint port and the
/// ACPI power-off port).
pub mod platform {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex, OnceLock};

    use devices::bus::Bus;
    use devices::interrupt::InterruptSink;
    use devices::layout::{BAR_WINDOW_BASE, ECAM_BASE, VIOMMU_MMIO_BASE};
    use devices::legacy::ShutdownSignal;
    use devices::legacy::serial::{IrqTrigger, Serial};
    use devices::pci::root::PciRoot;
    use devices::platform::PlatformDevices;
    use devices::sva::SvaDevice;
    use devices::virtio::blk::Block;
    use devices::virtio::console::Console;
    use devices::virtio::rng::Rng;
    use viommu::Viommu;
    use vm_memory::GuestMemoryMmap;
    use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

    use super::CountingSink;

    /// PCI device numbers (the platform map, `devices::layout`).
    pub const CONSOLE: u8 = devices::layout::VIRTIO_CONSOLE_DEVICE;
    /// virtio-blk.
    pub const BLOCK: u8 = devices::layout::VIRTIO_BLK_DEVICE;
    /// virtio-rng.
    pub const RNG: u8 = devices::layout::VIRTIO_RNG_DEVICE;
    /// The SVA device.
    pub const SVA: u8 = devices::layout::SVA_FIRST_DEVICE;
    /// Every device number in use (0 is the host bridge).
    pub const NUMBERS: [u8; 5] = [
        devices::layout::HOST_BRIDGE_DEVICE,
        CONSOLE,
        BLOCK,
        RNG,
        SVA,
    ];

    /// The wired platform.
    #[derive(Debug)]
    pub struct Platform {
        /// Guest memory.
        pub mem: GuestMemoryMmap,
        /// The vIOMMU.
        pub viommu: Arc<Mutex<Viommu>>,
        /// The root complex.
        pub root: Arc<PciRoot>,
        /// MMIO bus (ECAM, BAR window, vIOMMU registers).
        pub mmio: Bus,
        /// Port bus (COM1, i8042, debug-exit, 0xcf8, hint, ACPI PM).
        pub pio: Bus,
        /// Where interrupts go.
        pub sink: Arc<CountingSink>,
        /// The SVA device.
        pub sva: Arc<Mutex<SvaDevice<GuestMemoryMmap>>>,
    }

    impl Platform {
        /// Programs the vIOMMU the way its driver would
        /// ([`super::vtd::register_writes`]), through the MMIO bus.
        pub fn program_viommu(&self) {
            for (off, bytes) in super::vtd::register_writes() {
                self.mmio.write(VIOMMU_MMIO_BASE + off, &bytes);
            }
        }
    }

    /// A 64 KiB read-only disk image, made once per process.
    fn disk() -> PathBuf {
        static PATH: OnceLock<PathBuf> = OnceLock::new();
        PATH.get_or_init(|| {
            let p = std::env::temp_dir()
                .join(format!("stalewalk-fuzz-disk-{}.img", std::process::id()));
            let image: Vec<u8> = (0..0x1_0000u32).map(|i| (i % 251) as u8).collect();
            std::fs::write(&p, image).expect("fuzz disk image");
            p
        })
        .clone()
    }

    /// Builds the platform over `mem`.
    pub fn build(mem: GuestMemoryMmap) -> Platform {
        let sink = Arc::new(CountingSink::default());
        let dyn_sink: Arc<dyn InterruptSink> = sink.clone();
        let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let devices = PlatformDevices {
            viommu: Some(viommu::Config::default()),
            events: None,
            sva_devices: 1,
            serial: Serial::new(IrqTrigger(irq), Box::new(std::io::sink())),
            virtio_console: Some(Console::new(Box::new(std::io::sink()))),
            virtio_blk: Some(Block::open(&disk(), true).expect("disk image")),
            virtio_rng: Some(Rng::with_source(Box::new(std::io::repeat(0xa5)))),
        };
        let (buses, platform) =
            devices::platform::build(devices, &mem, dyn_sink, Arc::new(ShutdownSignal::new()))
                .expect("the fuzz platform");
        Platform {
            mem,
            viommu: platform.viommu.clone().expect("the vIOMMU is on"),
            root: platform.root.clone(),
            mmio: buses.mmio,
            pio: buses.pio,
            sink,
            sva: platform.sva[0].device.clone(),
        }
    }

    impl Platform {
        /// A 32-bit ECAM config write to device `number` (bus 0, function 0).
        pub fn config_write32(&self, number: u8, offset: u16, v: u32) {
            self.mmio.write(ecam(number, offset), &v.to_le_bytes());
        }

        /// A 32-bit ECAM config read.
        pub fn config_read32(&self, number: u8, offset: u16) -> u32 {
            let mut b = [0u8; 4];
            self.mmio.read(ecam(number, offset), &mut b);
            u32::from_le_bytes(b)
        }

        /// Where BAR 0 of device `number` is (memory decoding on or not).
        pub fn bar0(&self, number: u8) -> u64 {
            self.root.bar_address(number, 0).unwrap_or(BAR_WINDOW_BASE)
        }

        /// Turns on memory decoding and bus mastering of device `number`.
        pub fn enable(&self, number: u8) {
            let cmd = self.config_read32(number, 4) & 0xffff;
            self.config_write32(number, 4, cmd | 0x6);
        }
    }

    /// The ECAM address of `offset` in device `number`'s config space.
    pub fn ecam(number: u8, offset: u16) -> u64 {
        ECAM_BASE + (u64::from(number) << 15) + u64::from(offset & 0xfff)
    }
}
