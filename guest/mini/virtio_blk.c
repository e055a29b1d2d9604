/* virtio_blk.c - the virtio-blk driver (see virtio_blk.h). */
#include "virtio_blk.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "memory.h"
#include "vtd.h"

#define VIRTIO_CAP_VENDOR 0x09
#define CFG_COMMON 1
#define CFG_NOTIFY 2
#define CFG_ISR 3
#define CFG_DEVICE 4
/* Vendor capabilities looked at (the device has four). */
#define MAX_VENDOR_CAPS 16

/* Common configuration offsets (virtio 1.x, 4.1.4.3). */
#define C_DFSELECT 0x00
#define C_DF 0x04
#define C_GFSELECT 0x08
#define C_GF 0x0c
#define C_MSIX_CONFIG 0x10
#define C_STATUS 0x14
#define C_Q_SELECT 0x16
#define C_Q_SIZE 0x18
#define C_Q_MSIX 0x1a
#define C_Q_ENABLE 0x1c
#define C_Q_NOTIFY_OFF 0x1e
#define C_Q_DESC 0x20
#define C_Q_DRIVER 0x28
#define C_Q_DEVICE 0x30

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8

#define F_RO 5
#define F_VERSION_1 32
#define F_ACCESS_PLATFORM 33

#define VRING_NEXT 1
#define VRING_WRITE 2
#define NO_VECTOR 0xffff

/* Polls of the used ring per request: the device answers inside the
 * notify write, so this only bounds a broken device. */
#define USED_POLLS 100000

/* Ring page layout. */
#define DESC_OFF 0x000
#define AVAIL_OFF 0x400
#define USED_OFF 0x800

struct vdesc {
    u64 addr;
    u32 len;
    u16 flags, next;
};

static void w8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static u8 r8(u64 a) { return *(volatile u8 *)a; }
static void w16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static u16 r16(u64 a) { return *(volatile u16 *)a; }
static void w64(u64 a, u64 v)
{
    mmio_write32(a, (u32)v);
    mmio_write32(a + 4, (u32)(v >> 32));
}

static bool find_caps(struct vblk *b)
{
    const struct pci_dev *p = &b->pci;
    u32 off = pci_read32(p, 0x34) & 0xfc;
    for (u32 i = 0; i < MAX_VENDOR_CAPS && off >= 0x40; i++) {
        u32 h = pci_read32(p, off);
        if ((h & 0xff) == VIRTIO_CAP_VENDOR) {
            u8 type = (u8)(h >> 24);
            u8 bar = (u8)pci_read32(p, off + 4);
            u64 addr = pci_bar(p, bar);
            if (addr)
                addr += pci_read32(p, off + 8);
            if (type == CFG_COMMON)
                b->common = addr;
            else if (type == CFG_NOTIFY) {
                b->notify = addr;
                b->notify_mult = pci_read32(p, off + 16);
            } else if (type == CFG_ISR)
                b->isr = addr;
            else if (type == CFG_DEVICE)
                b->devcfg = addr;
        }
        off = (h >> 8) & 0xfc;
    }
    return b->common && b->notify && b->devcfg;
}

bool vblk_init(struct vblk *b, const struct pci_dev *devs, u32 n)
{
    memset(b, 0, sizeof(*b));
    for (u32 i = 0; i < n && !b->pci.vendor; i++)
        if (devs[i].vendor == VIRTIO_VENDOR && devs[i].device == VIRTIO_BLK_DEVICE)
            b->pci = devs[i];
    if (!b->pci.vendor) {
        kprintf("stalewalk-guest: error=no_virtio_blk\n");
        return false;
    }
    pci_enable(&b->pci);
    if (!find_caps(b)) {
        kprintf("stalewalk-guest: error=virtio_caps\n");
        return false;
    }
    if (vtd_present() && !vtd_attach(b->pci.rid, false, false)) {
        kprintf("stalewalk-guest: error=vtd_attach rid=0x%x\n", b->pci.rid);
        return false;
    }
    u64 c = b->common;
    w8(c + C_STATUS, 0);
    w8(c + C_STATUS, S_ACK);
    w8(c + C_STATUS, S_ACK | S_DRIVER);
    mmio_write32(c + C_DFSELECT, 0);
    u32 lo = mmio_read32(c + C_DF);
    mmio_write32(c + C_DFSELECT, 1);
    u32 hi = mmio_read32(c + C_DF);
    u64 offered = lo | ((u64)hi << 32);
    u64 want = (1ULL << F_VERSION_1) | (1ULL << F_ACCESS_PLATFORM);
    if ((offered & want) != want) {
        kprintf("stalewalk-guest: error=virtio_features offered=0x%llx\n", offered);
        return false;
    }
    b->read_only = (offered >> F_RO) & 1;
    u64 accept = want | (offered & (1ULL << F_RO));
    mmio_write32(c + C_GFSELECT, 0);
    mmio_write32(c + C_GF, (u32)accept);
    mmio_write32(c + C_GFSELECT, 1);
    mmio_write32(c + C_GF, (u32)(accept >> 32));
    w8(c + C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(r8(c + C_STATUS) & S_FEATURES_OK)) {
        kprintf("stalewalk-guest: error=virtio_features_refused\n");
        return false;
    }
    b->ring = page_alloc();
    b->req = page_alloc();
    if (!b->ring || !b->req || !vtd_dma_map(b->ring, PAGE_SIZE) || !vtd_dma_map(b->req, PAGE_SIZE))
        return false;
    w16(c + C_MSIX_CONFIG, NO_VECTOR);
    w16(c + C_Q_SELECT, 0);
    u16 max = r16(c + C_Q_SIZE);
    if (max < VBLK_QUEUE_SIZE) {
        kprintf("stalewalk-guest: error=virtio_queue_size size=%u\n", max);
        return false;
    }
    w16(c + C_Q_SIZE, VBLK_QUEUE_SIZE);
    w16(c + C_Q_MSIX, NO_VECTOR);
    w64(c + C_Q_DESC, b->ring + DESC_OFF);
    w64(c + C_Q_DRIVER, b->ring + AVAIL_OFF);
    w64(c + C_Q_DEVICE, b->ring + USED_OFF);
    b->notify_off = r16(c + C_Q_NOTIFY_OFF);
    w16(c + C_Q_ENABLE, 1);
    w8(c + C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    b->capacity = mmio_read32(b->devcfg) | ((u64)mmio_read32(b->devcfg + 4) << 32);
    return true;
}

u8 vblk_rw(struct vblk *b, bool write, u64 sector, u64 buf, u32 len)
{
    struct vdesc *d = (struct vdesc *)(b->ring + DESC_OFF);
    volatile u16 *avail = (volatile u16 *)(b->ring + AVAIL_OFF);
    volatile u16 *used_idx = (volatile u16 *)(b->ring + USED_OFF + 2);
    u32 *hdr = (u32 *)b->req;
    volatile u8 *status = (volatile u8 *)(b->req + 16);
    hdr[0] = write ? 1 : 0; /* VIRTIO_BLK_T_OUT / T_IN */
    hdr[1] = 0;
    *(u64 *)(b->req + 8) = sector;
    *status = 0xff;
    d[0] = (struct vdesc){b->req, 16, VRING_NEXT, 1};
    d[1] = (struct vdesc){buf, len, (u16)(VRING_NEXT | (write ? 0 : VRING_WRITE)), 2};
    d[2] = (struct vdesc){b->req + 16, 1, VRING_WRITE, 0};
    avail[2 + (b->avail_idx % VBLK_QUEUE_SIZE)] = 0; /* head descriptor 0 */
    __asm__ volatile("" ::: "memory");
    b->avail_idx++;
    avail[1] = b->avail_idx;
    __asm__ volatile("" ::: "memory");
    mmio_write32(b->notify + (u64)b->notify_off * b->notify_mult, 0);
    for (u32 i = 0; i < USED_POLLS && *used_idx == b->used_seen; i++)
        cpu_relax();
    if (*used_idx == b->used_seen)
        return 0xff;
    b->used_seen = *used_idx;
    if (b->isr)
        (void)r8(b->isr);
    return *status;
}
