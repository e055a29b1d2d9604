/* bootinfo.h - what the loader told us (PVH start info or Linux
 * boot_params), in one loader-independent form. */
#ifndef MINI_BOOTINFO_H
#define MINI_BOOTINFO_H

#include "types.h"

/* Memory map entries kept; a loader passing more is truncated (and says
 * so on the console) rather than overflowing the table. */
#define MAX_MEM_REGIONS 32
/* Longest command line copied; longer ones are truncated. */
#define CMDLINE_MAX 512

#define MEM_RAM 1

struct mem_region {
    u64 base;
    u64 size;
    u32 type;
};

struct boot_info {
    const char *loader; /* "pvh" or "linux64" */
    char cmdline[CMDLINE_MAX];
    struct mem_region regions[MAX_MEM_REGIONS];
    u32 nregions;
    bool truncated;
    u64 initrd_base, initrd_size;
};

/* Fills `bi` from the structure the loader left at `ptr`; false when the
 * structure is not recognised. */
bool bootinfo_parse(u32 kind, u64 ptr, struct boot_info *bi);

#endif
