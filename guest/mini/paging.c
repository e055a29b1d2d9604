/* paging.c - builds and tears down 4-level page tables. Table pages come
 * from the page allocator; intermediate entries carry P|W|U so that the
 * leaf decides the access rights. */
#include "paging.h"
#include "memory.h"

extern u64 boot_pml4[];

u64 kernel_pml4(void) { return (u64)boot_pml4; }

bool as_create(struct address_space *as)
{
    u64 pml4 = page_alloc();
    if (!pml4)
        return false;
    ((u64 *)pml4)[0] = boot_pml4[0];
    as->pml4 = pml4;
    return true;
}

static u64 *next_table(u64 *table, unsigned idx)
{
    u64 e = table[idx];
    if (e & PTE_P)
        return (e & PTE_PS) ? NULL : (u64 *)(e & PTE_ADDR);
    u64 page = page_alloc();
    if (!page)
        return NULL;
    table[idx] = page | PTE_P | PTE_W | PTE_U;
    return (u64 *)page;
}

bool as_map(struct address_space *as, u64 va, u64 pa, u64 flags)
{
    u64 *t = (u64 *)as->pml4;
    for (int level = 3; level > 0; level--) {
        t = next_table(t, (unsigned)((va >> (12 + 9 * level)) & 511));
        if (!t)
            return false;
    }
    t[(va >> 12) & 511] = (pa & PTE_ADDR) | flags | PTE_P;
    return true;
}

bool as_map_2m(struct address_space *as, u64 va, u64 pa, u64 flags)
{
    if ((va | pa) & 0x1fffffULL)
        return false;
    u64 *t = (u64 *)as->pml4;
    for (int level = 3; level > 1; level--) {
        t = next_table(t, (unsigned)((va >> (12 + 9 * level)) & 511));
        if (!t)
            return false;
    }
    u64 *pde = &t[(va >> 21) & 511];
    if (*pde & PTE_P)
        return false;
    *pde = (pa & PTE_ADDR) | flags | PTE_PS | PTE_P;
    return true;
}

static void free_level(u64 table, int level)
{
    if (level > 1) {
        u64 *t = (u64 *)table;
        for (int i = 0; i < 512; i++)
            if ((t[i] & PTE_P) && !(t[i] & PTE_PS))
                free_level(t[i] & PTE_ADDR, level - 1);
    }
    page_free(table);
}

void as_destroy(struct address_space *as)
{
    u64 *pml4 = (u64 *)as->pml4;
    /* Slot 0 is the shared kernel map: not ours to free. */
    for (int i = 1; i < 512; i++)
        if (pml4[i] & PTE_P)
            free_level(pml4[i] & PTE_ADDR, 3);
    page_free(as->pml4);
    as->pml4 = 0;
}
