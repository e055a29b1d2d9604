/* virtio_blk.h - a polled virtio-blk driver over the modern virtio-pci
 * transport (virtio 1.x: vendor capabilities locate the common, notify,
 * ISR and device configuration structures). The device's DMA goes through
 * the vIOMMU (VIRTIO_F_ACCESS_PLATFORM): the queue and every buffer must be
 * mapped in the DMA domain, and addresses given to the device are IOVAs
 * (identity-mapped here). One request in flight at a time. */
#ifndef MINI_VIRTIO_BLK_H
#define MINI_VIRTIO_BLK_H

#include "pci.h"
#include "types.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_BLK_DEVICE 0x1042
/* Descriptors in our queue (three per request; a power of two). */
#define VBLK_QUEUE_SIZE 8

struct vblk {
    struct pci_dev pci;
    u64 common, notify, isr, devcfg; /* MMIO addresses */
    u32 notify_mult;
    u64 capacity; /* 512-byte sectors */
    bool read_only;
    u64 ring;     /* one page: descriptors, available ring, used ring */
    u64 req;      /* one page: request header and status byte */
    u16 avail_idx, used_seen;
    u16 notify_off;
};

/* Finds virtio-blk among `devs` and brings it to DRIVER_OK; false with an
 * error line when it is absent or refuses the features. */
bool vblk_init(struct vblk *b, const struct pci_dev *devs, u32 n);
/* Reads or writes `len` bytes (a multiple of 512) at `sector` from/to the
 * buffer at physical `buf` (must be mapped in the DMA domain). Returns the
 * virtio status (0 OK, 1 IOERR, 2 UNSUPP) or 0xff when nothing came back. */
u8 vblk_rw(struct vblk *b, bool write, u64 sector, u64 buf, u32 len);

#endif
