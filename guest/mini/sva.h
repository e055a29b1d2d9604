/* sva.h - driver for stalewalk's SVA DMA test device (docs/DEVICES.md):
 * PASID/ATS/PRI enables, MSI-X, a descriptor ring in kernel memory mapped
 * in the DMA domain, and synchronous operations (submit, doorbell, poll
 * the completion; page requests are serviced while the device waits). */
#ifndef MINI_SVA_H
#define MINI_SVA_H

#include "pci.h"
#include "types.h"

#define SVA_VENDOR 0x5357
#define SVA_DEVICE 0x5641
#define SVA_MAX_DEVS 4
#define SVA_RING_ENTRIES 64

/* BAR0 registers */
#define SVA_REG_ID 0x00
#define SVA_REG_RING_BASE 0x10
#define SVA_REG_RING_ENTRIES 0x18
#define SVA_REG_CTRL 0x1c
#define SVA_REG_HEAD 0x20
#define SVA_REG_TAIL 0x24
#define SVA_REG_STATUS 0x28
#define SVA_REG_ERROR 0x2c
#define SVA_REG_OPS_COMPLETED 0x30
#define SVA_REG_PAGE_REQUESTS 0x40
#define SVA_REG_PAGE_RESPONSES 0x48
#define SVA_REG_ATC_ENTRIES 0x50
#define SVA_REG_ATC_INVALIDATIONS 0x58
#define SVA_REG_ATC_REMOVED 0x60
#define SVA_BAR_SIZE 0x4000

enum sva_op { SVA_NOP, SVA_COPY, SVA_FILL, SVA_COMPARE, SVA_PROBE, SVA_ATS };
#define SVA_F_PASID 1
#define SVA_F_PRIV 2
#define SVA_F_IRQ 4
#define SVA_F_WRITE 8

enum sva_status {
    SVA_ST_PENDING = 0,
    SVA_ST_SUCCESS = 1,
    SVA_ST_FAULT = 2,
    SVA_ST_TIMEOUT = 0xff, /* driver-side: no completion came */
};

struct sva_desc {
    u8 opcode, flags;
    u16 rsvd0;
    u32 pasid;
    u64 addr_a, addr_b, len, pattern, rsvd1;
    u8 status, fault_reason;
    u16 cflags;
    u32 rsvd2;
    u64 result;
};

struct sva_dev {
    struct pci_dev pci;
    u32 index;
    u64 bar;
    u64 ring; /* physical = kernel virtual (identity) */
    u32 tail;
    u32 pasid_cap, ats_cap, pri_cap;
    bool pri_on;
};

/* Finds the SVA devices among `devs`, enables memory/bus master, PASID
 * (privileged mode too), ATS and, when `pri`, PRI; attaches each to the
 * IOMMU; sets up the ring (mapped in the DMA domain) and MSI-X. */
u32 sva_probe_all(const struct pci_dev *devs, u32 n, bool pri, struct sva_dev *out, u32 max);
/* Runs one operation to completion: fills `d`'s status/result fields.
 * Returns the status. */
u8 sva_run(struct sva_dev *s, struct sva_desc *d);
/* Shorthands. */
u8 sva_copy(struct sva_dev *s, u32 pasid, u32 flags, u64 src, u64 dst, u64 len);
u8 sva_fill(struct sva_dev *s, u32 pasid, u32 flags, u64 dst, u64 pattern, u64 len);
u8 sva_probe(struct sva_dev *s, u32 pasid, u32 flags, u64 addr, u64 *result, u8 *reason);
u8 sva_ats(struct sva_dev *s, u32 pasid, u64 addr, u64 *result, u16 *cflags);
u32 sva_read32(const struct sva_dev *s, u32 off);
u64 sva_read64(const struct sva_dev *s, u32 off);
void sva_write32(const struct sva_dev *s, u32 off, u32 v);
/* Re-initialises the ring after misuse (CTRL off, base/entries, on). */
bool sva_ring_reset(struct sva_dev *s);

#endif
