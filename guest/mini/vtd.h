/* vtd.h - a small Intel VT-d driver in scalable mode: initialisation in
 * the order Linux 6.12 uses, root/context/PASID tables, a first-stage DMA
 * domain on RID_PASID, queued invalidation with 256-bit descriptors and
 * polled wait descriptors, fault recording, the page-request queue, and
 * SVA binds of process page tables with the invalidations 6.12 sends. */
#ifndef MINI_VTD_H
#define MINI_VTD_H

#include "paging.h"
#include "types.h"

/* Domain ids: every SVA bind uses DID 1 (as 6.12's SVA domains do in
 * VTD-FACTS.md); the kernel's DMA domain on RID_PASID uses DID 2. */
#define VTD_SVA_DID 1
#define VTD_DMA_DID 2
/* PASIDs the driver hands out: 1..VTD_MAX_PASID (one PASID table). */
#define VTD_MAX_PASID 63
/* Devices (requester ids) the driver attaches. */
#define VTD_MAX_DEVICES 8
/* SVA binds alive at once (device x PASID). */
#define VTD_MAX_BINDS 32
/* Invalidation queue entries (256-bit descriptors, IQA.QS=1). */
#define VTD_QI_ENTRIES 256
/* Page-request queue: 2048 requests of 32 bytes (PQA.PQS=4). */
#define VTD_PRQ_ENTRIES 2048

/* Registers (VTD-FACTS.md). */
#define VTD_VER 0x00
#define VTD_CAP 0x08
#define VTD_ECAP 0x10
#define VTD_GCMD 0x18
#define VTD_GSTS 0x1c
#define VTD_RTADDR 0x20
#define VTD_CCMD 0x28
#define VTD_FSTS 0x34
#define VTD_FECTL 0x38
#define VTD_FEDATA 0x3c
#define VTD_FEADDR 0x40
#define VTD_FEUADDR 0x44
#define VTD_IQH 0x80
#define VTD_IQT 0x88
#define VTD_IQA 0x90
#define VTD_ICS 0x9c
#define VTD_IECTL 0xa0
#define VTD_IEDATA 0xa4
#define VTD_IEADDR 0xa8
#define VTD_IEUADDR 0xac
#define VTD_IQER 0xb0
#define VTD_PQH 0xc0
#define VTD_PQT 0xc8
#define VTD_PQA 0xd0
#define VTD_PRS 0xdc
#define VTD_PECTL 0xe0
#define VTD_PEDATA 0xe4
#define VTD_PEADDR 0xe8
#define VTD_PEUADDR 0xec

/* One decoded fault record. */
struct vtd_fault {
    u64 addr;
    u16 rid;
    u8 reason;
    bool pasid_present, write;
    u32 pasid;
};

/* One decoded page request. */
struct vtd_page_request {
    u16 rid;
    bool pasid_present, priv, read, write, last;
    u32 pasid;
    u64 addr;
    u16 group;
};

/* Answers a page request: 0 success, 1 invalid request, 0xf failure. */
typedef u8 (*vtd_prq_fn)(const struct vtd_page_request *req);

struct vtd_stats {
    u64 descriptors, waits, piotlb, pdevtlb, pasid_cache, kva_flushes;
    u64 faults, fault_irqs, page_requests, page_responses;
};

/* Brings the unit up to (not including) translation enable; false with an
 * error line when the unit lacks what the driver needs. */
bool vtd_init(u64 base, vtd_prq_fn prq, bool need_sva);
/* Attaches a device: context entry, PASID directory and table, and the
 * RID_PASID entry pointing at the DMA domain. `ats`/`pri` set DTE/PRE. */
bool vtd_attach(u16 rid, bool ats, bool pri);
/* GCMD.TE and the poll of GSTS.TES. */
bool vtd_enable_translation(void);
/* Whether a unit was initialised (false: no DMAR, DMA is untranslated). */
bool vtd_present(void);
/* Identity-maps [pa, pa+len) in the DMA domain (4 KiB pages, RW); a no-op
 * returning true without a unit. */
bool vtd_dma_map(u64 pa, u64 len);
/* Identity-maps [pa, pa+len) in the DMA domain with 2 MiB first-stage
 * leaves (RW, U), as Linux maps an aligned range when the domain's page
 * sizes include 2 MiB; both must be 2 MiB aligned and nothing mapped
 * there yet. A no-op returning true without a unit. (vtd_dma_unmap does
 * not take these apart.) */
bool vtd_dma_map_2m(u64 pa, u64 len);
/* Removes the identity mappings of [pa, pa+len) from the DMA domain and
 * sends the PASID-based IOTLB invalidation (RID_PASID, DID 2) and a wait;
 * false when a page was not mapped or the wait failed; true without a
 * unit. */
bool vtd_dma_unmap(u64 pa, u64 len);
/* The DMA domain's first-stage table (for inspection). */
struct address_space *vtd_dma_domain(void);

/* SVA: writes the PASID entry of `rid`/`pasid` (first-stage, pgd, DID 1,
 * SRE as asked) and sends what 6.12 sends (nothing unless CAP.CM). */
bool vtd_sva_bind(u16 rid, u32 pasid, u64 pgd, bool sre);
/* Teardown as 6.12: entry cleared, PASID-cache, PASID-based IOTLB,
 * PASID-based device-TLB, wait. */
void vtd_sva_unbind(u16 rid, u32 pasid);
/* A process page-table change for [va, va + 4K << order): page-selective
 * PASID-based IOTLB with IH=0 per bound PASID, PASID-based device-TLB for
 * each bound ATS device, then a wait. */
void vtd_mm_invalidate(u32 pasid, u64 va, u32 order);
/* The kernel-range flush of the fix (iommu_sva_invalidate_kva_range ->
 * the mm's secondary-TLB invalidation): one page-selective PASID-based
 * IOTLB (IH=0, 0xffff800000000000, AM=35) per bound PASID and a PASID-based
 * device-TLB of the same range per bound ATS device, then a wait. Returns
 * the IOTLB invalidations sent. */
u32 vtd_kva_flush(void);
/* Device-TLB invalidation of one page for `rid` (PASID-based). */
void vtd_devtlb_invalidate(u16 rid, u32 pasid, u64 va);
/* Reads and clears pending fault records; returns how many; the last one
 * goes to `last` when not NULL. Also clears overflow/queue errors. */
u32 vtd_fault_service(struct vtd_fault *last);
/* Handles queued page requests with the callback given to vtd_init and
 * answers each group; returns requests handled. */
u32 vtd_prq_service(void);

/* Raw access for the chaos scenario. */
u32 vtd_read32(u32 off);
u64 vtd_read64(u32 off);
void vtd_write32(u32 off, u32 v);
void vtd_write64(u32 off, u64 v);
/* Queues one 256-bit descriptor and rings IQT (no wait). */
void vtd_qi_submit(const u64 desc[4]);
/* A wait descriptor, polled; false on timeout or queue error. */
bool vtd_qi_wait(void);
/* Re-runs the register part of the init sequence (after chaos). */
bool vtd_reinit_registers(void);
/* The PASID table of an attached device (0 when not attached). */
u64 vtd_pasid_table(u16 rid);
const struct vtd_stats *vtd_stats(void);
/* The most recent fault record read (by the handler or a service call). */
const struct vtd_fault *vtd_last_fault(void);
u64 vtd_base(void);
u64 vtd_cap(void);
u64 vtd_ecap(void);

#endif
