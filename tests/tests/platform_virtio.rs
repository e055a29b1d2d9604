//! virtio-blk DMA through the vIOMMU, end to end (issue 4): the mini guest
//! finds the DMAR unit and the PCI devices through ACPI, turns translation
//! on and drives virtio-blk through its first-stage DMA tables
//! (scenarios `vtd-blk`, `vtd-blk-fault`, `blk-bench` in
//! `guest/mini/scenarios/vtd_blk.c`); the host checks the image file, the
//! guest's result lines and the end-of-run report.

use std::path::Path;

#[path = "mini_support/mod.rs"]
mod mini_support;

use mini_support::{MiniResult, MiniRun, run_mini};
use stalewalk_integration::DiskImage;

/// Image size: 4 MiB (covers blk-bench's 1 MiB requests).
const IMAGE_SIZE: usize = 4 << 20;

/// The virtio-blk device's entry in the report.
fn blk(r: &MiniResult) -> &serde_json::Value {
    r.report["virtio_devices"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["kind"] == "block"))
        .unwrap_or_else(|| panic!("no virtio-blk in the report:\n{}", r.report))
}

/// Boots the mini guest with `cmdline`, the disk and the vIOMMU on or off
/// (no SVA device); `None` (after one `SKIPPED:` line) without KVM.
fn run(test: &str, cmdline: &str, disk: &Path, viommu: bool) -> Option<MiniResult> {
    run_mini(
        test,
        &MiniRun {
            cmdline,
            sva_devices: 0,
            disk: Some((disk, false)),
            viommu,
            ..MiniRun::default()
        },
    )
}

/// Byte `i` of the pattern vtd-blk writes (scenarios/vtd_blk.c).
fn pattern(i: usize) -> u8 {
    (((i * 7) + (i >> 9)).to_le_bytes()[0]) ^ 0x5a
}

#[test]
fn vtd_blk_round_trip_through_first_stage_tables() {
    let img = DiskImage::new("vtd-blk", IMAGE_SIZE);
    let Some(r) = run(
        "vtd_blk_round_trip_through_first_stage_tables",
        "scenario=vtd-blk blk_sector=64",
        img.path(),
        true,
    ) else {
        return;
    };
    let s = &r.serial;
    assert_eq!(r.exit_status, 0, "{s}");
    assert!(s.contains("stalewalk-guest: rsdp=0xe0000 "), "{s}");
    assert_eq!(r.guest("translation").as_deref(), Some("on"), "{s}");
    assert_eq!(r.guest_u64("drhd"), 0xfed9_0000, "{s}");
    assert_eq!(r.guest_u64("rid"), 0x10, "virtio-blk at 00:02.0\n{s}");
    assert_eq!(r.guest_u64("match"), 1, "{s}");
    assert_eq!(r.guest_u64("write_status"), 0, "{s}");
    assert_eq!(r.guest_u64("read_status"), 0, "{s}");
    assert_eq!(r.guest("result").as_deref(), Some("pass"), "{s}");
    // The image holds the pattern at sector 64 and nothing else.
    let data = img.bytes();
    let (start, len) = (64 * 512, 8192);
    for (i, b) in data[start..start + len].iter().enumerate() {
        assert_eq!(*b, pattern(i), "image byte {i} after sector 64");
    }
    assert!(
        data[..start].iter().all(|b| *b == 0),
        "bytes before changed"
    );
    assert!(
        data[start + len..].iter().all(|b| *b == 0),
        "bytes after changed"
    );
    // The driver's invalidations by type: the global context, PASID-cache
    // and IOTLB flushes after the root table, the PASID-based IOTLB of the
    // unmap, each followed by a wait.
    for kind in ["context", "iotlb", "pasid_cache", "piotlb", "wait"] {
        assert!(
            r.counter(&format!("invalidations.{kind}")) >= 1,
            "no {kind} invalidation in the report:\n{}",
            r.report
        );
    }
    assert_eq!(
        r.counter("invalidations.wait"),
        r.guest_u64("driver_waits"),
        "waits sent by the guest vs seen by the unit"
    );
    // After the unmap the third read faulted: no stale IOTLB entry let the
    // device write the buffer.
    assert_eq!(r.guest_u64("unmapped"), 1, "{s}");
    assert_ne!(r.guest_u64("stale_read_status"), 0, "{s}");
    assert_eq!(r.guest_u64("fault_irq"), 1, "{s}");
    assert_eq!(r.guest_u64("untouched"), 1, "{s}");
    // The read carried no PASID, so the record has PP clear (the guest
    // also accepts QEMU's PP=1 naming RID_PASID 0; stalewalk must not).
    assert_eq!(r.guest_u64("fault_pasid_present"), 0, "{s}");
    assert_eq!(r.counter("faults"), 1, "{}", r.report);
    for kind in ["leaf", "reused", "unlinked"] {
        let path = format!("stale_walks.{kind}");
        assert_eq!(r.counter(&path), 0, "{}", r.report);
    }
    let blk = blk(&r);
    assert_eq!(blk["device_counters"]["write_bytes"], 8192, "{blk}");
    assert_eq!(blk["device_counters"]["read_bytes"], 8192, "{blk}");
}

/// The round trip's fault check is not vacuous: a driver that clears the
/// mappings without the PASID-based IOTLB invalidation lets the device
/// write the buffer through stale IOTLB entries; the guest sees it (FAIL,
/// exit 1) and the model's checker counts the stale leaf uses.
#[test]
fn reject_unmap_without_iotlb_invalidation() {
    let img = DiskImage::new("vtd-blk-noflush", IMAGE_SIZE);
    let Some(r) = run(
        "reject_unmap_without_iotlb_invalidation",
        "scenario=vtd-blk blk_unmap_flush=0",
        img.path(),
        true,
    ) else {
        return;
    };
    let s = &r.serial;
    assert_eq!(r.exit_status, 1, "{s}");
    assert_eq!(r.guest("result").as_deref(), Some("FAIL"), "{s}");
    assert_eq!(r.guest_u64("unmap_flush"), 0, "{s}");
    assert_eq!(r.guest_u64("stale_read_status"), 0, "{s}");
    assert_eq!(r.guest_u64("untouched"), 0, "{s}");
    assert_eq!(r.counter("faults"), 0, "{}", r.report);
    assert_eq!(r.counter("invalidations.piotlb"), 0, "{}", r.report);
    assert!(r.counter("stale_walks.leaf") >= 1, "{}", r.report);
}

#[test]
fn vtd_blk_fault_on_a_missing_mapping_writes_nothing() {
    let img = DiskImage::new("vtd-blk-fault", IMAGE_SIZE);
    let Some(r) = run(
        "vtd_blk_fault_on_a_missing_mapping_writes_nothing",
        "scenario=vtd-blk-fault blk_sector=128",
        img.path(),
        true,
    ) else {
        return;
    };
    let s = &r.serial;
    // The VMM kept running: the guest finished and a mapped read worked
    // after the two faulting requests.
    assert_eq!(r.exit_status, 0, "{s}");
    assert_eq!(r.guest("result").as_deref(), Some("pass"), "{s}");
    let victim = r.guest_u64("victim");
    for dir in ["read", "write"] {
        assert_ne!(r.guest_u64(&format!("{dir}_status")), 0, "{dir}\n{s}");
        assert_eq!(r.guest_u64(&format!("{dir}_fault_irq")), 1, "{dir}\n{s}");
        assert_eq!(
            r.guest_u64(&format!("{dir}_fault_addr")) & !0xfff,
            victim,
            "{dir}\n{s}"
        );
        assert_ne!(r.guest_u64(&format!("{dir}_fault_reason")), 0, "{s}");
    }
    // A disk read is a DMA write of memory, a disk write a DMA read.
    assert_eq!(r.guest_u64("read_fault_write"), 1, "{s}");
    assert_eq!(r.guest_u64("write_fault_write"), 0, "{s}");
    assert_eq!(r.guest_u64("untouched"), 1, "{s}");
    assert_eq!(r.guest_u64("after_status"), 0, "{s}");
    assert_eq!(r.guest_u64("fault_irqs_handled"), 2, "{s}");
    assert_eq!(r.counter("faults"), 2, "{}", r.report);
    let blk = blk(&r);
    assert_eq!(blk["device_counters"]["requests_failed"], 2, "{blk}");
    assert_eq!(blk["device_counters"]["write_bytes"], 0, "{blk}");
    // Nothing reached the image either.
    assert!(img.bytes().iter().all(|b| *b == 0), "the image changed");
}

#[test]
fn blk_bench_reads_with_the_viommu_on_and_off() {
    let img = DiskImage::new("blk-bench", IMAGE_SIZE);
    // (vIOMMU, 2 MiB DMA pages, pages the guest reports)
    for (viommu, huge, pages) in [(true, 1, "2m"), (true, 0, "4k"), (false, 1, "none")] {
        let Some(r) = run(
            "blk_bench_reads_with_the_viommu_on_and_off",
            &format!("scenario=blk-bench blk_bench_mib=8 blk_bench_2m={huge}"),
            img.path(),
            viommu,
        ) else {
            return;
        };
        let s = &r.serial;
        assert_eq!(r.exit_status, 0, "{s}");
        let on = if viommu { "on" } else { "off" };
        assert_eq!(r.guest("translation").as_deref(), Some(on), "{s}");
        assert_eq!(r.guest("bench_dma_pages").as_deref(), Some(pages), "{s}");
        assert_eq!(r.guest_u64("bench_bytes"), 8 << 20, "{s}");
        assert_eq!(r.guest_u64("bench_failed"), 0, "{s}");
        assert!(r.guest_u64("bench_tsc_cycles") > 0, "{s}");
        // the 2 MiB warm-up request plus the timed ones
        assert_eq!(
            blk(&r)["device_counters"]["read_bytes"],
            10 << 20,
            "{}",
            r.report
        );
        let translations = r.counter("translations");
        match pages {
            // at least one per 4 KiB page the device wrote
            "4k" => assert!(translations >= 5 * 512, "{}", r.report),
            // one per 64 KiB piece the device moves, not one per page
            "2m" => assert!((5 * 32..5 * 512).contains(&translations), "{}", r.report),
            _ => {
                assert_eq!(translations, 0, "{}", r.report);
                assert_eq!(r.counter("invalidations.wait"), 0, "{}", r.report);
            }
        }
    }
}
