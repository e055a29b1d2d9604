//! The mini guest's SVA device scenarios (issue 5) end to end under KVM:
//! `sva-ops`, `sva-prq` and `dma-fault`, checked on the guest's result
//! lines, its exit status and the VMM's report.

#[path = "mini_support/mod.rs"]
mod mini_support;

use mini_support::{MiniRun, run_mini};

#[test]
fn sva_ops_copy_fill_probe_and_ats() {
    let Some(r) = run_mini(
        "sva_ops_copy_fill_probe_and_ats",
        &MiniRun {
            cmdline: "scenario=sva-ops",
            ..Default::default()
        },
    ) else {
        return;
    };
    assert_eq!(r.exit_status, 0, "{}", r.serial);
    assert_eq!(r.guest("copy").as_deref(), Some("ok"), "{}", r.serial);
    assert_eq!(r.guest("fill").as_deref(), Some("ok"), "{}", r.serial);
    assert_eq!(
        r.guest("unmapped_probe").as_deref(),
        Some("fault"),
        "{}",
        r.serial
    );
    assert_eq!(
        r.guest("kernel_probe").as_deref(),
        Some("fault"),
        "{}",
        r.serial
    );
    assert_eq!(r.guest("ats").as_deref(), Some("ok"), "{}", r.serial);
    assert_eq!(r.guest_u64("completion_irq"), 1, "{}", r.serial);
    assert_eq!(r.guest_u64("atc_removed"), 1, "{}", r.serial);
    assert_eq!(
        r.guest("fill_after_unmap").as_deref(),
        Some("fault"),
        "{}",
        r.serial
    );
    assert_eq!(r.guest("result").as_deref(), Some("pass"), "{}", r.serial);
    // The kernel probe faulted but its walk left kernel paging-structure
    // entries cached (adversarial policy): PML4E, PDPE and PDE fills.
    assert!(r.counter("cache.pde.fills") >= 1, "{}", r.report);
    assert!(r.counter("cache.pml4e.fills") >= 1, "{}", r.report);
    assert!(r.counter("faults") >= 3, "{}", r.report);
    // The device-TLB invalidation the guest sent, and the unmap's
    // PASID-based IOTLB invalidation.
    assert!(r.counter("invalidations.pdevtlb") >= 1, "{}", r.report);
    assert!(r.counter("invalidations.piotlb") >= 1, "{}", r.report);
    assert_eq!(r.counter("queue_errors"), 0, "{}", r.report);
    assert_eq!(r.counter("stale_walks.reused"), 0, "{}", r.report);
}

#[test]
fn sva_prq_page_request_is_answered_and_the_copy_completes() {
    let Some(r) = run_mini(
        "sva_prq_page_request_is_answered_and_the_copy_completes",
        &MiniRun {
            cmdline: "scenario=sva-prq",
            ..Default::default()
        },
    ) else {
        return;
    };
    assert_eq!(r.exit_status, 0, "{}", r.serial);
    assert_eq!(r.guest("result").as_deref(), Some("pass"), "{}", r.serial);
    assert_eq!(r.guest_u64("page_requested"), 1, "{}", r.serial);
    assert_eq!(r.guest_u64("retried"), 1, "{}", r.serial);
    assert_eq!(r.guest_u64("mismatched_words"), 0, "{}", r.serial);
    assert_eq!(r.counter("invalidations.page_response"), 1, "{}", r.report);
    let dev = &r.report["sva_devices"][0];
    assert_eq!(dev["page_requests"].as_u64(), Some(1), "{}", r.report);
    assert_eq!(dev["page_responses"].as_u64(), Some(1), "{}", r.report);
}

#[test]
fn dma_fault_is_recorded_and_signalled_and_writes_nothing() {
    let Some(r) = run_mini(
        "dma_fault_is_recorded_and_signalled_and_writes_nothing",
        &MiniRun {
            cmdline: "scenario=dma-fault",
            ..Default::default()
        },
    ) else {
        return;
    };
    assert_eq!(r.exit_status, 0, "{}", r.serial);
    assert_eq!(r.guest("result").as_deref(), Some("pass"), "{}", r.serial);
    assert_eq!(r.guest_u64("fault_irq"), 1, "{}", r.serial);
    assert_eq!(r.guest_u64("untouched"), 1, "{}", r.serial);
    assert_eq!(r.guest("fault_addr"), r.guest("victim"), "{}", r.serial);
    assert_eq!(r.counter("faults"), 1, "{}", r.report);
    assert!(r.counter("vmm.interrupts_delivered") >= 1, "{}", r.report);
}

#[test]
fn sva_misuse_gets_error_statuses_and_the_device_recovers() {
    let Some(r) = run_mini(
        "sva_misuse_gets_error_statuses_and_the_device_recovers",
        &MiniRun {
            cmdline: "scenario=sva-misuse",
            ..Default::default()
        },
    ) else {
        return;
    };
    assert_eq!(r.exit_status, 0, "{}", r.serial);
    assert_eq!(r.guest("result").as_deref(), Some("pass"), "{}", r.serial);
    assert!(!r.serial.contains(" FAIL"), "{}", r.serial);
    assert_eq!(r.guest_u64("storm_doorbells_ignored"), 1000, "{}", r.serial);
    // The VMM stayed up and counted what it refused.
    assert!(
        r.counter("vmm.rejected_guest_actions") >= 1000,
        "{}",
        r.report
    );
    let dev = &r.report["sva_devices"][0];
    assert!(
        dev["doorbells_ignored"].as_u64() >= Some(1000),
        "{}",
        r.report
    );
}

#[test]
fn sva_scenarios_without_a_device_fail_cleanly() {
    let Some(r) = run_mini(
        "sva_scenarios_without_a_device_fail_cleanly",
        &MiniRun {
            cmdline: "scenario=sva-ops",
            sva_devices: 0,
            ..Default::default()
        },
    ) else {
        return;
    };
    assert_eq!(r.exit_status, 1, "{}", r.serial);
    assert!(r.serial.contains("error=no_sva_device"), "{}", r.serial);
}
