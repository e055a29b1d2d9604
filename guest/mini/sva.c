/* sva.c - the SVA DMA test device driver (see sva.h). */
#include "sva.h"
#include "console.h"
#include "io.h"
#include "irq.h"
#include "lib.h"
#include "memory.h"
#include "vtd.h"

/* Polls of a completion before the driver gives up on an operation. The
 * device completes synchronously inside the doorbell write, so a handful
 * suffice; page requests add a round trip through the PRQ. */
#define COMPLETION_POLLS 1000
/* Page-request round trips serviced for one operation. */
#define PRQ_ROUNDS 32

u32 sva_read32(const struct sva_dev *s, u32 off) { return mmio_read32(s->bar + off); }
void sva_write32(const struct sva_dev *s, u32 off, u32 v) { mmio_write32(s->bar + off, v); }
u64 sva_read64(const struct sva_dev *s, u32 off) { return *(volatile u64 *)(s->bar + off); }

bool sva_ring_reset(struct sva_dev *s)
{
    sva_write32(s, SVA_REG_CTRL, 0);
    sva_write32(s, SVA_REG_ERROR, 0);
    *(volatile u64 *)(s->bar + SVA_REG_RING_BASE) = s->ring;
    sva_write32(s, SVA_REG_RING_ENTRIES, SVA_RING_ENTRIES);
    sva_write32(s, SVA_REG_CTRL, 1);
    s->tail = 0;
    return sva_read32(s, SVA_REG_STATUS) & 1;
}

static bool setup(struct sva_dev *s, bool pri)
{
    const struct pci_dev *p = &s->pci;
    pci_enable(p);
    s->bar = pci_bar(p, 0);
    if (!s->bar || sva_read32(s, SVA_REG_ID) != 0x53564131) {
        kprintf("stalewalk-guest: error=sva_bar dev=%u bar=0x%llx\n", p->dev, s->bar);
        return false;
    }
    s->pasid_cap = pci_find_ext_cap(p, PCI_EXT_CAP_PASID);
    s->ats_cap = pci_find_ext_cap(p, PCI_EXT_CAP_ATS);
    s->pri_cap = pci_find_ext_cap(p, PCI_EXT_CAP_PRI);
    if (!s->pasid_cap || !s->ats_cap) {
        kprintf("stalewalk-guest: error=sva_caps dev=%u\n", p->dev);
        return false;
    }
    /* PASID control: enable 0, privileged mode 2 */
    pci_write16(p, s->pasid_cap + 6, 0x5);
    /* ATS control: enable 15, STU 0 */
    pci_write16(p, s->ats_cap + 6, 0x8000);
    s->pri_on = false;
    if (pri && s->pri_cap && (vtd_ecap() & (1ULL << 29))) {
        pci_write16(p, s->pri_cap + 4, 0x2);       /* reset */
        pci_write32(p, s->pri_cap + 12, 16);       /* allocation */
        pci_write16(p, s->pri_cap + 4, 0x1);       /* enable */
        s->pri_on = true;
    }
    if (!vtd_attach(p->rid, true, s->pri_on)) {
        kprintf("stalewalk-guest: error=vtd_attach rid=0x%x\n", p->rid);
        return false;
    }
    s->ring = page_alloc();
    if (!s->ring || !vtd_dma_map(s->ring, PAGE_SIZE))
        return false;
    u64 msi = lapic_msi_address();
    pci_msix_set(p, 0, msi, VEC_SVA_DONE + s->index);
    pci_msix_set(p, 1, msi, VEC_SVA_ERROR + s->index);
    return sva_ring_reset(s);
}

u32 sva_probe_all(const struct pci_dev *devs, u32 n, bool pri, struct sva_dev *out, u32 max)
{
    u32 k = 0;
    for (u32 i = 0; i < n && k < max; i++) {
        if (devs[i].vendor != SVA_VENDOR || devs[i].device != SVA_DEVICE)
            continue;
        memset(&out[k], 0, sizeof(out[k]));
        out[k].pci = devs[i];
        out[k].index = k;
        if (!setup(&out[k], pri))
            break;
        k++;
    }
    return k;
}

u8 sva_run(struct sva_dev *s, struct sva_desc *d)
{
    u32 slot = s->tail;
    volatile struct sva_desc *r = (volatile struct sva_desc *)(s->ring + 64ULL * slot);
    d->status = 0;
    d->fault_reason = 0;
    d->cflags = 0;
    d->result = 0;
    memcpy((void *)r, d, sizeof(*d));
    s->tail = (slot + 1) % SVA_RING_ENTRIES;
    __asm__ volatile("" ::: "memory");
    sva_write32(s, SVA_REG_TAIL, s->tail);
    u8 st = r->status;
    for (u32 round = 0; st == SVA_ST_PENDING && round < PRQ_ROUNDS; round++) {
        u32 status = sva_read32(s, SVA_REG_STATUS);
        if (status & 2) { /* WAITING for a page group response */
            vtd_prq_service();
        } else if (status & 4) { /* HALTED */
            break;
        } else if (sva_read32(s, SVA_REG_HEAD) != s->tail) {
            sva_write32(s, SVA_REG_TAIL, s->tail);
        }
        for (u32 i = 0; i < COMPLETION_POLLS && (st = r->status) == SVA_ST_PENDING; i++)
            cpu_relax();
    }
    if (st == SVA_ST_PENDING) {
        kprintf("stalewalk-guest: error=sva_timeout dev=%u op=%u status=0x%x error=%u\n", s->index,
                d->opcode, sva_read32(s, SVA_REG_STATUS), sva_read32(s, SVA_REG_ERROR));
        sva_ring_reset(s);
        d->status = SVA_ST_TIMEOUT;
        return SVA_ST_TIMEOUT;
    }
    d->status = st;
    d->fault_reason = r->fault_reason;
    d->cflags = r->cflags;
    d->result = r->result;
    return st;
}

static u32 pflags(u32 pasid, u32 flags) { return (pasid ? SVA_F_PASID : 0) | flags; }

u8 sva_copy(struct sva_dev *s, u32 pasid, u32 flags, u64 src, u64 dst, u64 len)
{
    struct sva_desc d = {.opcode = SVA_COPY, .flags = (u8)pflags(pasid, flags), .pasid = pasid,
                         .addr_a = src, .addr_b = dst, .len = len};
    return sva_run(s, &d);
}

u8 sva_fill(struct sva_dev *s, u32 pasid, u32 flags, u64 dst, u64 pattern, u64 len)
{
    struct sva_desc d = {.opcode = SVA_FILL, .flags = (u8)pflags(pasid, flags), .pasid = pasid,
                         .addr_b = dst, .len = len, .pattern = pattern};
    return sva_run(s, &d);
}

u8 sva_probe(struct sva_dev *s, u32 pasid, u32 flags, u64 addr, u64 *result, u8 *reason)
{
    struct sva_desc d = {.opcode = SVA_PROBE, .flags = (u8)pflags(pasid, flags), .pasid = pasid,
                         .addr_a = addr};
    u8 st = sva_run(s, &d);
    if (result)
        *result = d.result;
    if (reason)
        *reason = d.fault_reason;
    return st;
}

u8 sva_ats(struct sva_dev *s, u32 pasid, u64 addr, u64 *result, u16 *cflags)
{
    struct sva_desc d = {.opcode = SVA_ATS, .flags = (u8)pflags(pasid, 0), .pasid = pasid,
                         .addr_a = addr};
    u8 st = sva_run(s, &d);
    if (result)
        *result = d.result;
    if (cflags)
        *cflags = d.cflags;
    return st;
}
