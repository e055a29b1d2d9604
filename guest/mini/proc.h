/* proc.h - processes as the scenarios use them: a user_process whose PGD
 * also holds the shared kernel half, pages it owns mapped at user
 * addresses, an optional SVA binding (PASID), and unmaps that send what
 * Linux 6.12 sends to the IOMMU for a bound mm. Before each return to user
 * mode the deferred kernel page-table worker gets its chance to run (the
 * model's "schedule point"). */
#ifndef MINI_PROC_H
#define MINI_PROC_H

#include "user.h"

/* Pages one process may own (mapped data pages). */
#define PROC_MAX_PAGES 96
/* Processes alive at once. */
#define PROC_MAX 8

/* User data addresses (PML4 slot 1, above the stack). */
#define USER_DATA_VA 0x0000008080000000ULL
#define USER_PARAM_VA USER_DATA_VA /* first data page: parameters */

struct proc {
    struct user_process up;
    u32 pasid; /* 0 when not bound */
    u32 npages;
    u64 va[PROC_MAX_PAGES], pa[PROC_MAX_PAGES];
};

bool proc_create(struct proc *p);
void proc_destroy(struct proc *p);
/* Allocates a page (the allocator's most recently freed one first) and
 * maps it user RW at `va`; returns its physical address or 0. */
u64 proc_map_new(struct proc *p, u64 va);
/* The physical page behind user `va` (0 when unmapped). */
u64 proc_lookup(struct proc *p, u64 va);
/* Unmaps and frees the page at `va`; invalidates the IOMMU when bound. */
bool proc_unmap(struct proc *p, u64 va);
/* Binds every SVA device in `rids` to this process with `pasid`. */
bool proc_bind(struct proc *p, const u16 *rids, u32 n, u32 pasid, bool sre);
void proc_unbind(struct proc *p, const u16 *rids, u32 n);
/* Runs a USER_TEXT function at CPL3 (after the schedule point). */
u64 proc_run(struct proc *p, void (*fn)(u64), u64 arg);
/* The live process bound with `pasid`, or NULL. */
struct proc *proc_by_pasid(u32 pasid);

#endif
