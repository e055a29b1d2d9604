/* sva_ops.c - the SVA device's operations through a bound PASID (issue 5):
 *   sva-ops   copy and fill produce the right bytes; a probe of an unmapped
 *             user address faults; a user probe of a kernel address faults
 *             (and leaves kernel paging-structure entries in the vIOMMU's
 *             caches: the VMM report's cache counters); an ATS translation
 *             is cached in the device and removed by the guest's device-TLB
 *             invalidation; an unmapped buffer faults after the unmap's
 *             invalidation.
 *   sva-prq   with PRI on, a copy into a not-yet-mapped page sends a page
 *             request; the guest maps the page, answers, the copy completes.
 *   dma-fault translation on, a DMA-domain buffer not mapped: the fill
 *             faults, the guest gets a fault record and the fault
 *             interrupt, and nothing is written. */
#include "scenario.h"
#include "uwork.h"
#include "../console.h"
#include "../exit.h"
#include "../irq.h"
#include "../lib.h"
#include "../memory.h"
#include "../platform.h"
#include "../vtd.h"

#define SRC_VA (USER_DATA_VA + 0x10000)
#define DST_VA (USER_DATA_VA + 0x20000)
#define HOLE_VA (USER_DATA_VA + 0x100000)
#define BUF_LEN 8192
#define FILL_PATTERN 0x1122334455667788ULL
/* Interrupt-window polls while waiting for an MSI (a few ms of guest time). */
#define IRQ_SPINS 200000

static struct platform pf;

static bool map_buf(struct proc *p, u64 va, u64 len)
{
    for (u64 off = 0; off < len; off += PAGE_SIZE)
        if (!proc_map_new(p, va + off))
            return false;
    return true;
}

static const char *st_name(u8 st)
{
    return st == SVA_ST_SUCCESS ? "ok" : st == SVA_ST_FAULT ? "fault" : "error";
}

int scenario_sva_ops(const struct boot_info *bi)
{
    (void)bi;
    if (!platform_up(&pf, false, true))
        return EXIT_FAIL;
    struct sva_dev *dev = &pf.sva[0];
    static struct proc p;
    if (!proc_create(&p) || !uparams_map(&p) || !map_buf(&p, SRC_VA, BUF_LEN) ||
        !map_buf(&p, DST_VA, BUF_LEN)) {
        kprintf("stalewalk-guest: error=out_of_memory\n");
        return EXIT_FAIL;
    }
    if (!proc_bind(&p, pf.rids, 1, 1, false)) {
        kprintf("stalewalk-guest: error=bind\n");
        return EXIT_FAIL;
    }
    bool pass = true;

    /* copy */
    ucall(&p, user_fill_seq, 0xc0ffee, SRC_VA, 0, BUF_LEN);
    u8 st = sva_copy(dev, 1, 0, SRC_VA, DST_VA, BUF_LEN);
    u64 bad = ucall(&p, user_compare, 0, SRC_VA, DST_VA, BUF_LEN);
    bool copy_ok = st == SVA_ST_SUCCESS && bad == 0;
    kprintf("stalewalk-guest: copy=%s status=%u mismatched_words=%llu\n", copy_ok ? "ok" : "FAIL", st,
            bad);
    pass &= copy_ok;

    /* fill */
    st = sva_fill(dev, 1, 0, DST_VA, FILL_PATTERN, BUF_LEN);
    bad = ucall(&p, user_check_pattern, FILL_PATTERN, DST_VA, 0, BUF_LEN);
    bool fill_ok = st == SVA_ST_SUCCESS && bad == 0;
    kprintf("stalewalk-guest: fill=%s status=%u mismatched_words=%llu\n", fill_ok ? "ok" : "FAIL", st,
            bad);
    pass &= fill_ok;

    /* a completion interrupt (MSI-X vector 0) for an operation with IRQ */
    u64 done0 = irq_count(VEC_SVA_DONE + dev->index);
    st = sva_fill(dev, 1, SVA_F_IRQ, DST_VA, FILL_PATTERN, 64);
    bool got_irq = irq_wait(VEC_SVA_DONE + dev->index, done0, IRQ_SPINS);
    kprintf("stalewalk-guest: completion_irq=%u status=%u\n", got_irq, st);
    pass &= got_irq && st == SVA_ST_SUCCESS;

    /* probe of an unmapped user address */
    u8 reason = 0;
    st = sva_probe(dev, 1, 0, HOLE_VA, NULL, &reason);
    kprintf("stalewalk-guest: unmapped_probe=%s reason=0x%x\n", st_name(st), reason);
    pass &= st == SVA_ST_FAULT;

    /* user probe of a kernel (vmalloc) address */
    u64 kdata = page_alloc();
    u64 kva = vmalloc_region(0) + 0x3000;
    if (!kdata || !vmap_page(kva, kdata)) {
        kprintf("stalewalk-guest: error=vmap\n");
        return EXIT_FAIL;
    }
    st = sva_probe(dev, 1, 0, kva, NULL, &reason);
    struct vtd_fault f = {0};
    u32 nf = vtd_fault_service(&f);
    kprintf("stalewalk-guest: kernel_probe=%s reason=0x%x fault_records=%u last_fault_addr=0x%llx\n",
            st_name(st), reason, nf, f.addr);
    pass &= st == SVA_ST_FAULT;

    /* ATS: translate, hit in the ATC, invalidate, miss again */
    u64 res = 0;
    u16 cf = 0;
    u8 st1 = sva_ats(dev, 1, SRC_VA, &res, &cf);
    u64 want = proc_lookup(&p, SRC_VA);
    bool xlate_ok = st1 == SVA_ST_SUCCESS && (res & ~0xfffULL) == want;
    u8 st2 = sva_ats(dev, 1, SRC_VA, NULL, &cf);
    bool hit = st2 == SVA_ST_SUCCESS && (cf & 8);
    u64 entries = sva_read64(dev, SVA_REG_ATC_ENTRIES);
    u64 removed0 = sva_read64(dev, SVA_REG_ATC_REMOVED);
    vtd_devtlb_invalidate(dev->pci.rid, 1, SRC_VA);
    u64 removed = sva_read64(dev, SVA_REG_ATC_REMOVED) - removed0;
    u64 entries_after = sva_read64(dev, SVA_REG_ATC_ENTRIES);
    u8 st3 = sva_ats(dev, 1, SRC_VA, NULL, &cf);
    bool miss_after = st3 == SVA_ST_SUCCESS && !(cf & 8);
    bool ats_ok = xlate_ok && hit && entries >= 1 && removed >= 1 && entries_after < entries &&
                  miss_after;
    kprintf("stalewalk-guest: ats=%s translated=0x%llx expected=0x%llx atc_hit=%u atc_entries=%llu "
            "atc_removed=%llu atc_entries_after=%llu miss_after_invalidation=%u\n",
            ats_ok ? "ok" : "FAIL", res & ~0xfffULL, want, hit, entries, removed, entries_after,
            miss_after);
    pass &= ats_ok;

    /* unmap a destination page (invalidations as 6.12), then DMA to it */
    proc_unmap(&p, DST_VA);
    st = sva_fill(dev, 1, 0, DST_VA, FILL_PATTERN, PAGE_SIZE);
    kprintf("stalewalk-guest: fill_after_unmap=%s\n", st_name(st));
    pass &= st == SVA_ST_FAULT;

    vtd_fault_service(NULL);
    proc_unbind(&p, pf.rids, 1);
    proc_destroy(&p);
    const struct vtd_stats *vs = vtd_stats();
    kprintf("stalewalk-guest: scenario=sva-ops piotlb=%llu pdevtlb=%llu waits=%llu faults=%llu "
            "result=%s\n",
            vs->piotlb, vs->pdevtlb, vs->waits, vs->faults, pass ? "pass" : "FAIL");
    return pass ? EXIT_OK : EXIT_FAIL;
}

int scenario_sva_prq(const struct boot_info *bi)
{
    (void)bi;
    if (!platform_up(&pf, true, true))
        return EXIT_FAIL;
    struct sva_dev *dev = &pf.sva[0];
    if (!dev->pri_on) {
        kprintf("stalewalk-guest: error=pri_unavailable\n");
        return EXIT_FAIL;
    }
    static struct proc p;
    if (!proc_create(&p) || !uparams_map(&p) || !map_buf(&p, SRC_VA, PAGE_SIZE) ||
        !proc_bind(&p, pf.rids, 1, 1, false)) {
        kprintf("stalewalk-guest: error=setup\n");
        return EXIT_FAIL;
    }
    ucall(&p, user_fill_seq, 0xbeef, SRC_VA, 0, PAGE_SIZE);
    u64 req0 = sva_read64(dev, SVA_REG_PAGE_REQUESTS);
    bool was_mapped = proc_lookup(&p, DST_VA) != 0;
    struct sva_desc d = {.opcode = SVA_COPY, .flags = SVA_F_PASID, .pasid = 1, .addr_a = SRC_VA,
                         .addr_b = DST_VA, .len = PAGE_SIZE};
    u8 st = sva_run(dev, &d);
    u64 reqs = sva_read64(dev, SVA_REG_PAGE_REQUESTS) - req0;
    u64 resp = sva_read64(dev, SVA_REG_PAGE_RESPONSES);
    bool mapped = proc_lookup(&p, DST_VA) != 0;
    u64 bad = mapped ? ucall(&p, user_compare, 0, SRC_VA, DST_VA, PAGE_SIZE) : ~0ULL;
    bool pass = !was_mapped && st == SVA_ST_SUCCESS && (d.cflags & 1) && reqs >= 1 && mapped &&
                bad == 0;
    const struct vtd_stats *vs = vtd_stats();
    kprintf("stalewalk-guest: scenario=sva-prq copy_status=%u page_requested=%u retried=%u "
            "device_page_requests=%llu device_page_responses=%llu guest_page_requests=%llu "
            "guest_page_responses=%llu mismatched_words=%llu result=%s\n",
            st, d.cflags & 1, (d.cflags >> 1) & 1, reqs, resp, vs->page_requests,
            vs->page_responses, bad, pass ? "pass" : "FAIL");
    proc_unbind(&p, pf.rids, 1);
    proc_destroy(&p);
    return pass ? EXIT_OK : EXIT_FAIL;
}

int scenario_dma_fault(const struct boot_info *bi)
{
    (void)bi;
    if (!platform_up(&pf, false, true))
        return EXIT_FAIL;
    struct sva_dev *dev = &pf.sva[0];
    /* A kernel page the DMA domain does not map. */
    u64 victim = page_alloc();
    if (!victim)
        return EXIT_FAIL;
    memset((void *)victim, 0xa5, PAGE_SIZE);
    u64 irqs0 = irq_count(VEC_VTD_FAULT);
    u64 faults0 = vtd_stats()->faults;
    u8 st = sva_fill(dev, 0, 0, victim, 0x4141414141414141ULL, PAGE_SIZE);
    /* the fault interrupt's handler reads and clears the record */
    bool got_irq = irq_wait(VEC_VTD_FAULT, irqs0, IRQ_SPINS);
    vtd_fault_service(NULL);
    u64 nf = vtd_stats()->faults - faults0;
    struct vtd_fault f = *vtd_last_fault();
    u32 untouched = 1;
    for (u64 i = 0; i < PAGE_SIZE; i++)
        if (((u8 *)victim)[i] != 0xa5) {
            untouched = 0;
            break;
        }
    bool pass = st == SVA_ST_FAULT && got_irq && nf >= 1 && (f.addr & ~0xfffULL) == victim &&
                f.rid == dev->pci.rid && untouched;
    kprintf("stalewalk-guest: scenario=dma-fault status=%u fault_irq=%u fault_records=%llu "
            "fault_addr=0x%llx fault_rid=0x%x fault_reason=0x%x victim=0x%llx untouched=%u "
            "fault_irqs_handled=%llu result=%s\n",
            st, got_irq, nf, f.addr, f.rid, f.reason, victim, untouched, vtd_stats()->fault_irqs,
            pass ? "pass" : "FAIL");
    return pass ? EXIT_OK : EXIT_FAIL;
}
