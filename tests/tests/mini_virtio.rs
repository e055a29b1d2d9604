//! virtio-blk through the vIOMMU (issue 4): the mini guest finds the DMAR
//! unit and the PCI devices through ACPI, turns translation on, writes a
//! pattern to the disk through its first-stage DMA domain and reads it
//! back; the host checks the image file afterwards.

#[path = "mini_support/mod.rs"]
mod mini_support;

use mini_support::{MiniRun, run_mini};
use stalewalk_integration::DiskImage;

const SECTOR: u64 = 8;
const IMAGE_SIZE: usize = 1 << 20;

/// Byte `i` of the 4 KiB the guest writes (scenarios/virtio_blk.c).
fn pattern(i: usize) -> u8 {
    (i ^ (i >> 8) ^ 0xa5).to_le_bytes()[0]
}

#[test]
fn virtio_blk_writes_and_reads_back_through_the_viommu() {
    let img = DiskImage::new("virtio-rw", IMAGE_SIZE);
    let r = run_mini(
        "virtio_blk_writes_and_reads_back_through_the_viommu",
        &MiniRun {
            cmdline: "scenario=virtio-blk",
            sva_devices: 0,
            disk: Some((img.path(), false)),
            ..Default::default()
        },
    );
    let data = img.bytes();
    let Some(r) = r else {
        return;
    };
    assert_eq!(r.exit_status, 0, "{}", r.serial);
    assert_eq!(r.guest("result").as_deref(), Some("pass"), "{}", r.serial);
    assert_eq!(r.guest_u64("match"), 1, "{}", r.serial);
    assert_eq!(r.guest_u64("untouched"), 1, "{}", r.serial);
    assert_eq!(
        r.guest_u64("capacity"),
        (IMAGE_SIZE / 512) as u64,
        "{}",
        r.serial
    );
    let start = usize::try_from(SECTOR * 512).expect("offset");
    for (i, b) in data[start..start + 4096].iter().enumerate() {
        assert_eq!(*b, pattern(i), "image byte {i} after sector {SECTOR}");
    }
    assert!(
        data[..start].iter().all(|b| *b == 0),
        "bytes before the write changed"
    );
    assert!(
        data[start + 4096..].iter().all(|b| *b == 0),
        "bytes after the write changed"
    );
    // The device's DMA went through the vIOMMU: translations on its RID,
    // one fault for the unmapped buffer, and the driver's set-up flushes.
    assert!(r.counter("translations") >= 3, "{}", r.report);
    assert_eq!(r.counter("faults"), 1, "{}", r.report);
    assert!(r.counter("invalidations.context") >= 1, "{}", r.report);
    assert!(r.counter("invalidations.wait") >= 1, "{}", r.report);
}

#[test]
fn virtio_blk_read_only_refuses_the_write() {
    let img = DiskImage::new("virtio-ro", IMAGE_SIZE);
    let r = run_mini(
        "virtio_blk_read_only_refuses_the_write",
        &MiniRun {
            cmdline: "scenario=virtio-blk",
            sva_devices: 0,
            disk: Some((img.path(), true)),
            ..Default::default()
        },
    );
    let data = img.bytes();
    let Some(r) = r else {
        return;
    };
    assert_eq!(r.exit_status, 0, "{}", r.serial);
    assert_eq!(r.guest_u64("read_only"), 1, "{}", r.serial);
    assert_eq!(r.guest_u64("write_status"), 1, "{}", r.serial);
    assert!(data.iter().all(|b| *b == 0), "a read-only image changed");
}
