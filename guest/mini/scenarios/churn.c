/* churn.c - kernel page-table churn under SVA (issue 7): several processes
 * bound to every SVA device, bursts of vmalloc mappings whose PTE tables
 * are freed again (half replaced by huge mappings, half unmapped), a
 * 1 GiB area whose PD and PTE tables are freed together, user
 * DMA (fill and copy, checked at CPL3) throughout, user probes of kernel
 * addresses that leave kernel entries in the IOMMU's caches, and user
 * pages unmapped and remapped (the mm invalidations 6.12 sends). Prints
 * the counts per policy; the VMM's report carries the verdict on stale
 * walks and invalidations. Knobs: churn_rounds=N (default 32, 64 frees
 * each, plus 3 for the area), churn_procs=N (default 3). */
#include "scenario.h"
#include "uwork.h"
#include "../console.h"
#include "../exit.h"
#include "../lib.h"
#include "../memory.h"
#include "../platform.h"
#include "../vtd.h"

#define SRC_VA (USER_DATA_VA + 0x10000)
#define DST_VA (USER_DATA_VA + 0x20000)
#define MAX_PROCS 4
#define MAX_ROUNDS 4096
#define TABLES_PER_ROUND KPT_BATCH
#define PROBES_PER_ROUND 8
#define HUGE_TARGET 0x40000000ULL /* any 1 GiB-aligned physical range */

static struct platform pf;
static struct proc procs[MAX_PROCS];

int scenario_churn(const struct boot_info *bi)
{
    (void)bi;
    if (!platform_up(&pf, false, true))
        return EXIT_FAIL;
    u64 rounds = cmdline_u64("churn_rounds", 32);
    u64 nproc = cmdline_u64("churn_procs", 3);
    if (rounds < 1 || rounds > MAX_ROUNDS || nproc < 1 || nproc > MAX_PROCS) {
        kprintf("stalewalk-guest: error=bad_churn_args rounds=%llu procs=%llu\n", rounds, nproc);
        return EXIT_USAGE;
    }
    u64 kdata = page_alloc();
    if (!kdata)
        return EXIT_FAIL;
    for (u32 i = 0; i < nproc; i++) {
        struct proc *p = &procs[i];
        if (!proc_create(p) || !uparams_map(p) || !proc_map_new(p, SRC_VA) ||
            !proc_map_new(p, DST_VA) || !proc_bind(p, pf.rids, pf.nsva, i + 1, false)) {
            kprintf("stalewalk-guest: error=setup proc=%u\n", i);
            return EXIT_FAIL;
        }
    }
    u64 ops = 0, op_errors = 0, data_errors = 0, probes = 0, probe_ok = 0;
    for (u64 r = 0; r < rounds; r++) {
        /* a burst of kernel mappings: one PTE table per 2 MiB region */
        for (u32 i = 0; i < TABLES_PER_ROUND; i++)
            if (!vmap_page(vmalloc_region(i) + ((r + i) % 512) * PAGE_SIZE, kdata)) {
                kprintf("stalewalk-guest: error=vmap round=%llu\n", r);
                return EXIT_FAIL;
            }
        /* a 1 GiB area: a PD with two PTE tables under it */
        u64 area = vmalloc_area((u32)(r % 8));
        u64 area_va = area + (r % 512) * PAGE_SIZE;
        if (!vmap_page(area_va, kdata) || !vmap_page(area + PMD_SIZE, kdata)) {
            kprintf("stalewalk-guest: error=vmap_area round=%llu\n", r);
            return EXIT_FAIL;
        }
        probe_ok += sva_probe(&pf.sva[r % pf.nsva], (u32)(r % nproc) + 1, 0, area_va, NULL,
                              NULL) == SVA_ST_SUCCESS;
        probes++;
        /* user probes of kernel addresses: fault, cache kernel entries */
        for (u32 j = 0; j < PROBES_PER_ROUND; j++) {
            struct sva_dev *d = &pf.sva[(r + j) % pf.nsva];
            u32 region = j * (TABLES_PER_ROUND / PROBES_PER_ROUND);
            u64 va = vmalloc_region(region) + ((r + region) % 512) * PAGE_SIZE;
            probe_ok += sva_probe(d, (u32)((r + j) % nproc) + 1, 0, va, NULL, NULL) ==
                        SVA_ST_SUCCESS;
            probes++;
        }
        vtd_fault_service(NULL);
        /* user DMA in every process, checked at CPL3 */
        for (u32 i = 0; i < nproc; i++) {
            struct proc *p = &procs[i];
            struct sva_dev *d = &pf.sva[(r + i) % pf.nsva];
            u64 pat = 0x0101010101010101ULL * ((r + i) & 0xff);
            u8 s1 = sva_fill(d, i + 1, 0, SRC_VA, pat, PAGE_SIZE);
            data_errors += ucall(p, user_check_pattern, pat, SRC_VA, 0, PAGE_SIZE);
            ucall(p, user_fill_seq, r * 7 + i, SRC_VA, 0, PAGE_SIZE);
            u8 s2 = sva_copy(d, i + 1, 0, SRC_VA, DST_VA, PAGE_SIZE);
            data_errors += ucall(p, user_compare, 0, SRC_VA, DST_VA, PAGE_SIZE);
            ops += 2;
            op_errors += (s1 != SVA_ST_SUCCESS) + (s2 != SVA_ST_SUCCESS);
        }
        /* the process side changes its page tables now and then */
        if (r % 4 == 0) {
            struct proc *p = &procs[r % nproc];
            proc_unmap(p, DST_VA);
            if (!proc_map_new(p, DST_VA))
                return EXIT_FAIL;
        }
        /* the kernel frees the burst's PTE tables */
        for (u32 i = 0; i < TABLES_PER_ROUND; i++) {
            u64 va = vmalloc_region(i);
            if (i & 1) {
                vunmap_region(va);
            } else {
                vmap_huge(va, HUGE_TARGET);
                vunmap_region(va);
            }
        }
        /* ... and the area's PD with its tables (pud_free_pmd_page) */
        if (r & 1)
            vmap_huge_pud(area, HUGE_TARGET);
        vunmap_area(area);
        kpgtable_tick();
    }
    kpgtable_tick();
    for (u32 i = 0; i < nproc; i++) {
        proc_unbind(&procs[i], pf.rids, pf.nsva);
        proc_destroy(&procs[i]);
    }
    const struct kpt_stats *ks = kpgtable_stats();
    const struct vtd_stats *vs = vtd_stats();
    /* What the policy predicts for the kernel-range flushes, and what the
     * counts show: none, one per freed page and bound PASID, or batched
     * (at most an eighth of that). */
    const char *expected = pf.policy == KPT_SYNC    ? "no_kva_flush"
                           : pf.policy == KPT_EAGER ? "kva_flush_per_page"
                                                    : "kva_flush_per_batch";
    const char *observed = ks->invalidations == 0                 ? "no_kva_flush"
                           : ks->invalidations == ks->frees * nproc ? "kva_flush_per_page"
                           : ks->invalidations * 8 <= ks->frees * nproc ? "kva_flush_per_batch"
                                                                        : "other";
    bool data_ok = op_errors == 0 && data_errors == 0 && probe_ok == 0 && ks->returned == ks->frees;
    bool pass = data_ok && !strcmp(expected, observed);
    kprintf("stalewalk-guest: scenario=churn policy=%s rounds=%llu procs=%llu devices=%u "
            "pt_frees=%llu pt_returned=%llu batches=%llu kva_invalidations_sent=%llu\n",
            kpgtable_policy_name(pf.policy), rounds, nproc, pf.nsva, ks->frees, ks->returned,
            ks->batches, ks->invalidations);
    kprintf("stalewalk-guest: dma_ops=%llu dma_errors=%llu data_errors=%llu kernel_probes=%llu "
            "kernel_probes_succeeded=%llu piotlb_sent=%llu pdevtlb_sent=%llu waits_sent=%llu "
            "result=%s\n",
            ops, op_errors, data_errors, probes, probe_ok, vs->piotlb, vs->pdevtlb, vs->waits,
            pass ? "pass" : "FAIL");
    kprintf("stalewalk-guest: verdict=%s expected=%s observed=%s%s\n", pass ? "pass" : "fail",
            expected, observed, data_ok ? "" : "+dma_errors");
    return pass ? EXIT_OK : EXIT_FAIL;
}
