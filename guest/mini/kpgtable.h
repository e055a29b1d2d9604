/* kpgtable.h - a small model of Linux's kernel page-table life cycle:
 * a vmalloc-like region in the kernel half (one PML4 slot whose PDPT is
 * shared by every process PGD), 4 KiB supervisor mappings in it, and PTE
 * tables freed when a huge mapping replaces them or the 2 MiB region is
 * unmapped (as pmd_free_pte_page does), and PDs freed with their PTE
 * tables when a 1 GiB mapping replaces them or the area is unmapped (as
 * pud_free_pmd_page does). How a freed table page goes back
 * to the page allocator is the policy (kpgtable_free= on the command line,
 * the names of the Linux patch):
 *   sync     - at once, no IOMMU flush (6.12 with SVA: vulnerable)
 *   deferred - queued; the worker sends one kernel-range PASID-based IOTLB
 *              invalidation per bound PASID per batch, then frees the batch
 *   eager    - one such invalidation per freed page, then the free
 * Each page is announced on the hint port (0xf0, pfn) at the moment it is
 * returned to the allocator. */
#ifndef MINI_KPGTABLE_H
#define MINI_KPGTABLE_H

#include "types.h"

#define VMALLOC_START 0xffffc90000000000ULL
#define VMALLOC_PML4_INDEX 402
/* 2 MiB regions the model hands out: one PD page (1 GiB). */
#define VMALLOC_REGIONS 512
#define PMD_SIZE 0x200000ULL
/* 1 GiB areas (PDPT entries); area 0 is the 2 MiB regions' PD, which
 * stays. */
#define VMALLOC_AREAS 512
#define PUD_SIZE 0x40000000ULL
/* Deferred frees per batch before the worker runs on its own. */
#define KPT_BATCH 64
#define PORT_PGTABLE_FREED 0xf0

enum kpt_policy { KPT_SYNC, KPT_DEFERRED, KPT_EAGER };

struct kpt_stats {
    u64 tables_allocated; /* PTE tables and PDs created */
    u64 frees;            /* table pages released by the page-table code */
    u64 returned;         /* pages given back to the allocator (hinted) */
    u64 batches;          /* deferred worker runs that freed something */
    u64 invalidations;    /* kernel-range IOTLB invalidations sent */
    u64 max_queued;
};

/* Parses kpgtable_free= (default sync); false on an unknown value. */
bool kpgtable_parse_policy(const char *s, enum kpt_policy *out);
/* Sets the policy and creates the vmalloc PDPT in the kernel's PGD. */
bool kpgtable_init(enum kpt_policy policy);
enum kpt_policy kpgtable_policy(void);
const char *kpgtable_policy_name(enum kpt_policy p);
/* Copies the kernel half (PML4 slots 256-511) into a process PGD. */
void kpgtable_share(u64 pml4);
/* Clears the kernel half of a process PGD before it is torn down. */
void kpgtable_unshare(u64 pml4);
/* Address of 2 MiB region `i` of the vmalloc area. */
u64 vmalloc_region(u32 i);
/* Address of 1 GiB area `i` (1..511 after wrapping; never area 0). */
u64 vmalloc_area(u32 i);
/* Maps one 4 KiB page (supervisor, RW) at `va` in the vmalloc slot,
 * creating the PD and PTE table as needed. */
bool vmap_page(u64 va, u64 pa);
/* Unmaps the 2 MiB region containing `va`: PDE cleared, PTE table freed. */
bool vunmap_region(u64 va);
/* Replaces the PTE table of the region by a 2 MiB mapping of `pa`. */
bool vmap_huge(u64 va, u64 pa);
/* Replaces a 1 GiB area's PD by a 1 GiB mapping of `pa`: the PTE tables
 * under it and the PD are freed (as pud_free_pmd_page does). */
bool vmap_huge_pud(u64 va, u64 pa);
/* Unmaps a 1 GiB area: PDPT entry cleared, PD and PTE tables freed. */
bool vunmap_area(u64 va);
/* The PD page currently linked for `va` (0 if none). */
u64 vmalloc_pmd_table(u64 va);
/* The PTE table page currently linked for `va` (0 if none). */
u64 vmalloc_pte_table(u64 va);
/* The deferred worker: flush and free what is queued (no-op otherwise). */
void kpgtable_tick(void);
const struct kpt_stats *kpgtable_stats(void);

#endif
