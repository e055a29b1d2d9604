//! The `churn` scenario (issue 7): kernel page-table frees in bursts with
//! SVA DMA going on, under each policy; the VMM's report decides.

#[path = "mini_support/mod.rs"]
mod mini_support;

use mini_support::{MiniResult, MiniRun, run_mini};

fn churn(test: &str, policy: &str) -> Option<MiniResult> {
    let cmdline = format!("scenario=churn kpgtable_free={policy}");
    let r = run_mini(
        test,
        &MiniRun {
            cmdline: &cmdline,
            sva_devices: 2,
            ..Default::default()
        },
    )?;
    assert_eq!(r.exit_status, 0, "{}", r.serial);
    assert_eq!(r.guest("result").as_deref(), Some("pass"), "{}", r.serial);
    assert_eq!(r.guest("verdict").as_deref(), Some("pass"), "{}", r.serial);
    assert_eq!(r.guest_u64("dma_errors"), 0, "{}", r.serial);
    assert_eq!(r.guest_u64("data_errors"), 0, "{}", r.serial);
    assert!(r.guest_u64("pt_frees") >= 2000, "{}", r.serial);
    // Every freed kernel table page was announced on the hint port.
    assert_eq!(
        r.counter("free_hints"),
        r.guest_u64("pt_frees"),
        "{}",
        r.report
    );
    // Issue 7: each mini-guest scenario finishes in under a minute here.
    let ms = r.report["elapsed_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(ms < 60_000.0, "churn {policy} took {ms} ms");
    Some(r)
}

#[test]
fn churn_deferred_sends_at_most_an_eighth_of_eagers_kva_invalidations() {
    let test = "churn_deferred_sends_at_most_an_eighth_of_eagers_kva_invalidations";
    let Some(deferred) = churn(test, "deferred") else {
        return;
    };
    let Some(eager) = churn(test, "eager") else {
        return;
    };
    for r in [&deferred, &eager] {
        assert_eq!(r.counter("stale_walks.reused"), 0, "{}", r.report);
        assert_eq!(r.counter("freed_while_cached"), 0, "{}", r.report);
        assert_eq!(r.counter("queue_errors"), 0, "{}", r.report);
    }
    let d = deferred.counter("kva_invalidations");
    let e = eager.counter("kva_invalidations");
    assert!(d >= 1, "{}", deferred.report);
    assert!(d * 8 <= e, "deferred {d} vs eager {e}");
    // The guest's own count agrees with what the VMM saw.
    assert_eq!(d, deferred.guest_u64("kva_invalidations_sent"));
    assert_eq!(e, eager.guest_u64("kva_invalidations_sent"));
}

#[test]
fn churn_sync_frees_tables_the_iommu_still_caches() {
    let Some(r) = churn("churn_sync_frees_tables_the_iommu_still_caches", "sync") else {
        return;
    };
    assert!(r.counter("freed_while_cached") > 0, "{}", r.report);
    assert_eq!(r.counter("kva_invalidations"), 0, "{}", r.report);
}
