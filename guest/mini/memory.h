/* memory.h - the physical page allocator, fed by the loader's memory map. */
#ifndef MINI_MEMORY_H
#define MINI_MEMORY_H

#include "bootinfo.h"

#define PAGE_SIZE 4096ULL

/* Takes the usable RAM below 4 GiB (what the boot page tables map) from
 * the memory map, minus the first MiB, the kernel image and the initrd. */
void memory_init(const struct boot_info *bi);
/* A zeroed 4 KiB page (its physical address, identity mapped), or 0 when
 * memory is exhausted. */
u64 page_alloc(void);
/* Returns a page obtained from page_alloc. */
void page_free(u64 pa);
/* `bytes` of physically contiguous memory aligned to `align` (a power of
 * two, at least PAGE_SIZE), NOT zeroed (zeroing at CPL0 is emulated, one
 * instruction at a time), never freed; 0 when no range holds it. For the
 * benchmark scenarios' large buffers; what the range skips to reach the
 * alignment is lost too. */
u64 memory_alloc_contiguous(u64 bytes, u64 align);
/* Pages handed out and still free, for reports. */
u64 memory_free_pages(void);
u64 memory_total_pages(void);

#endif
