//! Host `memcpy` of N MiB timed in TSC cycles: the peer of the mini
//! guest's `sva-bench` scenario, which times the SVA device's COPY in the
//! same cycles (the guest's TSC is the host's under KVM), so
//! tools/bench-sva.sh can state the device's speed as a fraction of host
//! memcpy without knowing the TSC frequency.
//!
//! Usage: `memcpy_tsc [MIB] [REPS]` (default 64 MiB, 5 repetitions after a
//! warm-up copy); prints `best_tsc_cycles=... median_tsc_cycles=...`.

fn tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86-64; it only reads the
    // time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let len = mib << 20;
    // Written before timing, so every page is faulted in (the guest's
    // buffers are resident too).
    let src: Vec<u8> = (0..len).map(|i| (i % 251).to_le_bytes()[0]).collect();
    let mut dst = vec![1u8; len];
    dst.copy_from_slice(&src);
    let mut cycles = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = tsc();
        dst.copy_from_slice(std::hint::black_box(&src));
        cycles.push(tsc() - t0);
        std::hint::black_box(&dst);
    }
    assert!(dst == src, "the copy is wrong");
    cycles.sort_unstable();
    println!(
        "bytes={len} reps={reps} best_tsc_cycles={} median_tsc_cycles={}",
        cycles[0],
        cycles[reps / 2]
    );
}
