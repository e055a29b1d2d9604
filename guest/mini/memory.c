/* memory.c - physical pages: a bump pointer over the usable ranges, plus
 * a free list threaded through freed pages (so a freed page is reused
 * first, which later scenarios rely on to reproduce page reuse). */
#include "memory.h"
#include "console.h"
#include "lib.h"
#include "spinlock.h"

extern char __kernel_start[], __kernel_end[];

#define LOW_LIMIT 0x100000ULL
#define HIGH_LIMIT 0x100000000ULL /* end of the boot identity map */

struct range {
    u64 next, end;
};

static struct range ranges[MAX_MEM_REGIONS];
static u32 nranges;
static u64 free_list;
static u64 free_count, total_pages;
static struct spinlock lock;

static void add_range(u64 base, u64 end)
{
    base = (base + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    end &= ~(PAGE_SIZE - 1);
    if (end <= base || nranges >= MAX_MEM_REGIONS)
        return;
    ranges[nranges].next = base;
    ranges[nranges].end = end;
    nranges++;
    total_pages += (end - base) / PAGE_SIZE;
}

struct hole {
    u64 base, end;
};

/* Adds [base, end) minus the `n` holes. */
static void add_minus(u64 base, u64 end, const struct hole *h, int n)
{
    if (end <= base)
        return;
    if (n == 0) {
        add_range(base, end);
        return;
    }
    if (h->end <= base || h->base >= end || h->base == h->end) {
        add_minus(base, end, h + 1, n - 1);
        return;
    }
    if (base < h->base)
        add_minus(base, h->base, h + 1, n - 1);
    if (h->end < end)
        add_minus(h->end, end, h + 1, n - 1);
}

void memory_init(const struct boot_info *bi)
{
    u64 ks = (u64)__kernel_start, ke = (u64)__kernel_end;
    u64 ib = bi->initrd_base, ie = bi->initrd_base + bi->initrd_size;
    if (ie < ib)
        ie = ib;
    for (u32 i = 0; i < bi->nregions; i++) {
        const struct mem_region *r = &bi->regions[i];
        if (r->type != MEM_RAM)
            continue;
        u64 base = r->base, end = r->base + r->size;
        if (end < base)
            continue;
        if (base < LOW_LIMIT)
            base = LOW_LIMIT;
        if (end > HIGH_LIMIT)
            end = HIGH_LIMIT;
        if (end <= base)
            continue;
        struct hole holes[2] = {{ks, ke}, {ib, ie}};
        add_minus(base, end, holes, 2);
    }
}

u64 page_alloc(void)
{
    u64 pa = 0;
    spin_lock(&lock);
    if (free_list) {
        pa = free_list;
        free_list = *(u64 *)pa;
        free_count--;
    } else {
        for (u32 i = 0; i < nranges; i++) {
            if (ranges[i].next < ranges[i].end) {
                pa = ranges[i].next;
                ranges[i].next += PAGE_SIZE;
                break;
            }
        }
    }
    spin_unlock(&lock);
    if (pa) {
        /* rep stosq: 512 steps for KVM's emulator instead of 4096 */
        void *d = (void *)pa;
        usize n = PAGE_SIZE / 8;
        __asm__ volatile("rep stosq" : "+D"(d), "+c"(n) : "a"(0ULL) : "memory");
    }
    return pa;
}

void page_free(u64 pa)
{
    if (!pa || (pa & (PAGE_SIZE - 1))) {
        kprintf("stalewalk-guest: error=page_free pa=0x%llx\n", pa);
        return;
    }
    spin_lock(&lock);
    *(u64 *)pa = free_list;
    free_list = pa;
    free_count++;
    spin_unlock(&lock);
}

u64 memory_alloc_contiguous(u64 bytes, u64 align)
{
    if (!bytes || align < PAGE_SIZE || (align & (align - 1)))
        return 0;
    bytes = (bytes + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    u64 pa = 0;
    spin_lock(&lock);
    for (u32 i = 0; i < nranges; i++) {
        u64 base = (ranges[i].next + align - 1) & ~(align - 1);
        if (base < ranges[i].next || base > ranges[i].end || ranges[i].end - base < bytes)
            continue;
        ranges[i].next = base + bytes;
        pa = base;
        break;
    }
    spin_unlock(&lock);
    return pa;
}

u64 memory_free_pages(void)
{
    u64 n = free_count;
    for (u32 i = 0; i < nranges; i++)
        n += (ranges[i].end - ranges[i].next) / PAGE_SIZE;
    return n;
}

u64 memory_total_pages(void) { return total_pages; }
