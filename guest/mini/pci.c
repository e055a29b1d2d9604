/* pci.c - ECAM configuration accesses and the helpers drivers need. Loops
 * over capability lists are bounded (a hostile or broken device cannot
 * make the kernel spin). */
#include "pci.h"
#include "io.h"

/* Capability list entries followed at most (48 standard ones fit in 256
 * bytes; extended ones in 4 KiB). */
#define MAX_CAPS 48
#define MAX_EXT_CAPS 64

static u64 ecam;

void pci_init(u64 ecam_base) { ecam = ecam_base; }

static u64 cfg_addr(const struct pci_dev *d, u32 off)
{
    return ecam + ((u64)d->dev << 15) + ((u64)d->fn << 12) + (off & 0xffc);
}

u32 pci_read32(const struct pci_dev *d, u32 off) { return mmio_read32(cfg_addr(d, off)); }
void pci_write32(const struct pci_dev *d, u32 off, u32 v) { mmio_write32(cfg_addr(d, off), v); }

u16 pci_read16(const struct pci_dev *d, u32 off)
{
    return (u16)(pci_read32(d, off) >> ((off & 2) * 8));
}

void pci_write16(const struct pci_dev *d, u32 off, u16 v)
{
    *(volatile u16 *)(cfg_addr(d, off) + (off & 2)) = v;
}

u32 pci_enumerate(struct pci_dev *out, u32 max)
{
    u32 n = 0;
    if (!ecam)
        return 0;
    for (u8 dev = 0; dev < PCI_MAX_DEVICES && n < max; dev++) {
        struct pci_dev d = {.dev = dev, .fn = 0};
        u32 id = pci_read32(&d, 0);
        if ((id & 0xffff) == 0xffff || id == 0)
            continue;
        d.vendor = (u16)id;
        d.device = (u16)(id >> 16);
        d.class_rev = pci_read32(&d, 8);
        d.rid = (u16)(dev << 3);
        out[n++] = d;
    }
    return n;
}

u64 pci_bar(const struct pci_dev *d, u32 bar)
{
    if (bar > 5)
        return 0;
    u32 lo = pci_read32(d, 0x10 + 4 * bar);
    if (lo & 1)
        return 0;
    u64 addr = lo & ~0xfULL;
    if (((lo >> 1) & 3) == 2 && bar < 5)
        addr |= (u64)pci_read32(d, 0x14 + 4 * bar) << 32;
    return addr;
}

void pci_enable(const struct pci_dev *d) { pci_write16(d, 4, pci_read16(d, 4) | 0x6); }

u32 pci_find_cap(const struct pci_dev *d, u8 id)
{
    if (!(pci_read16(d, 6) & 0x10))
        return 0;
    u32 off = pci_read32(d, 0x34) & 0xfc;
    for (u32 i = 0; i < MAX_CAPS && off >= 0x40; i++) {
        u32 h = pci_read32(d, off);
        if ((h & 0xff) == id)
            return off;
        off = (h >> 8) & 0xfc;
    }
    return 0;
}

u32 pci_find_ext_cap(const struct pci_dev *d, u16 id)
{
    u32 off = 0x100;
    for (u32 i = 0; i < MAX_EXT_CAPS && off >= 0x100 && off < 0x1000; i++) {
        u32 h = pci_read32(d, off);
        if (h == 0 || h == 0xffffffff)
            return 0;
        if ((h & 0xffff) == id)
            return off;
        off = (h >> 20) & 0xffc;
    }
    return 0;
}

bool pci_msix_set(const struct pci_dev *d, u32 vector, u64 addr, u32 data)
{
    u32 cap = pci_find_cap(d, PCI_CAP_MSIX);
    if (!cap)
        return false;
    u16 ctl = pci_read16(d, cap + 2);
    if (vector > (ctl & 0x7ffu))
        return false;
    u32 tbl = pci_read32(d, cap + 4);
    u64 bar = pci_bar(d, tbl & 7);
    if (!bar)
        return false;
    u64 e = bar + (tbl & ~7u) + 16ULL * vector;
    mmio_write32(e, (u32)addr);
    mmio_write32(e + 4, (u32)(addr >> 32));
    mmio_write32(e + 8, data);
    mmio_write32(e + 12, 0);
    pci_write16(d, cap + 2, (u16)((ctl | 0x8000) & ~0x4000));
    return true;
}
