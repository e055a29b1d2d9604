/* bootinfo.c - reads the PVH hvm_start_info (Xen's arch-x86/hvm/start_info.h
 * layout) or the Linux zero page (Documentation/arch/x86/zero-page.rst). */
#include "bootinfo.h"
#include "layout.h"
#include "lib.h"

#define PVH_MAGIC 0x336ec578u

struct hvm_start_info {
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    u32 memmap_entries, reserved;
};
struct hvm_memmap_entry {
    u64 addr, size;
    u32 type, reserved;
};
struct hvm_modlist_entry {
    u64 paddr, size, cmdline_paddr, reserved;
};

/* Offsets in the Linux zero page. */
#define BP_E820_ENTRIES 0x1e8
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128

static void copy_cmdline(struct boot_info *bi, u64 paddr)
{
    bi->cmdline[0] = 0;
    if (!paddr || paddr >= 0x100000000ULL)
        return;
    const char *s = (const char *)paddr;
    usize i = 0;
    while (i + 1 < CMDLINE_MAX && s[i]) {
        bi->cmdline[i] = s[i];
        i++;
    }
    bi->cmdline[i] = 0;
}

static void add_region(struct boot_info *bi, u64 base, u64 size, u32 type)
{
    if (bi->nregions >= MAX_MEM_REGIONS) {
        bi->truncated = true;
        return;
    }
    bi->regions[bi->nregions].base = base;
    bi->regions[bi->nregions].size = size;
    bi->regions[bi->nregions].type = type;
    bi->nregions++;
}

bool bootinfo_parse(u32 kind, u64 ptr, struct boot_info *bi)
{
    memset(bi, 0, sizeof(*bi));
    if (kind == BOOT_PVH) {
        const struct hvm_start_info *si = (const void *)ptr;
        if (si->magic != PVH_MAGIC)
            return false;
        bi->loader = "pvh";
        copy_cmdline(bi, si->cmdline_paddr);
        if (si->version >= 1 && si->memmap_paddr) {
            const struct hvm_memmap_entry *e = (const void *)si->memmap_paddr;
            for (u32 i = 0; i < si->memmap_entries && i < 1024; i++)
                add_region(bi, e[i].addr, e[i].size, e[i].type);
        }
        if (si->nr_modules && si->modlist_paddr) {
            const struct hvm_modlist_entry *m = (const void *)si->modlist_paddr;
            bi->initrd_base = m[0].paddr;
            bi->initrd_size = m[0].size;
        }
        return true;
    }
    if (kind == BOOT_LINUX64) {
        const u8 *bp = (const u8 *)ptr;
        bi->loader = "linux64";
        copy_cmdline(bi, *(const u32 *)(bp + BP_CMD_LINE_PTR));
        u32 n = bp[BP_E820_ENTRIES];
        if (n > BP_E820_MAX)
            n = BP_E820_MAX;
        for (u32 i = 0; i < n; i++) {
            const u8 *e = bp + BP_E820_TABLE + 20 * i;
            u64 addr, size;
            u32 type;
            memcpy(&addr, e, 8);
            memcpy(&size, e + 8, 8);
            memcpy(&type, e + 16, 4);
            add_region(bi, addr, size, type);
        }
        bi->initrd_base = *(const u32 *)(bp + BP_RAMDISK_IMAGE);
        bi->initrd_size = *(const u32 *)(bp + BP_RAMDISK_SIZE);
        return true;
    }
    return false;
}
