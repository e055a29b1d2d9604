/* chaos.c - the guest attacks its own platform (issue 9): for chaos_iters=N
 * (default 10000) steps with seed=S it writes random values to every vIOMMU
 * register, the SVA devices' BAR0 registers and configuration space, random
 * table and queue contents, random descriptors into the device rings and
 * the invalidation queue, and rings doorbells. The VMM must stay up and
 * count what it rejected; the guest must survive and exit 0.
 *
 * How the guest keeps itself out of reach: every address it hands to the
 * hardware (RTADDR, IQA, PQA, ring bases, table entries, descriptor
 * addresses, wait status addresses) lies in one static scratch area, or
 * far above RAM (bit 45 set); table entries never set PS (so no large page
 * can cover memory outside the area); lengths stay inside the area; the
 * queues get QS=0 (4 KiB); and interrupt messages (fault/page-request/
 * wait events, MSI-X entries) always carry a fixed-mode vector 0x40-0x4f
 * for this CPU's LAPIC, so no random INIT/NMI/SMI can hit a CPU. Nothing
 * is written to the LAPIC, the serial port or the debug-exit port. At the
 * end the guest reprograms the unit and the devices and checks that every
 * device's DMA through its process works again (recovered=1); that check
 * is the verdict: chaos_survived=0 and exit 1 when it fails. */
#include "scenario.h"
#include "uwork.h"
#include "../console.h"
#include "../exit.h"
#include "../irq.h"
#include "../lib.h"
#include "../memory.h"
#include "../platform.h"
#include "../vtd.h"

#define SCRATCH_SIZE 0x40000ULL
#define FAR_BIT (1ULL << 45)
#define MAX_ITERS 10000000ULL
#define DEFAULT_ITERS 10000ULL
#define CHAOS_VEC_BASE 0x40

static u8 scratch[SCRATCH_SIZE] __attribute__((aligned(4096)));
static struct platform pf;
static u64 rng;
static u64 msi_addr;

static u64 rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

static u64 scratch_base(void) { return (u64)scratch; }
static u64 scratch_page(void) { return scratch_base() + (rnd() % (SCRATCH_SIZE / 4096)) * 4096; }
static u64 scratch_addr(void) { return scratch_base() + rnd() % SCRATCH_SIZE; }

/* A value that is safe for the hardware to use as a table entry or an
 * address: not present, a scratch pointer with random flags, a far
 * pointer, or a small number. Bit 7 (PS) is always clear. */
static u64 chaos_word(void)
{
    u64 r = rnd();
    switch (r & 7) {
    case 0:
        return 0;
    case 1:
        return (rnd() | FAR_BIT) & ~0x80ULL;
    case 2:
        return rnd() & 0xffff;
    default:
        return (scratch_page() | (rnd() & 0xfff) | (r & (1ULL << 63))) & ~0x80ULL;
    }
}

static u32 chaos_vector(void) { return CHAOS_VEC_BASE + (u32)(rnd() % 16); }

/* ---- vIOMMU registers ---- */

/* A safe value for the 32-bit register at `off`: address registers get
 * scratch addresses, interrupt registers this CPU and a chaos vector, the
 * queue pointers in-range offsets; everything else is random. */
static u32 viommu_value(u32 off)
{
    u64 v = rnd();
    switch (off) {
    case VTD_RTADDR:
        return (u32)(scratch_page() | (v & 0xc00));
    case VTD_IQA:
        return (u32)(scratch_page() | (v & (1u << 11))); /* DW random, QS=0 */
    case VTD_PQA:
        return (u32)scratch_page(); /* PQS=0: 4 KiB */
    case VTD_RTADDR + 4:
    case VTD_IQA + 4:
    case VTD_PQA + 4:
    case VTD_IQT + 4:
    case VTD_IQH + 4:
    case VTD_PQT + 4:
    case VTD_PQH + 4:
    case VTD_FEUADDR:
    case VTD_PEUADDR:
    case VTD_IEUADDR:
        return 0;
    case VTD_IQT:
    case VTD_IQH:
        return (u32)(v & 0xff0);
    case VTD_PQT:
    case VTD_PQH:
        return (u32)(v & 0xfe0);
    case VTD_FEDATA:
    case VTD_PEDATA:
    case VTD_IEDATA:
        return chaos_vector();
    case VTD_FEADDR:
    case VTD_PEADDR:
    case VTD_IEADDR:
        return (u32)msi_addr;
    default:
        return (u32)v;
    }
}

static void viommu_write(void)
{
    u32 off = (u32)(rnd() % 4096) & ~3u;
    if (rnd() & 3)
        off = (u32)(rnd() % 0x100) & ~3u; /* mostly the architectural block */
    if ((rnd() & 1) && !(off & 7))
        vtd_write64(off, viommu_value(off) | ((u64)viommu_value(off + 4) << 32));
    else
        vtd_write32(off, viommu_value(off));
}

/* ---- the SVA device ---- */

static void device_write(struct sva_dev *d)
{
    u32 off;
    u64 r = rnd();
    if (r & 1)
        off = (u32)(rnd() % 0x70) & ~3u;
    else if (r & 2)
        off = 0x2000 + ((u32)(rnd() % 0x20) & ~3u);
    else
        off = (u32)(rnd() % SVA_BAR_SIZE) & ~3u;
    u32 v = (u32)rnd();
    if (off >= 0x2000 && off < 0x2000 + 32) {
        switch (off & 15) {
        case 0:
            v = (u32)msi_addr;
            break;
        case 4:
            v = 0;
            break;
        case 8:
            v = chaos_vector();
            break;
        default:
            v &= 1;
        }
    } else if (off == SVA_REG_RING_BASE) {
        v = (u32)(scratch_page() + (rnd() & 1 ? 0 : (rnd() & 0xfc0)));
    } else if (off == SVA_REG_RING_BASE + 4) {
        v = (rnd() & 7) ? 0 : (u32)((rnd() | FAR_BIT) >> 32);
    } else if (off == SVA_REG_RING_ENTRIES) {
        v = (rnd() & 1) ? v : (1u << (rnd() % 7));
    } else if (off == SVA_REG_TAIL) {
        v = (rnd() & 3) ? (u32)(rnd() % 64) : v;
    }
    sva_write32(d, off, v);
}

static void config_write(struct sva_dev *d)
{
    const struct pci_dev *p = &d->pci;
    u32 msi = pci_find_cap(p, 0x05);
    u32 msix = pci_find_cap(p, PCI_CAP_MSIX);
    switch (rnd() % 8) {
    case 0: /* command: memory and bus master mostly on */
        pci_write16(p, 4, (u16)((rnd() & 0x0446) | ((rnd() & 7) ? 0x6 : 0)));
        break;
    case 1:
        if (d->pasid_cap)
            pci_write16(p, d->pasid_cap + 6, (u16)rnd());
        break;
    case 2:
        if (d->ats_cap)
            pci_write16(p, d->ats_cap + 6, (u16)rnd());
        break;
    case 3:
        if (d->pri_cap)
            pci_write16(p, d->pri_cap + 4, (u16)rnd());
        break;
    case 4:
        if (d->pri_cap)
            pci_write32(p, d->pri_cap + 12, (u32)rnd());
        break;
    case 5:
        if (msix)
            pci_write16(p, msix + 2, (u16)rnd());
        break;
    case 6: /* MSI (used while MSI-X is off): safe address and data */
        if (msi) {
            pci_write32(p, msi + 4, (u32)msi_addr);
            pci_write32(p, msi + 8, 0);
            pci_write16(p, msi + 12, (u16)chaos_vector());
            pci_write16(p, msi + 2, (u16)(rnd() & 1));
        }
        break;
    default: /* status register: RW1C bits */
        pci_write16(p, 6, (u16)rnd());
        break;
    }
}

/* A length that keeps [addr, addr + len) inside the scratch area, or one
 * the device must reject. */
static u64 chaos_len(u64 a, u64 b)
{
    u64 end = scratch_base() + SCRATCH_SIZE;
    u64 room = 0;
    if (a >= scratch_base() && a < end)
        room = end - a;
    if (b >= scratch_base() && b < end && (room == 0 || end - b < room))
        room = end - b;
    u64 r = rnd() & 7;
    if (r == 0)
        return 0;
    if (r == 1)
        return 0x100000000ULL + rnd(); /* > MAX_TRANSFER */
    if (room == 0)
        return 1 + rnd() % 4096; /* addresses far away: any length */
    return 1 + rnd() % (room < 8192 ? room : 8192);
}

static u64 desc_addr(void)
{
    return (rnd() & 7) ? scratch_addr() : (rnd() | FAR_BIT);
}

static void ring_descriptor(struct sva_dev *d)
{
    /* The device reads its ring at RING_BASE (mostly a scratch page now,
     * else the driver's ring): write a random descriptor into the scratch
     * page it may use and into the driver's ring slot, then ring. */
    struct sva_desc x;
    u64 *w = (u64 *)&x;
    for (u32 i = 0; i < 8; i++)
        w[i] = rnd();
    x.opcode = (u8)(rnd() % 8);
    x.flags = (u8)((rnd() & 3) ? (rnd() & 0xf) : rnd());
    x.pasid = (rnd() & 3) ? (u32)(rnd() % 64) : (u32)rnd();
    x.addr_a = desc_addr();
    x.addr_b = desc_addr();
    x.len = chaos_len(x.addr_a, x.addr_b);
    x.status = 0;
    u64 base = (rnd() & 1) ? d->ring : scratch_page();
    memcpy((void *)(base + 64 * (rnd() % 64)), &x, sizeof(x));
    sva_write32(d, SVA_REG_TAIL, (u32)(rnd() % 64));
}

static void scratch_words(void)
{
    u64 *p = (u64 *)scratch_page();
    u32 n = 1 + (u32)(rnd() % 16);
    u32 at = (u32)(rnd() % 512);
    for (u32 i = 0; i < n; i++)
        p[(at + i) % 512] = chaos_word();
}

static void queue_descriptor(void)
{
    u64 d[4];
    d[0] = (rnd() & 3) ? ((rnd() & ~0xfULL) | (rnd() % 16)) : (rnd() % 10);
    d[1] = scratch_addr() & ~3ULL; /* a wait's status address stays in scratch */
    d[2] = chaos_word();
    d[3] = chaos_word();
    u64 iqa = vtd_read64(VTD_IQA);
    u64 qbase = iqa & ~0xfffULL;
    if (qbase >= scratch_base() && qbase < scratch_base() + SCRATCH_SIZE) {
        u32 dsize = (iqa & (1u << 11)) ? 32 : 16;
        u32 slot = (u32)(rnd() % (4096 / dsize));
        memcpy((void *)(qbase + (u64)slot * dsize), d, dsize);
        vtd_write64(VTD_IQT, (u64)((slot + 1) % (4096 / dsize)) * dsize);
    } else {
        /* the driver's own queue: submit through it */
        vtd_qi_submit(d);
    }
}

static void pasid_table_words(void)
{
    /* Unused PASID slots (16-63) of an attached device's real PASID table
     * get random entries whose pointers stay in scratch; the unit reaches
     * them through the real context entry. */
    struct sva_dev *d = &pf.sva[rnd() % pf.nsva];
    u64 table = vtd_pasid_table(d->pci.rid);
    if (!table)
        return;
    u64 *e = (u64 *)(table + 64 * (16 + rnd() % 48));
    e[rnd() % 8] = chaos_word();
}

int scenario_chaos(const struct boot_info *bi)
{
    (void)bi;
    if (!platform_up(&pf, true, true))
        return EXIT_FAIL;
    u64 iters = cmdline_u64("chaos_iters", DEFAULT_ITERS);
    u64 seed = cmdline_u64("seed", 1);
    if (iters > MAX_ITERS) {
        kprintf("stalewalk-guest: error=bad_chaos_iters max=%llu\n", MAX_ITERS);
        return EXIT_USAGE;
    }
    rng = seed * 0x9e3779b97f4a7c15ULL + 0x1234567;
    if (!rng)
        rng = 1;
    msi_addr = lapic_msi_address();
    static struct proc p;
    if (!proc_create(&p) || !uparams_map(&p) || !proc_bind(&p, pf.rids, pf.nsva, 1, false)) {
        kprintf("stalewalk-guest: error=setup\n");
        return EXIT_FAIL;
    }
    /* the scratch area: random entries, reachable through the DMA domain */
    for (u64 *w = (u64 *)scratch; w < (u64 *)(scratch + SCRATCH_SIZE); w++)
        *w = chaos_word();
    if (!vtd_dma_map(scratch_base(), SCRATCH_SIZE)) {
        kprintf("stalewalk-guest: error=dma_map\n");
        return EXIT_FAIL;
    }
    u64 counts[9] = {0}, heals = 0;
    for (u64 i = 0; i < iters; i++) {
        u32 what = (u32)(rnd() % 9);
        /* Now and then the driver takes the unit back (queue errors
         * cleared, its own queue and root table), so later chaos reaches
         * the queue and the real tables again. */
        if (rnd() % 32 == 0) {
            heals += vtd_reinit_registers();
            continue;
        }
        struct sva_dev *d = &pf.sva[rnd() % pf.nsva];
        counts[what]++;
        switch (what) {
        case 0:
        case 1:
            viommu_write();
            break;
        case 2:
            device_write(d);
            break;
        case 3:
            config_write(d);
            break;
        case 4:
            scratch_words();
            break;
        case 5:
            ring_descriptor(d);
            break;
        case 6:
            queue_descriptor();
            break;
        case 7:
            pasid_table_words();
            break;
        case 8:
            vtd_read64((u32)(rnd() % 4096) & ~7u);
            sva_read32(d, (u32)(rnd() % SVA_BAR_SIZE) & ~3u);
            break;
        }
    }
    /* recovery: devices quiet, the unit reprogrammed, one DMA checked */
    for (u32 k = 0; k < pf.nsva; k++) {
        struct sva_dev *d = &pf.sva[k];
        pci_write16(&d->pci, 4, 0x6);
        pci_write16(&d->pci, d->pasid_cap + 6, 0x5);
        pci_write16(&d->pci, d->ats_cap + 6, 0x8000);
        if (d->pri_cap)
            pci_write16(&d->pci, d->pri_cap + 4, 0x2);
        pci_msix_set(&d->pci, 0, msi_addr, VEC_SVA_DONE + k);
        pci_msix_set(&d->pci, 1, msi_addr, VEC_SVA_ERROR + k);
    }
    bool unit_ok = vtd_reinit_registers();
    u32 rings_ok = 0;
    for (u32 k = 0; k < pf.nsva; k++)
        rings_ok += sva_ring_reset(&pf.sva[k]);
    /* Every device, not just the first, must DMA through the vIOMMU into
     * the process again: a distinct pattern each, read back by the CPU. */
    u32 dma_ok = 0;
    for (u32 k = 0; k < pf.nsva; k++) {
        u64 off = 0x800 + 0x40 * (u64)k;
        u64 pattern = 0x7777777777777700ULL | k;
        u8 st = sva_fill(&pf.sva[k], 1, 0, USER_PARAM_VA + off, pattern, 64);
        if (st == SVA_ST_SUCCESS && *(u64 *)(p.pa[0] + off) == pattern)
            dma_ok++;
    }
    bool recovered = unit_ok && rings_ok == pf.nsva && dma_ok == pf.nsva;
    vtd_fault_service(NULL);
    kprintf("stalewalk-guest: scenario=chaos seed=%llu iters=%llu viommu_writes=%llu "
            "device_writes=%llu config_writes=%llu table_writes=%llu ring_descriptors=%llu "
            "queue_descriptors=%llu pasid_entry_writes=%llu reads=%llu driver_resets=%llu\n",
            seed, iters, counts[0] + counts[1], counts[2], counts[3], counts[4], counts[5],
            counts[6], counts[7], counts[8], heals);
    /* The verdict is what was checked, not that the code got here: the
     * unit reprogrammed, every ring reset and every device's DMA landed. */
    kprintf("stalewalk-guest: chaos_survived=%u recovered=%u unit_ok=%u rings_ok=%u/%u "
            "dma_ok=%u/%u unexpected_irqs=%llu\n",
            recovered, recovered, unit_ok, rings_ok, pf.nsva, dma_ok, pf.nsva, irq_unexpected());
    kprintf("stalewalk-guest: verdict=%s\n", recovered ? "pass" : "fail");
    return recovered ? EXIT_OK : EXIT_FAIL;
}
