/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * sva_dma: user interface of the driver for the stalewalk SVA DMA test
 * device (docs/DEVICES.md, "SVA DMA test device").
 *
 * Opening /dev/sva_dmaN binds the caller's address space to the device
 * (iommu_sva_bind_device()); every operation then runs on the caller's
 * virtual addresses, tagged with the PASID of that bond.
 */
#ifndef _UAPI_SVA_DMA_H
#define _UAPI_SVA_DMA_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * sva_dma_op.flags, set by the caller.  PRIV and NO_PASID need
 * CAP_SYS_RAWIO and exclude each other; WRITE applies to probe and
 * ats_translate only.
 */
#define SVA_DMA_F_PRIV		(1U << 0)	/* supervisor request */
#define SVA_DMA_F_WRITE		(1U << 1)	/* probe/ats_translate: write */
#define SVA_DMA_F_NO_PASID	(1U << 2)	/* request without PASID */
#define SVA_DMA_F_ALL		(SVA_DMA_F_PRIV | SVA_DMA_F_WRITE | \
				 SVA_DMA_F_NO_PASID)

/* sva_dma_op.status, as the device reports it */
#define SVA_DMA_ST_SUCCESS		1
#define SVA_DMA_ST_TRANSLATION_FAULT	2
#define SVA_DMA_ST_BAD_OPCODE		3
#define SVA_DMA_ST_BAD_DESCRIPTOR	4
#define SVA_DMA_ST_BAD_LENGTH		5
#define SVA_DMA_ST_PASID_DISABLED	6
#define SVA_DMA_ST_PAGE_RESPONSE_FAILURE 7
#define SVA_DMA_ST_ATS_DISABLED		8
#define SVA_DMA_ST_NOT_MEMORY		9	/* translated to no memory */

/* sva_dma_op.cflags, as the device reports them */
#define SVA_DMA_CF_PAGE_REQUESTED	(1U << 0)
#define SVA_DMA_CF_RETRIED		(1U << 1)
#define SVA_DMA_CF_MISMATCH		(1U << 2)
#define SVA_DMA_CF_ATC_HIT		(1U << 3)

/**
 * struct sva_dma_op - one operation, in and out
 * @addr_a: copy source, compare first buffer, probe/ats_translate address
 * @addr_b: copy/fill destination, compare second buffer
 * @len: bytes for copy, fill and compare
 * @pattern: fill pattern (8 bytes, repeated); probe with write: byte 0
 * @result: probe: the byte; compare: first differing offset (len if
 *	equal); ats_translate: page address | 1 (R) | 2 (W); on a
 *	translation fault: the faulting address
 * @flags: SVA_DMA_F_*
 * @status: SVA_DMA_ST_*
 * @fault_reason: VT-d fault reason when status is TRANSLATION_FAULT
 * @cflags: SVA_DMA_CF_*
 */
struct sva_dma_op {
	__u64 addr_a;
	__u64 addr_b;
	__u64 len;
	__u64 pattern;
	__u64 result;
	__u32 flags;
	__u8 status;
	__u8 fault_reason;
	__u16 cflags;
};

/**
 * struct sva_dma_info - what the bond and the device look like
 * @pasid: PASID of the caller's address space on this device
 * @max_transfer: largest len of one operation
 * @ops_completed: device counter OPS_COMPLETED
 * @ops_failed: device counter OPS_FAILED
 * @page_requests: device counter PAGE_REQUESTS
 * @atc_entries: device counter ATC_ENTRIES
 * @atc_invalidations: device counter ATC_INVALIDATIONS
 */
struct sva_dma_info {
	__u32 pasid;
	__u32 max_transfer;
	__u64 ops_completed;
	__u64 ops_failed;
	__u64 page_requests;
	__u64 atc_entries;
	__u64 atc_invalidations;
};

#define SVA_DMA_IOC_MAGIC	'S'
#define SVA_DMA_IOC_INFO	_IOR(SVA_DMA_IOC_MAGIC, 0, struct sva_dma_info)
#define SVA_DMA_IOC_COPY	_IOWR(SVA_DMA_IOC_MAGIC, 1, struct sva_dma_op)
#define SVA_DMA_IOC_FILL	_IOWR(SVA_DMA_IOC_MAGIC, 2, struct sva_dma_op)
#define SVA_DMA_IOC_COMPARE	_IOWR(SVA_DMA_IOC_MAGIC, 3, struct sva_dma_op)
#define SVA_DMA_IOC_PROBE	_IOWR(SVA_DMA_IOC_MAGIC, 4, struct sva_dma_op)
#define SVA_DMA_IOC_ATS_TRANSLATE _IOWR(SVA_DMA_IOC_MAGIC, 5, struct sva_dma_op)

#endif /* _UAPI_SVA_DMA_H */
