/* kpgtable.c - the kernel page-table model (see kpgtable.h). Kernel
 * intermediate entries carry P|RW and no U bit, as Linux's _KERNPG_TABLE;
 * leaves are supervisor-only. */
#include "kpgtable.h"
#include "console.h"
#include "lib.h"
#include "memory.h"
#include "paging.h"
#include "vtd.h"

extern u64 boot_pml4[];

/* Deferred queue capacity: the worker runs when KPT_BATCH is reached, so
 * this only needs headroom. */
#define KPT_QUEUE_MAX 256

static enum kpt_policy policy;
static u64 vmalloc_pdpt, vmalloc_pd;
static u64 queue[KPT_QUEUE_MAX];
static u32 queued;
static struct kpt_stats st;

static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

bool kpgtable_parse_policy(const char *s, enum kpt_policy *out)
{
    if (!s || !strcmp(s, "sync"))
        *out = KPT_SYNC;
    else if (!strcmp(s, "deferred"))
        *out = KPT_DEFERRED;
    else if (!strcmp(s, "eager"))
        *out = KPT_EAGER;
    else
        return false;
    return true;
}

const char *kpgtable_policy_name(enum kpt_policy p)
{
    return p == KPT_DEFERRED ? "deferred" : p == KPT_EAGER ? "eager" : "sync";
}

enum kpt_policy kpgtable_policy(void) { return policy; }
const struct kpt_stats *kpgtable_stats(void) { return &st; }

bool kpgtable_init(enum kpt_policy p)
{
    policy = p;
    if (!vmalloc_pdpt) {
        vmalloc_pdpt = page_alloc();
        vmalloc_pd = page_alloc();
        if (!vmalloc_pdpt || !vmalloc_pd)
            return false;
        ((u64 *)vmalloc_pdpt)[0] = vmalloc_pd | PTE_P | PTE_W;
        boot_pml4[VMALLOC_PML4_INDEX] = vmalloc_pdpt | PTE_P | PTE_W;
    }
    return true;
}

void kpgtable_share(u64 pml4)
{
    for (u32 i = 256; i < 512; i++)
        ((u64 *)pml4)[i] = boot_pml4[i];
}

void kpgtable_unshare(u64 pml4)
{
    for (u32 i = 256; i < 512; i++)
        ((u64 *)pml4)[i] = 0;
}

u64 vmalloc_region(u32 i) { return VMALLOC_START + (u64)(i % VMALLOC_REGIONS) * PMD_SIZE; }

u64 vmalloc_area(u32 i) { return VMALLOC_START + (u64)(1 + i % (VMALLOC_AREAS - 1)) * PUD_SIZE; }

/* The PDPT entry for `va`, or NULL outside the vmalloc slot. */
static u64 *pud_for(u64 va)
{
    if (va < VMALLOC_START || (va - VMALLOC_START) / PUD_SIZE >= VMALLOC_AREAS)
        return NULL;
    return (u64 *)vmalloc_pdpt + (va - VMALLOC_START) / PUD_SIZE;
}

/* The PDE for `va`; with `alloc`, the PD is created when missing. */
static u64 *pde_for(u64 va, bool alloc)
{
    u64 *pud = pud_for(va);
    if (!pud || (*pud & PTE_PS))
        return NULL;
    if (!(*pud & PTE_P)) {
        u64 pd = alloc ? page_alloc() : 0;
        if (!pd)
            return NULL;
        *pud = pd | PTE_P | PTE_W;
        st.tables_allocated++;
    }
    return (u64 *)(*pud & PTE_ADDR) + ((va >> 21) & 511);
}

u64 vmalloc_pmd_table(u64 va)
{
    u64 *pud = pud_for(va);
    if (!pud || !(*pud & PTE_P) || (*pud & PTE_PS))
        return 0;
    return *pud & PTE_ADDR;
}

u64 vmalloc_pte_table(u64 va)
{
    u64 *pde = pde_for(va, false);
    if (!pde || !(*pde & PTE_P) || (*pde & PTE_PS))
        return 0;
    return *pde & PTE_ADDR;
}

bool vmap_page(u64 va, u64 pa)
{
    u64 *pde = pde_for(va, true);
    if (!pde || (*pde & PTE_PS))
        return false;
    if (!(*pde & PTE_P)) {
        u64 pt = page_alloc();
        if (!pt)
            return false;
        *pde = pt | PTE_P | PTE_W;
        st.tables_allocated++;
    }
    ((u64 *)(*pde & PTE_ADDR))[(va >> 12) & 511] = (pa & PTE_ADDR) | PTE_P | PTE_W;
    return true;
}

static void give_back(u64 pa)
{
    page_free(pa);
    outl(PORT_PGTABLE_FREED, (u32)(pa >> 12));
    st.returned++;
}

static void drain(void)
{
    if (!queued)
        return;
    st.invalidations += vtd_kva_flush();
    for (u32 i = 0; i < queued; i++)
        give_back(queue[i]);
    queued = 0;
    st.batches++;
}

/* The page-table code is done with table page `pt` (no longer linked
 * anywhere). */
static void table_free(u64 pt)
{
    st.frees++;
    switch (policy) {
    case KPT_SYNC:
        give_back(pt);
        break;
    case KPT_EAGER:
        st.invalidations += vtd_kva_flush();
        give_back(pt);
        break;
    case KPT_DEFERRED:
        if (queued >= KPT_QUEUE_MAX)
            drain();
        queue[queued++] = pt;
        if (queued > st.max_queued)
            st.max_queued = queued;
        if (queued >= KPT_BATCH)
            drain();
        break;
    }
}

void kpgtable_tick(void)
{
    if (policy == KPT_DEFERRED)
        drain();
}

bool vunmap_region(u64 va)
{
    u64 *pde = pde_for(va, false);
    if (!pde || !(*pde & PTE_P))
        return false;
    u64 old = *pde;
    *pde = 0;
    /* (the CPU's TLB: the kernel never touches vmalloc addresses itself) */
    if (!(old & PTE_PS))
        table_free(old & PTE_ADDR);
    return true;
}

bool vmap_huge(u64 va, u64 pa)
{
    u64 *pde = pde_for(va, true);
    if (!pde || (pa & (PMD_SIZE - 1)))
        return false;
    u64 old = *pde;
    *pde = pa | PTE_P | PTE_W | PTE_PS;
    if ((old & PTE_P) && !(old & PTE_PS))
        table_free(old & PTE_ADDR);
    return true;
}

/* pud_free_pmd_page: the PTE tables under a PD, then the PD itself. */
static void pmd_table_free(u64 pd)
{
    u64 *e = (u64 *)pd;
    for (u32 i = 0; i < 512; i++)
        if ((e[i] & PTE_P) && !(e[i] & PTE_PS))
            table_free(e[i] & PTE_ADDR);
    table_free(pd);
}

/* Replaces the PDPT entry of a 1 GiB area (never area 0, whose PD holds
 * the 2 MiB regions) and frees what it linked. */
static bool set_pud(u64 va, u64 val)
{
    u64 *pud = pud_for(va);
    if (!pud || pud == (u64 *)vmalloc_pdpt)
        return false;
    u64 old = *pud;
    *pud = val;
    if ((old & PTE_P) && !(old & PTE_PS))
        pmd_table_free(old & PTE_ADDR);
    return true;
}

bool vmap_huge_pud(u64 va, u64 pa)
{
    if (pa & (PUD_SIZE - 1))
        return false;
    return set_pud(va, pa | PTE_P | PTE_W | PTE_PS);
}

bool vunmap_area(u64 va) { return set_pud(va, 0); }
