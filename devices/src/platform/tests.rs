//! The built platform as a guest reaches it: every device at its address
//! in the platform map, and a virtio-rng driven through the buses whose
//! counters say what it did.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::*;
use crate::layout::{I8042_COMMAND_PORT, requester_id};
use crate::legacy::ShutdownReason;
use crate::legacy::serial::IrqTrigger;
use crate::pci::msix::tests::RecordingSink;
use crate::virtio::transport::{
    NOTIFY_OFFSET, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
};

const MEM: usize = 0x40_0000;
const DESC: u64 = 0x10_0000;
const AVAIL: u64 = 0x10_1000;
const USED: u64 = 0x10_2000;
const DATA: u64 = 0x20_0000;
const QSIZE: u16 = 8;

fn serial() -> Serial {
    Serial::new(
        IrqTrigger(EventFd::new(EFD_NONBLOCK).unwrap()),
        Box::new(std::io::sink()),
    )
}

fn devices() -> PlatformDevices {
    PlatformDevices {
        viommu: Some(viommu::Config::default()),
        events: None,
        sva_devices: 2,
        serial: serial(),
        virtio_console: None,
        virtio_blk: None,
        virtio_rng: None,
    }
}

struct Rig {
    mem: GuestMemoryMmap,
    buses: Buses,
    platform: Platform,
    shutdown: Arc<ShutdownSignal>,
}

fn rig(devices: PlatformDevices) -> Rig {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let shutdown = Arc::new(ShutdownSignal::new());
    let (buses, platform) = build(
        devices,
        &mem,
        Arc::new(RecordingSink::default()),
        shutdown.clone(),
    )
    .unwrap();
    Rig {
        mem,
        buses,
        platform,
        shutdown,
    }
}

impl Rig {
    fn ecam(number: u8, offset: u64) -> u64 {
        ECAM_BASE + (u64::from(number) << 15) + offset
    }

    fn config_read32(&self, number: u8, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        assert!(self.buses.mmio.read(Self::ecam(number, offset), &mut b));
        u32::from_le_bytes(b)
    }

    fn config_write16(&self, number: u8, offset: u64, v: u16) {
        assert!(
            self.buses
                .mmio
                .write(Self::ecam(number, offset), &v.to_le_bytes())
        );
    }

    /// BAR 0 of `number`, with memory decoding and bus mastering on.
    fn bar0(&self, number: u8) -> u64 {
        self.config_write16(number, 4, 0x6);
        u64::from(self.config_read32(number, 0x10) & !0xf)
    }
}

#[test]
fn devices_sit_at_the_platform_map() {
    let r = rig(devices());
    // Host bridge and both SVA devices answer on ECAM; nothing else does.
    assert_ne!(r.config_read32(0, 0) & 0xffff, 0xffff);
    for number in [SVA_FIRST_DEVICE, SVA_FIRST_DEVICE + 1] {
        assert_ne!(r.config_read32(number, 0) & 0xffff, 0xffff, "{number}");
    }
    assert_eq!(r.config_read32(SVA_FIRST_DEVICE + 2, 0), u32::MAX);
    assert_eq!(r.config_read32(VIRTIO_RNG_DEVICE, 0), u32::MAX);
    // The legacy configuration ports reach the same space.
    let mut id = [0u8; 4];
    assert!(
        r.buses
            .pio
            .write(CONFIG_IO_PORT, &0x8000_0000u32.to_le_bytes())
    );
    assert!(r.buses.pio.read(CONFIG_IO_PORT + 4, &mut id));
    assert_eq!(u32::from_le_bytes(id), r.config_read32(0, 0));
    // The vIOMMU's version register.
    let mut ver = [0u8; 4];
    assert!(r.buses.mmio.read(VIOMMU_MMIO_BASE, &mut ver));
    assert_ne!(u32::from_le_bytes(ver), 0);
    // The hint port counts.
    assert!(
        r.buses
            .pio
            .write(u64::from(HINT_PORT), &0x123u32.to_le_bytes())
    );
    assert_eq!(r.platform.hint_counters().hints, 1);
    // COM1 decodes its ports.
    let mut lsr = [0u8];
    assert!(r.buses.pio.read(u64::from(COM1_PORT) + 5, &mut lsr));
    assert_eq!(r.platform.sva.len(), 2);
    assert_eq!(r.platform.sva[1].number, SVA_FIRST_DEVICE + 1);
    // The i8042 command port resets.
    assert!(r.buses.pio.write(u64::from(I8042_COMMAND_PORT), &[0xfe]));
    assert_eq!(r.shutdown.requested(), Some(ShutdownReason::Reset));
}

#[test]
fn debug_exit_and_acpi_power_off_reach_the_shutdown_signal() {
    let r = rig(devices());
    assert!(r.buses.pio.write(u64::from(DEBUG_EXIT_PORT), &[7, 0, 0, 0]));
    assert!(matches!(
        r.shutdown.requested(),
        Some(ShutdownReason::DebugExit(_))
    ));
    let r = rig(devices());
    assert!(r.buses.pio.write(u64::from(SLEEP_CONTROL_PORT), &[0x34]));
    assert_eq!(r.shutdown.requested(), Some(ShutdownReason::PowerOff));
}

#[test]
fn without_a_viommu_nothing_decodes_its_registers() {
    let r = rig(PlatformDevices {
        viommu: None,
        ..devices()
    });
    assert!(r.platform.viommu.is_none());
    let mut b = [0u8; 4];
    assert!(!r.buses.mmio.read(VIOMMU_MMIO_BASE, &mut b));
}

#[test]
fn reject_more_sva_devices_than_bus_0_holds() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let e = build(
        PlatformDevices {
            sva_devices: MAX_SVA_DEVICES + 1,
            ..devices()
        },
        &mem,
        Arc::new(RecordingSink::default()),
        Arc::new(ShutdownSignal::new()),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "--sva-dev 29: at most 28 SVA devices fit on bus 0"
    );
}

/// The report's virtio-rng figures (issue 18): a guest driver reads known
/// bytes through the device on the built platform; the slot's counters
/// say how many requests and bytes, by name.
#[test]
fn virtio_rng_counters_match_what_the_guest_read() {
    let known: Vec<u8> = (0..=255u8).rev().collect();
    let r = rig(PlatformDevices {
        virtio_rng: Some(Rng::with_source(Box::new(std::io::Cursor::new(
            known.clone(),
        )))),
        ..devices()
    });
    let n = VIRTIO_RNG_DEVICE;
    let bar = r.bar0(n);
    let w = |off: u64, data: &[u8]| assert!(r.buses.mmio.write(bar + off, data));
    w(0x14, &[STATUS_ACKNOWLEDGE | STATUS_DRIVER]);
    w(0x08, &1u32.to_le_bytes());
    w(0x0c, &3u32.to_le_bytes()); // VERSION_1, ACCESS_PLATFORM
    w(
        0x14,
        &[STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK],
    );
    w(0x16, &0u16.to_le_bytes());
    w(0x18, &QSIZE.to_le_bytes());
    w(0x20, &DESC.to_le_bytes());
    w(0x28, &AVAIL.to_le_bytes());
    w(0x30, &USED.to_le_bytes());
    w(0x1c, &1u16.to_le_bytes());
    w(
        0x14,
        &[STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK],
    );
    // Two device-writable buffers, one request each: 48 and 16 bytes.
    let bufs = [(DATA, 48u32), (DATA + 0x1000, 16u32)];
    for (i, (addr, len)) in bufs.iter().enumerate() {
        let d = DESC + 16 * i as u64;
        r.mem.write_obj(*addr, GuestAddress(d)).unwrap();
        r.mem.write_obj(*len, GuestAddress(d + 8)).unwrap();
        r.mem.write_obj(2u16, GuestAddress(d + 12)).unwrap(); // WRITE
        r.mem
            .write_obj(
                u16::try_from(i).unwrap(),
                GuestAddress(AVAIL + 4 + 2 * i as u64),
            )
            .unwrap();
    }
    r.mem.write_obj(2u16, GuestAddress(AVAIL + 2)).unwrap();
    w(NOTIFY_OFFSET, &0u16.to_le_bytes());

    let used: u16 = r.mem.read_obj(GuestAddress(USED + 2)).unwrap();
    assert_eq!(used, 2);
    let mut got = vec![0u8; 64];
    r.mem
        .read_slice(&mut got[..48], GuestAddress(DATA))
        .unwrap();
    r.mem
        .read_slice(&mut got[48..], GuestAddress(DATA + 0x1000))
        .unwrap();
    assert_eq!(got, known[..64]);

    let slot = &r.platform.virtio[0];
    assert_eq!(requester_id(slot.number()), 0x18);
    let m = slot.metrics();
    assert_eq!(m.kind, "rng");
    let v = serde_json::to_value(m).unwrap();
    assert_eq!(v["device_counters"]["requests"], 2, "{v}");
    assert_eq!(v["device_counters"]["bytes"], 64, "{v}");
    assert_eq!(v["device_counters"]["rejected_guest_actions"], 0, "{v}");
    assert_eq!(v["transport"]["notifications"], 1, "{v}");
}
