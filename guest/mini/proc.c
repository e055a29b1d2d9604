/* proc.c - the process model (see proc.h). */
#include "proc.h"
#include "kpgtable.h"
#include "memory.h"
#include "vtd.h"

static struct proc *live[PROC_MAX];

bool proc_create(struct proc *p)
{
    p->pasid = 0;
    p->npages = 0;
    u32 slot = PROC_MAX;
    for (u32 i = 0; i < PROC_MAX && slot == PROC_MAX; i++)
        if (!live[i])
            slot = i;
    if (slot == PROC_MAX || !user_process_create(&p->up))
        return false;
    kpgtable_share(p->up.as.pml4);
    live[slot] = p;
    return true;
}

static u64 *leaf(struct proc *p, u64 va)
{
    u64 *t = (u64 *)p->up.as.pml4;
    for (int level = 3; level > 0; level--) {
        u64 e = t[(va >> (12 + 9 * level)) & 511];
        if (!(e & PTE_P) || (e & PTE_PS))
            return NULL;
        t = (u64 *)(e & PTE_ADDR);
    }
    return &t[(va >> 12) & 511];
}

u64 proc_lookup(struct proc *p, u64 va)
{
    u64 *e = leaf(p, va);
    return e && (*e & PTE_P) ? (*e & PTE_ADDR) : 0;
}

u64 proc_map_new(struct proc *p, u64 va)
{
    if (p->npages >= PROC_MAX_PAGES || proc_lookup(p, va))
        return 0;
    u64 pa = page_alloc(); /* first: the LIFO hands out the last freed page */
    if (!pa)
        return 0;
    if (!as_map(&p->up.as, va, pa, PTE_U | PTE_W)) {
        page_free(pa);
        return 0;
    }
    p->va[p->npages] = va & ~0xfffULL;
    p->pa[p->npages] = pa;
    p->npages++;
    return pa;
}

bool proc_unmap(struct proc *p, u64 va)
{
    va &= ~0xfffULL;
    for (u32 i = 0; i < p->npages; i++) {
        if (p->va[i] != va)
            continue;
        u64 *e = leaf(p, va);
        if (e)
            *e = 0;
        if (p->pasid)
            vtd_mm_invalidate(p->pasid, va, 0);
        page_free(p->pa[i]);
        p->npages--;
        p->va[i] = p->va[p->npages];
        p->pa[i] = p->pa[p->npages];
        return true;
    }
    return false;
}

bool proc_bind(struct proc *p, const u16 *rids, u32 n, u32 pasid, bool sre)
{
    for (u32 i = 0; i < n; i++)
        if (!vtd_sva_bind(rids[i], pasid, p->up.as.pml4, sre))
            return false;
    p->pasid = pasid;
    return true;
}

void proc_unbind(struct proc *p, const u16 *rids, u32 n)
{
    for (u32 i = 0; i < n && p->pasid; i++)
        vtd_sva_unbind(rids[i], p->pasid);
    p->pasid = 0;
}

u64 proc_run(struct proc *p, void (*fn)(u64), u64 arg)
{
    kpgtable_tick();
    return user_call(&p->up, fn, arg);
}

struct proc *proc_by_pasid(u32 pasid)
{
    for (u32 i = 0; i < PROC_MAX; i++)
        if (live[i] && live[i]->pasid == pasid && pasid)
            return live[i];
    return NULL;
}

void proc_destroy(struct proc *p)
{
    for (u32 i = 0; i < PROC_MAX; i++)
        if (live[i] == p)
            live[i] = NULL;
    for (u32 i = 0; i < p->npages; i++) {
        u64 *e = leaf(p, p->va[i]);
        if (e)
            *e = 0;
        page_free(p->pa[i]);
    }
    p->npages = 0;
    kpgtable_unshare(p->up.as.pml4);
    user_process_destroy(&p->up);
}
