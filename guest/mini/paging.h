/* paging.h - 4-level x86-64 page tables: address spaces that share the
 * kernel's identity map and add user mappings. */
#ifndef MINI_PAGING_H
#define MINI_PAGING_H

#include "types.h"

#define PTE_P (1ULL << 0)
#define PTE_W (1ULL << 1)
#define PTE_U (1ULL << 2)
#define PTE_PS (1ULL << 7)
#define PTE_ADDR 0x000ffffffffff000ULL

struct address_space {
    u64 pml4; /* physical address of the top-level table */
};

/* A new address space whose kernel part (PML4 slot 0: the boot identity
 * map of the first 4 GiB, supervisor only) is shared with the kernel. */
bool as_create(struct address_space *as);
/* Maps one 4 KiB page; false when a table page cannot be allocated or the
 * slot is already mapped by a large page. */
bool as_map(struct address_space *as, u64 va, u64 pa, u64 flags);
/* Maps one 2 MiB page (PS set in the PDE) at 2 MiB-aligned `va` and `pa`;
 * false when unaligned, a table cannot be allocated or the PDE is in use. */
bool as_map_2m(struct address_space *as, u64 va, u64 pa, u64 flags);
/* Frees the user part's table pages (not the mapped pages) and the PML4. */
void as_destroy(struct address_space *as);
/* The kernel's own top-level table (the boot tables). */
u64 kernel_pml4(void);

#endif
