/* vtd.c - the VT-d driver (see vtd.h). Every table lives in identity-mapped
 * kernel memory; the queue and the page-request queue are static buffers.
 * All waits on the hardware are bounded. */
#include "vtd.h"
#include "console.h"
#include "io.h"
#include "irq.h"
#include "lib.h"
#include "memory.h"

#define GCMD_TE (1u << 31)
#define GCMD_SRTP (1u << 30)
#define GCMD_QIE (1u << 26)
#define GSTS_TES (1u << 31)
#define GSTS_RTPS (1u << 30)
#define GSTS_QIES (1u << 26)
#define FSTS_PFO (1u << 0)
#define FSTS_PPF (1u << 1)
#define FSTS_ERRORS 0xf1u /* PFO, IQE, ICE, ITE, PRO: RW1C */
#define FSTS_IQE (1u << 4)
#define CTL_IM (1u << 31)

#define ECAP_QI (1ULL << 1)
#define ECAP_DT (1ULL << 2)
#define ECAP_PRS (1ULL << 29)
#define ECAP_SRS (1ULL << 31)
#define ECAP_PASID (1ULL << 40)
#define ECAP_SMTS (1ULL << 43)
#define ECAP_FLTS (1ULL << 47)
#define CAP_CM (1ULL << 7)
#define CAP_ESRTPS (1ULL << 63)

/* Polls of a status register before the driver gives up. The model acts
 * inside the register write, so a few polls suffice; each poll is a VM
 * exit, so the bound stays small. */
#define POLL_LIMIT 1000
/* Polls of a wait descriptor's status word (memory: cheap); the queue
 * error bit is read every WAIT_FSTS_EVERY polls. */
#define WAIT_POLLS 20000
#define WAIT_FSTS_EVERY 256
/* Kernel half as the fix flushes it: PAGE_OFFSET rounded to the half. */
#define KVA_FLUSH_ADDR 0xffff800000000000ULL
/* A first-stage 2 MiB leaf (PDE with PS). */
#define HUGE_2M 0x200000ULL
#define KVA_FLUSH_AM 35 /* 2^35 pages = 2^47 bytes: the whole kernel half */

static u64 base, cap, ecap;
static u32 gcmd;
static u64 root_table, context_table;
static struct address_space dma_domain;
static vtd_prq_fn prq_handler;
static struct vtd_stats st;
static struct vtd_fault last_fault;

static u8 qi_ring[VTD_QI_ENTRIES * 32] __attribute__((aligned(4096)));
static u32 qi_tail;
static volatile u32 qi_status __attribute__((aligned(8)));
static u32 qi_seq;
static u8 prq_ring[VTD_PRQ_ENTRIES * 32] __attribute__((aligned(4096)));

struct vdev {
    u16 rid;
    bool ats, pri, used;
    u64 pasid_dir, pasid_table;
};
static struct vdev devs[VTD_MAX_DEVICES];

struct bind {
    u16 rid;
    u32 pasid;
    bool used;
};
static struct bind binds[VTD_MAX_BINDS];

u32 vtd_read32(u32 off) { return mmio_read32(base + off); }
void vtd_write32(u32 off, u32 v) { mmio_write32(base + off, v); }
u64 vtd_read64(u32 off) { return *(volatile u64 *)(base + off); }
void vtd_write64(u32 off, u64 v) { *(volatile u64 *)(base + off) = v; }
const struct vtd_stats *vtd_stats(void) { return &st; }
const struct vtd_fault *vtd_last_fault(void) { return &last_fault; }
u64 vtd_base(void) { return base; }
u64 vtd_cap(void) { return cap; }
u64 vtd_ecap(void) { return ecap; }
struct address_space *vtd_dma_domain(void) { return &dma_domain; }

static bool gcmd_set(u32 bit, u32 status_bit, bool on)
{
    u32 v = on ? (gcmd | bit) : (gcmd & ~bit);
    vtd_write32(VTD_GCMD, v);
    for (u32 i = 0; i < POLL_LIMIT; i++)
        if (!!(vtd_read32(VTD_GSTS) & status_bit) == on)
            return true;
    return false;
}

/* ---- queued invalidation ---- */

void vtd_qi_submit(const u64 desc[4])
{
    u64 *slot = (u64 *)(qi_ring + qi_tail * 32);
    for (int i = 0; i < 4; i++)
        slot[i] = desc[i];
    qi_tail = (qi_tail + 1) % VTD_QI_ENTRIES;
    st.descriptors++;
    __asm__ volatile("" ::: "memory");
    vtd_write64(VTD_IQT, (u64)qi_tail << 5);
}

/* Appends without ringing (the batch is rung by the wait). */
static void qi_push(u64 q0, u64 q1)
{
    u64 *slot = (u64 *)(qi_ring + qi_tail * 32);
    slot[0] = q0;
    slot[1] = q1;
    slot[2] = 0;
    slot[3] = 0;
    qi_tail = (qi_tail + 1) % VTD_QI_ENTRIES;
    st.descriptors++;
}

/* A wait with status write and fence (and PD: page-request drain). */
static bool qi_wait(bool drain)
{
    u32 token = ++qi_seq;
    qi_status = 0;
    /* Wait: status data 63:32, SW 5, FN 6, PD 7; qw1 status address. */
    qi_push(5 | (1u << 5) | (1u << 6) | (drain ? 1u << 7 : 0) | ((u64)token << 32),
            (u64)&qi_status);
    st.waits++;
    __asm__ volatile("" ::: "memory");
    vtd_write64(VTD_IQT, (u64)qi_tail << 5);
    for (u32 i = 0; i < WAIT_POLLS; i++) {
        if (qi_status == token)
            return true;
        if (i % WAIT_FSTS_EVERY == WAIT_FSTS_EVERY - 1 && (vtd_read32(VTD_FSTS) & FSTS_IQE))
            break;
    }
    kprintf("stalewalk-guest: error=qi_wait_timeout fsts=0x%x iqh=0x%llx iqt=0x%llx\n",
            vtd_read32(VTD_FSTS), vtd_read64(VTD_IQH), vtd_read64(VTD_IQT));
    vtd_write32(VTD_FSTS, FSTS_ERRORS);
    return false;
}

bool vtd_qi_wait(void) { return qi_wait(false); }

static void piotlb_page(u32 did, u32 pasid, u64 addr, u32 am)
{
    /* type 6, granularity 3 (page-selective within PASID), IH=0 */
    qi_push(6 | (3u << 4) | ((u64)did << 16) | ((u64)pasid << 32), (addr & ~0xfffULL) | am);
    st.piotlb++;
}

static void piotlb_pasid(u32 did, u32 pasid)
{
    qi_push(6 | (2u << 4) | ((u64)did << 16) | ((u64)pasid << 32), 0);
    st.piotlb++;
}

static void pasid_cache_inv(u32 did, u32 pasid)
{
    qi_push(7 | (1u << 4) | ((u64)did << 16) | ((u64)pasid << 32), 0);
    st.pasid_cache++;
}

/* PASID-based device-TLB: SID 31:16, PASID 51:32; qw1 address with the
 * size bit 11 (all ones below it but bit 11 clear for one page). */
static void pdevtlb(u16 rid, u32 pasid, u64 addr, bool all)
{
    u64 q1 = all ? (0x7ffffffffffff000ULL | (1ULL << 11)) : (addr & ~0xfffULL);
    qi_push(8 | ((u64)rid << 16) | ((u64)pasid << 32), q1);
    st.pdevtlb++;
}

/* 2^order pages from `addr` (aligned to the size): the ATS size encoding
 * sets the address bits below the size's top bit, plus S. */
static void pdevtlb_range(u16 rid, u32 pasid, u64 addr, u32 order)
{
    if (order == 0) {
        pdevtlb(rid, pasid, addr, false);
        return;
    }
    u64 q1 = ((addr | ((1ULL << (12 + order - 1)) - 1)) & ~0xfffULL) | (1ULL << 11);
    qi_push(8 | ((u64)rid << 16) | ((u64)pasid << 32), q1);
    st.pdevtlb++;
}

void vtd_devtlb_invalidate(u16 rid, u32 pasid, u64 va)
{
    pdevtlb(rid, pasid, va, false);
    vtd_qi_wait();
}

/* ---- init ---- */

static bool enable_qi(void)
{
    if (vtd_read32(VTD_GSTS) & GSTS_QIES)
        if (!gcmd_set(GCMD_QIE, GSTS_QIES, false))
            return false;
    gcmd &= ~GCMD_QIE;
    qi_tail = 0;
    vtd_write64(VTD_IQT, 0);
    vtd_write64(VTD_IQA, (u64)qi_ring | (1u << 11) | 1); /* DW=1, QS=1 */
    if (!gcmd_set(GCMD_QIE, GSTS_QIES, true))
        return false;
    gcmd |= GCMD_QIE;
    return true;
}

static bool set_root(void)
{
    vtd_write64(VTD_RTADDR, root_table | (1u << 10)); /* TTM=01: scalable */
    return gcmd_set(GCMD_SRTP, GSTS_RTPS, true);
}

/* After a root table pointer change, as iommu_set_root_entry() in 6.12:
 * nothing with CAP.ESRTPS, else global context-cache, PASID-cache and
 * IOTLB invalidations, each submitted with its own wait. */
static void global_flushes(void)
{
    if (cap & CAP_ESRTPS)
        return;
    qi_push(1 | (1u << 4), 0); /* context cache, global */
    vtd_qi_wait();
    qi_push(7 | (3u << 4), 0); /* PASID cache, global */
    vtd_qi_wait();
    qi_push(2 | (1u << 4), 0); /* IOTLB, global */
    vtd_qi_wait();
}

static void setup_msis(void)
{
    u64 addr = lapic_msi_address();
    if (ecap & ECAP_PRS) {
        vtd_write64(VTD_PQH, 0);
        vtd_write64(VTD_PQT, 0);
        vtd_write64(VTD_PQA, (u64)prq_ring | 4);
        vtd_write32(VTD_PEDATA, VEC_VTD_PRQ);
        vtd_write32(VTD_PEADDR, (u32)addr);
        vtd_write32(VTD_PEUADDR, (u32)(addr >> 32));
        vtd_write32(VTD_PECTL, 0);
    }
    vtd_write32(VTD_FEDATA, VEC_VTD_FAULT);
    vtd_write32(VTD_FEADDR, (u32)addr);
    vtd_write32(VTD_FEUADDR, (u32)(addr >> 32));
    vtd_write32(VTD_FECTL, 0);
}

/* The fault event: read and clear the fault records (interrupts are only
 * taken inside irq_wait windows, never in the middle of driver code). */
static void on_fault_irq(u32 v)
{
    (void)v;
    st.fault_irqs++;
    vtd_fault_service(NULL);
}

bool vtd_reinit_registers(void)
{
    gcmd = 0;
    vtd_write32(VTD_GCMD, 0);
    vtd_fault_service(NULL);
    if (!enable_qi() || !set_root())
        return false;
    global_flushes();
    setup_msis();
    if (!gcmd_set(GCMD_TE, GSTS_TES, true))
        return false;
    gcmd |= GCMD_TE;
    return true;
}

bool vtd_init(u64 reg_base, vtd_prq_fn prq, bool need_sva)
{
    base = reg_base;
    prq_handler = prq;
    u32 ver = vtd_read32(VTD_VER);
    cap = vtd_read64(VTD_CAP);
    ecap = vtd_read64(VTD_ECAP);
    u32 gsts = vtd_read32(VTD_GSTS);
    /* Like Linux, ask only for what is used: scalable mode, first-stage
     * tables and queued invalidation for DMA domains; PASIDs and device
     * TLBs only for SVA devices (QEMU 10 offers one or the other). */
    u64 need = ECAP_QI | ECAP_SMTS | ECAP_FLTS | (need_sva ? ECAP_DT | ECAP_PASID : 0);
    kprintf("stalewalk-guest: vtd_base=0x%llx vtd_ver=0x%x vtd_cap=0x%llx vtd_ecap=0x%llx\n", base,
            ver, cap, ecap);
    if ((ecap & need) != need) {
        kprintf("stalewalk-guest: error=vtd_missing_caps ecap=0x%llx need=0x%llx\n", ecap, need);
        base = 0;
        return false;
    }
    gcmd = gsts & (GCMD_TE | GCMD_QIE);
    /* 1. clear old faults */
    vtd_fault_service(NULL);
    /* 2. queued invalidation off then on */
    if (!enable_qi()) {
        kprintf("stalewalk-guest: error=vtd_qi_enable\n");
        return false;
    }
    /* 3. root table (scalable mode) */
    root_table = page_alloc();
    context_table = page_alloc();
    dma_domain.pml4 = page_alloc();
    if (!root_table || !context_table || !dma_domain.pml4)
        return false;
    ((u64 *)root_table)[0] = context_table | 1; /* devfn 0-127 */
    if (!set_root()) {
        kprintf("stalewalk-guest: error=vtd_set_root\n");
        return false;
    }
    /* 4. global context, PASID and IOTLB invalidations */
    global_flushes();
    /* 5. page-request queue and its MSI; 6. fault MSI */
    irq_set_handler(VEC_VTD_FAULT, on_fault_irq);
    setup_msis();
    return true;
}

static struct vdev *find_dev(u16 rid)
{
    for (u32 i = 0; i < VTD_MAX_DEVICES; i++)
        if (devs[i].used && devs[i].rid == rid)
            return &devs[i];
    return NULL;
}

u64 vtd_pasid_table(u16 rid)
{
    struct vdev *d = find_dev(rid);
    return d ? d->pasid_table : 0;
}

static u64 *pasid_entry(struct vdev *d, u32 pasid)
{
    return (u64 *)(d->pasid_table + 64 * (pasid & 63));
}

static void write_pasid_entry(u64 *e, u64 pgd, u32 did, bool sre)
{
    /* val2: SRE 0, FLPTPTR; val1: DID; val0: P, AW=2 (48-bit), PGTT=1
     * (first stage); present last. */
    e[0] = 0;
    for (int i = 3; i < 8; i++)
        e[i] = 0;
    e[2] = (pgd & ~0xfffULL) | (sre ? 1 : 0);
    e[1] = did;
    __asm__ volatile("" ::: "memory");
    e[0] = 1 | (2u << 2) | (1u << 6);
}

bool vtd_attach(u16 rid, bool ats, bool pri)
{
    if ((rid >> 8) != 0 || (rid & 0xff) >= 128 || find_dev(rid))
        return false;
    struct vdev *d = NULL;
    for (u32 i = 0; i < VTD_MAX_DEVICES && !d; i++)
        if (!devs[i].used)
            d = &devs[i];
    if (!d)
        return false;
    d->pasid_dir = page_alloc();
    d->pasid_table = page_alloc();
    if (!d->pasid_dir || !d->pasid_table)
        return false;
    d->rid = rid;
    d->ats = ats;
    d->pri = pri && (ecap & ECAP_PRS);
    d->used = true;
    ((u64 *)d->pasid_dir)[0] = d->pasid_table | 1;
    /* RID_PASID (PASID 0): the DMA domain. SRE so requests without PASID,
     * whatever privilege the unit gives them, reach the (user) mappings. */
    write_pasid_entry(pasid_entry(d, 0), dma_domain.pml4, VTD_DMA_DID, (ecap & ECAP_SRS) != 0);
    u64 *ce = (u64 *)(context_table + 32 * (rid & 0x7f));
    ce[1] = 0; /* RID_PASID 0 */
    ce[2] = 0;
    ce[3] = 0;
    __asm__ volatile("" ::: "memory");
    /* PDTS=0: 128 directory entries; PRE 4, PASIDE 3, DTE 2, P 0 */
    ce[0] = d->pasid_dir | (d->pri ? 1u << 4 : 0) | ((ecap & ECAP_PASID) ? 1u << 3 : 0) |
            ((ats && (ecap & ECAP_DT)) ? 1u << 2 : 0) | 1;
    if (cap & CAP_CM) {
        qi_push(1 | (3u << 4) | ((u64)rid << 32), 0); /* context, device */
        vtd_qi_wait();
    }
    return true;
}

bool vtd_enable_translation(void)
{
    if (!gcmd_set(GCMD_TE, GSTS_TES, true)) {
        kprintf("stalewalk-guest: error=vtd_te_timeout\n");
        return false;
    }
    gcmd |= GCMD_TE;
    return true;
}

bool vtd_present(void) { return base != 0; }

bool vtd_dma_map(u64 pa, u64 len)
{
    if (!base)
        return true;
    for (u64 a = pa & ~0xfffULL; a < pa + len; a += PAGE_SIZE)
        if (!as_map(&dma_domain, a, a, PTE_U | PTE_W))
            return false;
    return true;
}

/* ---- SVA ---- */

bool vtd_dma_map_2m(u64 pa, u64 len)
{
    if (!base)
        return true;
    u64 end = pa + len;
    if (!len || end < pa || ((pa | len) & (HUGE_2M - 1)))
        return false;
    for (u64 a = pa; a < end; a += HUGE_2M) {
        u64 *t = (u64 *)dma_domain.pml4;
        for (int level = 3; level > 1; level--) {
            u64 *e = &t[(a >> (12 + 9 * level)) & 511];
            if (!(*e & PTE_P)) {
                u64 page = page_alloc();
                if (!page)
                    return false;
                *e = page | PTE_P | PTE_W | PTE_U;
            } else if (*e & PTE_PS) {
                return false;
            }
            t = (u64 *)(*e & PTE_ADDR);
        }
        u64 *pde = &t[(a >> 21) & 511];
        if (*pde & PTE_P)
            return false; /* a 4 KiB table (or a leaf) is already there */
        *pde = a | PTE_P | PTE_W | PTE_U | PTE_PS;
    }
    return true;
}

/* The DMA domain's leaf entry for `iova`, without allocating; NULL when a
 * level above it is absent or a large page. */
static u64 *dma_pte(u64 iova)
{
    u64 *t = (u64 *)dma_domain.pml4;
    for (int level = 3; level > 0; level--) {
        u64 e = t[(iova >> (12 + 9 * level)) & 511];
        if (!(e & PTE_P) || (e & PTE_PS))
            return NULL;
        t = (u64 *)(e & PTE_ADDR);
    }
    return &t[(iova >> 12) & 511];
}

bool vtd_dma_unmap(u64 pa, u64 len)
{
    if (!base)
        return true;
    u64 start = pa & ~0xfffULL, end = pa + len;
    if (!len || end < pa)
        return false;
    for (u64 a = start; a < end; a += PAGE_SIZE) {
        u64 *pte = dma_pte(a);
        if (!pte || !(*pte & PTE_P))
            return false;
        *pte = 0;
    }
    /* one page-selective PASID-based IOTLB invalidation on RID_PASID (as
     * 6.12's cache_tag_flush_range for a first-stage domain): the smallest
     * aligned 2^am-page block that covers the range, or the whole PASID
     * when that exceeds CAP.MAMV */
    u32 am = 0, mamv = (u32)((cap >> 48) & 0x3f);
    while (am < 52 && (start & ~((1ULL << (12 + am)) - 1)) + (1ULL << (12 + am)) < end)
        am++;
    __asm__ volatile("" ::: "memory");
    if (am <= mamv)
        piotlb_page(VTD_DMA_DID, 0, start & ~((1ULL << (12 + am)) - 1), am);
    else
        piotlb_pasid(VTD_DMA_DID, 0);
    return qi_wait(false);
}

bool vtd_sva_bind(u16 rid, u32 pasid, u64 pgd, bool sre)
{
    struct vdev *d = find_dev(rid);
    if (!d || pasid == 0 || pasid > VTD_MAX_PASID)
        return false;
    struct bind *b = NULL;
    for (u32 i = 0; i < VTD_MAX_BINDS; i++) {
        if (binds[i].used && binds[i].rid == rid && binds[i].pasid == pasid)
            return false;
        if (!binds[i].used && !b)
            b = &binds[i];
    }
    if (!b)
        return false;
    write_pasid_entry(pasid_entry(d, pasid), pgd, VTD_SVA_DID, sre);
    b->rid = rid;
    b->pasid = pasid;
    b->used = true;
    if (cap & CAP_CM) {
        pasid_cache_inv(VTD_SVA_DID, pasid);
        piotlb_pasid(VTD_SVA_DID, pasid);
        vtd_qi_wait();
    }
    return true;
}

void vtd_sva_unbind(u16 rid, u32 pasid)
{
    struct vdev *d = find_dev(rid);
    for (u32 i = 0; i < VTD_MAX_BINDS; i++)
        if (binds[i].used && binds[i].rid == rid && binds[i].pasid == pasid)
            binds[i].used = false;
    if (!d || pasid == 0 || pasid > VTD_MAX_PASID)
        return;
    u64 *e = pasid_entry(d, pasid);
    for (int i = 0; i < 8; i++)
        e[i] = 0;
    pasid_cache_inv(VTD_SVA_DID, pasid);
    piotlb_pasid(VTD_SVA_DID, pasid);
    if (d->ats)
        pdevtlb(rid, pasid, 0, true);
    vtd_qi_wait();
    if (d->pri) {
        /* Drain the PASID's page requests as 6.12 does: a fenced wait
         * without status write, PASID-based IOTLB and device-TLB, then a
         * wait with PD; requests still queued are answered. */
        qi_push(5 | (1u << 6) | (1ULL << 32), 0);
        piotlb_pasid(VTD_SVA_DID, pasid);
        pdevtlb(rid, pasid, 0, false);
        qi_wait(true);
        vtd_prq_service();
    }
}

/* Whether an earlier bind in the table already has this PASID (IOTLB
 * invalidations are per DID and PASID, sent once). */
static bool pasid_seen_before(u32 idx)
{
    for (u32 j = 0; j < idx; j++)
        if (binds[j].used && binds[j].pasid == binds[idx].pasid)
            return true;
    return false;
}

void vtd_mm_invalidate(u32 pasid, u64 va, u32 order)
{
    bool any = false, iotlb = false;
    for (u32 i = 0; i < VTD_MAX_BINDS; i++) {
        if (!binds[i].used || binds[i].pasid != pasid)
            continue;
        if (!iotlb) {
            piotlb_page(VTD_SVA_DID, pasid, va, order);
            iotlb = true;
        }
        struct vdev *d = find_dev(binds[i].rid);
        if (d && d->ats)
            pdevtlb_range(binds[i].rid, pasid, va, order);
        any = true;
    }
    if (any)
        vtd_qi_wait();
}

u32 vtd_kva_flush(void)
{
    u32 n = 0;
    for (u32 i = 0; i < VTD_MAX_BINDS; i++) {
        if (!binds[i].used)
            continue;
        if (!pasid_seen_before(i)) {
            piotlb_page(VTD_SVA_DID, binds[i].pasid, KVA_FLUSH_ADDR, KVA_FLUSH_AM);
            n++;
        }
        /* the device's ATC may hold kernel translations too */
        struct vdev *d = find_dev(binds[i].rid);
        if (d && d->ats)
            pdevtlb_range(binds[i].rid, binds[i].pasid, KVA_FLUSH_ADDR, KVA_FLUSH_AM);
    }
    if (n) {
        vtd_qi_wait();
        st.kva_flushes += n;
    }
    return n;
}

/* ---- faults and page requests ---- */

u32 vtd_fault_service(struct vtd_fault *last)
{
    u32 fro = (u32)((cap >> 24) & 0x3ff) * 16;
    u32 nfr = (u32)((cap >> 40) & 0xff) + 1;
    u32 n = 0;
    u32 fsts = vtd_read32(VTD_FSTS);
    if (fsts & FSTS_PPF) {
        for (u32 i = 0; i < nfr; i++) {
            u32 off = fro + 16 * i;
            u64 hi = vtd_read64(off + 8);
            if (!(hi >> 63))
                continue;
            last_fault.addr = vtd_read64(off);
            last_fault.rid = (u16)hi;
            last_fault.reason = (u8)(hi >> 32);
            last_fault.pasid_present = (hi >> 31) & 1;
            last_fault.pasid = (u32)((hi >> 40) & 0xfffff);
            last_fault.write = !((hi >> 62) & 1);
            if (last)
                *last = last_fault;
            vtd_write32(off + 12, 1u << 31);
            n++;
        }
    }
    if (fsts & FSTS_ERRORS)
        vtd_write32(VTD_FSTS, fsts & FSTS_ERRORS);
    st.faults += n;
    return n;
}

u32 vtd_prq_service(void)
{
    if (!(ecap & ECAP_PRS))
        return 0;
    u32 n = 0;
    u64 head = vtd_read64(VTD_PQH) & 0xffe0, tail = vtd_read64(VTD_PQT) & 0xffe0;
    while (head != tail && n < VTD_PRQ_ENTRIES) {
        const u64 *q = (const u64 *)(prq_ring + head);
        struct vtd_page_request r;
        r.rid = (u16)(q[0] >> 16);
        r.pasid_present = (q[0] >> 8) & 1;
        r.pasid = (u32)((q[0] >> 32) & 0xfffff);
        r.priv = (q[0] >> 53) & 1;
        r.read = q[1] & 1;
        r.write = (q[1] >> 1) & 1;
        r.last = (q[1] >> 2) & 1;
        r.group = (u16)((q[1] >> 3) & 0x1ff);
        r.addr = q[1] & ~0xfffULL;
        u8 code = prq_handler ? prq_handler(&r) : 1;
        st.page_requests++;
        if (r.last) {
            /* page group response: type 9, PASID-present 4, code 15:12,
             * RID 31:16, PASID 51:32; qw1 group 11:3, LPIG 2 */
            qi_push(9 | (r.pasid_present ? 1u << 4 : 0) | ((u64)code << 12) | ((u64)r.rid << 16) |
                        ((u64)r.pasid << 32),
                    ((u64)r.group << 3) | (1u << 2));
            st.page_responses++;
        }
        head = (head + 32) % (VTD_PRQ_ENTRIES * 32);
        n++;
    }
    vtd_write64(VTD_PQH, head);
    vtd_write32(VTD_PRS, 1); /* clear PPR */
    if (n)
        vtd_qi_wait();
    return n;
}
