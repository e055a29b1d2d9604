//! The `sva-bench` scenario (issue 16: the SVA copy measured through a real
//! run, as `stalewalk run` sets the vIOMMU up): the copy must be right, be
//! timed, and go through the vIOMMU with the page size asked for.

#[path = "mini_support/mod.rs"]
mod mini_support;

use mini_support::{MiniRun, run_mini};

#[test]
fn sva_bench_copies_through_the_viommu_with_4k_pages_and_2m_leaves() {
    for huge in [0u8, 1] {
        let cmdline =
            format!("scenario=sva-bench sva_bench_mib=8 sva_bench_reps=2 sva_bench_2m={huge}");
        let Some(r) = run_mini(
            "sva_bench_copies_through_the_viommu_with_4k_pages_and_2m_leaves",
            &MiniRun {
                cmdline: &cmdline,
                sva_devices: 1,
                ..Default::default()
            },
        ) else {
            return;
        };
        assert_eq!(r.exit_status, 0, "{}", r.serial);
        assert_eq!(r.guest("verdict").as_deref(), Some("pass"), "{}", r.serial);
        assert_eq!(r.guest_u64("mismatched_words"), 0, "{}", r.serial);
        assert_eq!(r.guest_u64("bytes"), 8 << 20, "{}", r.serial);
        let best = r.guest_u64("best_tsc_cycles");
        assert!(
            best > 0 && best <= r.guest_u64("median_tsc_cycles"),
            "{}",
            r.serial
        );
        let pages = if huge == 1 { "2m" } else { "4k" };
        assert_eq!(r.guest("pages").as_deref(), Some(pages), "{}", r.serial);
        // Three copies of 8 MiB, source and destination: with 4 KiB pages
        // at least one translation per page side; with 2 MiB leaves the
        // IOTLB holds 8 entries and hits are per 4 KiB chunk or per leaf.
        let translations = r.counter("translations");
        assert!(translations > 0, "{}", r.report);
        if huge == 0 {
            assert!(translations >= 2 * 2048, "{translations}: {}", r.report);
        }
    }
}

#[test]
fn reject_sva_bench_beyond_the_device_transfer_limit() {
    let Some(r) = run_mini(
        "reject_sva_bench_beyond_the_device_transfer_limit",
        &MiniRun {
            cmdline: "scenario=sva-bench sva_bench_mib=65",
            sva_devices: 1,
            ..Default::default()
        },
    ) else {
        return;
    };
    assert_eq!(r.exit_status, 2, "{}", r.serial);
    assert!(
        r.serial.contains("error=bad_value sva_bench_mib=65"),
        "{}",
        r.serial
    );
}
