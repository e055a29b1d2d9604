//! The `chaos` scenario (issue 9): the guest writes random values to the
//! vIOMMU and the SVA devices; the VMM stays up, counts what it rejected,
//! and the guest survives and recovers.

#[path = "mini_support/mod.rs"]
mod mini_support;

use mini_support::{MiniResult, MiniRun, run_mini};

/// What the chaos verdict rests on, each part checked: the unit came back,
/// every device's ring reset and every device's DMA landed after the chaos.
fn assert_chaos_recovered(r: &MiniResult, devices: u64, what: &str) {
    for key in ["chaos_survived", "recovered", "unit_ok"] {
        assert_eq!(r.guest_u64(key), 1, "{what}: {key}: {}", r.serial);
    }
    let fraction = format!("{devices}/{devices}");
    for key in ["rings_ok", "dma_ok"] {
        assert!(
            r.serial.contains(&format!("{key}={fraction}")),
            "{what}: {key} is not {fraction}: {}",
            r.serial
        );
    }
    assert!(r.serial.contains("verdict=pass"), "{what}: {}", r.serial);
}

#[test]
fn chaos_10000_iterations_the_vmm_and_the_guest_survive() {
    let Some(r) = run_mini(
        "chaos_10000_iterations_the_vmm_and_the_guest_survive",
        &MiniRun {
            cmdline: "scenario=chaos chaos_iters=10000 seed=7",
            sva_devices: 2,
            ..Default::default()
        },
    ) else {
        return;
    };
    assert_eq!(r.exit_status, 0, "{}", r.serial);
    assert_eq!(r.guest_u64("iters"), 10000, "{}", r.serial);
    assert_chaos_recovered(&r, 2, "seed 7");
    assert!(r.counter("vmm.rejected_guest_actions") > 0, "{}", r.report);
    let ms = r.report["elapsed_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(ms < 60_000.0, "chaos took {ms} ms");
}

#[test]
fn chaos_other_seeds_survive_too() {
    for seed in [1u64, 2, 3] {
        let cmdline = format!("scenario=chaos chaos_iters=3000 seed={seed}");
        let Some(r) = run_mini(
            "chaos_other_seeds_survive_too",
            &MiniRun {
                cmdline: &cmdline,
                sva_devices: 1,
                ..Default::default()
            },
        ) else {
            return;
        };
        assert_eq!(r.exit_status, 0, "seed {seed}: {}", r.serial);
        assert_chaos_recovered(&r, 1, &format!("seed {seed}"));
    }
}
