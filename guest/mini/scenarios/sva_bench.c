/* sva_bench.c - how fast the SVA device copies through the vIOMMU, as a
 * user's `stalewalk run` sets it up (issue 16): a process maps two buffers
 * of sva_bench_mib MiB (default 64) with 4 KiB pages, or 2 MiB leaves with
 * sva_bench_2m=1, binds the device with PASID 1, fills the source at CPL3,
 * then asks the device to COPY it sva_bench_reps times (default 5) after
 * one warm-up copy that fills the IOTLB. Each copy is timed with the TSC
 * around the doorbell and the completion (the device copies inside the
 * VMM); the best and the median are printed in TSC cycles, so a script can
 * put them beside host memcpy timed in the same cycles (tools/bench-sva.sh)
 * without knowing the TSC frequency. The destination is checked against
 * the source at CPL3 afterwards: a fast copy that is wrong fails.
 *
 * The buffers come from one physically contiguous range that is never
 * zeroed or freed (zeroing 128 MiB at CPL0 would be emulated, one
 * instruction at a time); give the guest room: --memory 512M. */
#include "scenario.h"
#include "uwork.h"
#include "../console.h"
#include "../exit.h"
#include "../io.h"
#include "../lib.h"
#include "../memory.h"
#include "../platform.h"

#define SRC_VA 0x000000c000000000ULL
#define DST_VA 0x000000c100000000ULL
#define MAX_MIB 64 /* the device's largest transfer (64 MiB) */
#define MAX_REPS 16
#define SIZE_2M 0x200000ULL

static struct platform pf;

/* Maps [va, va + len) to [pa, pa + len) user RW, with 2 MiB leaves or
 * 4 KiB pages. */
static bool map_range(struct proc *p, u64 va, u64 pa, u64 len, bool huge)
{
    u64 step = huge ? SIZE_2M : PAGE_SIZE;
    for (u64 off = 0; off < len; off += step) {
        bool ok = huge ? as_map_2m(&p->up.as, va + off, pa + off, PTE_U | PTE_W)
                       : as_map(&p->up.as, va + off, pa + off, PTE_U | PTE_W);
        if (!ok)
            return false;
    }
    return true;
}

static void sort(u64 *v, u32 n)
{
    for (u32 i = 1; i < n; i++)
        for (u32 j = i; j > 0 && v[j - 1] > v[j]; j--) {
            u64 t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

int scenario_sva_bench(const struct boot_info *bi)
{
    (void)bi;
    u64 mib = cmdline_u64("sva_bench_mib", MAX_MIB);
    bool huge = cmdline_u64("sva_bench_2m", 0) != 0;
    u64 reps = cmdline_u64("sva_bench_reps", 5);
    if (mib == 0 || mib > MAX_MIB || reps == 0 || reps > MAX_REPS) {
        kprintf("stalewalk-guest: error=bad_value sva_bench_mib=%llu (1..%u) sva_bench_reps=%llu "
                "(1..%u)\n",
                mib, MAX_MIB, reps, MAX_REPS);
        return EXIT_USAGE;
    }
    if (!platform_up(&pf, false, true))
        return EXIT_FAIL;
    u64 len = mib << 20;
    u64 area = memory_alloc_contiguous(2 * len, SIZE_2M);
    static struct proc p;
    if (!area || !proc_create(&p) || !uparams_map(&p) || !map_range(&p, SRC_VA, area, len, huge) ||
        !map_range(&p, DST_VA, area + len, len, huge)) {
        kprintf("stalewalk-guest: error=out_of_memory need_mib=%llu (try --memory 512M)\n",
                2 * mib);
        return EXIT_FAIL;
    }
    if (!proc_bind(&p, pf.rids, 1, 1, false)) {
        kprintf("stalewalk-guest: error=bind\n");
        return EXIT_FAIL;
    }
    struct sva_dev *dev = &pf.sva[0];
    ucall(&p, user_fill_seq, 0x5eed, SRC_VA, 0, len);
    u64 t0 = rdtsc();
    u8 st = sva_copy(dev, 1, 0, SRC_VA, DST_VA, len);
    u64 warmup = rdtsc() - t0;
    u64 cycles[MAX_REPS];
    for (u64 i = 0; i < reps && st == SVA_ST_SUCCESS; i++) {
        t0 = rdtsc();
        st = sva_copy(dev, 1, 0, SRC_VA, DST_VA, len);
        cycles[i] = rdtsc() - t0;
    }
    u64 bad = ucall(&p, user_compare, 0, SRC_VA, DST_VA, len);
    bool pass = st == SVA_ST_SUCCESS && bad == 0;
    u64 best = 0, median = 0;
    if (pass) {
        sort(cycles, (u32)reps);
        best = cycles[0];
        median = cycles[reps / 2];
    }
    kprintf("stalewalk-guest: scenario=sva-bench pages=%s bytes=%llu reps=%llu "
            "warmup_tsc_cycles=%llu best_tsc_cycles=%llu median_tsc_cycles=%llu status=%u "
            "mismatched_words=%llu\n",
            huge ? "2m" : "4k", len, reps, warmup, best, median, st, bad);
    kprintf("stalewalk-guest: verdict=%s\n", pass ? "pass" : "fail");
    return pass ? EXIT_OK : EXIT_FAIL;
}
