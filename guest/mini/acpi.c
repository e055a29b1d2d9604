/* acpi.c - RSDP discovery (loader pointer first: PVH start_info.rsdp_paddr
 * or boot_params.acpi_rsdp_addr; then the BIOS area scan) and the walk of
 * the XSDT/RSDT to MCFG and DMAR. Tables are read through the boot
 * identity map, so only tables below 4 GiB are accepted. */
#include "acpi.h"
#include "console.h"
#include "layout.h"
#include "lib.h"

extern u32 boot_kind, boot_info_ptr; /* boot.S */

#define IDENTITY_LIMIT 0x100000000ULL
/* Most XSDT entries looked at: a corrupt length cannot make us walk far. */
#define MAX_SDT_ENTRIES 64
/* Most DMAR remapping structures looked at. */
#define MAX_DMAR_STRUCTS 64
#define PVH_RSDP_OFFSET 32     /* hvm_start_info.rsdp_paddr */
#define BP_ACPI_RSDP_ADDR 0x70 /* boot_params.acpi_rsdp_addr */

static bool in_identity(u64 pa, u64 len) { return pa && pa < IDENTITY_LIMIT && len <= IDENTITY_LIMIT - pa; }

static u8 sum(const u8 *p, u32 n)
{
    u8 s = 0;
    for (u32 i = 0; i < n; i++)
        s += p[i];
    return s;
}

static u16 rd16(const u8 *p) { return (u16)(p[0] | (p[1] << 8)); }
static u32 rd32(const u8 *p) { return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24); }
static u64 rd64(const u8 *p) { return rd32(p) | ((u64)rd32(p + 4) << 32); }

static bool rsdp_ok(u64 pa)
{
    if (!in_identity(pa, 36))
        return false;
    const u8 *p = (const u8 *)pa;
    if (memcmp(p, "RSD PTR ", 8) || sum(p, 20))
        return false;
    return p[15] < 2 || !sum(p, 36);
}

static u64 find_rsdp(void)
{
    u64 pa = 0;
    if (boot_kind == BOOT_PVH && boot_info_ptr)
        pa = *(const u64 *)((u64)boot_info_ptr + PVH_RSDP_OFFSET);
    else if (boot_kind == BOOT_LINUX64 && boot_info_ptr)
        pa = *(const u64 *)((u64)boot_info_ptr + BP_ACPI_RSDP_ADDR);
    if (rsdp_ok(pa))
        return pa;
    for (pa = 0xe0000; pa < 0x100000; pa += 16)
        if (rsdp_ok(pa))
            return pa;
    return 0;
}

/* A table header at `pa` with a valid checksum, or NULL. */
static const u8 *table(u64 pa)
{
    if (!in_identity(pa, 36))
        return NULL;
    const u8 *t = (const u8 *)pa;
    u32 len = rd32(t + 4);
    if (len < 36 || len > 0x100000 || !in_identity(pa, len) || sum(t, len))
        return NULL;
    return t;
}

static void parse_mcfg(const u8 *t, struct acpi_info *out)
{
    u32 len = rd32(t + 4);
    for (u32 off = 44; off + 16 <= len; off += 16) {
        if (rd16(t + off + 8) != 0)
            continue;
        out->ecam_base = rd64(t + off);
        out->ecam_bus_start = t[off + 10];
        out->ecam_bus_end = t[off + 11];
        return;
    }
}

static void parse_dmar(const u8 *t, struct acpi_info *out)
{
    u32 len = rd32(t + 4);
    out->dmar_haw = t[36];
    u32 off = 48;
    for (u32 n = 0; n < MAX_DMAR_STRUCTS && off + 4 <= len; n++) {
        u16 type = rd16(t + off), slen = rd16(t + off + 2);
        if (slen < 4 || off + slen > len)
            return;
        if (type == 0 && slen >= 16 && !out->drhd_base && rd16(t + off + 6) == 0) {
            out->drhd_flags = t[off + 4];
            out->drhd_base = rd64(t + off + 8);
        }
        off += slen;
    }
}

bool acpi_discover(struct acpi_info *out)
{
    memset(out, 0, sizeof(*out));
    u64 rsdp = find_rsdp();
    if (!rsdp) {
        kprintf("stalewalk-guest: error=acpi_no_rsdp\n");
        return false;
    }
    out->rsdp = rsdp;
    const u8 *r = (const u8 *)rsdp;
    bool x = r[15] >= 2 && rd64(r + 24);
    const u8 *sdt = table(x ? rd64(r + 24) : rd32(r + 16));
    if (!sdt) {
        kprintf("stalewalk-guest: error=acpi_bad_root_table rsdp=0x%llx\n", rsdp);
        return false;
    }
    u32 esize = x ? 8 : 4;
    u32 n = (rd32(sdt + 4) - 36) / esize;
    if (n > MAX_SDT_ENTRIES)
        n = MAX_SDT_ENTRIES;
    for (u32 i = 0; i < n; i++) {
        const u8 *e = sdt + 36 + i * esize;
        const u8 *t = table(x ? rd64(e) : rd32(e));
        if (!t)
            continue;
        if (!memcmp(t, "MCFG", 4))
            parse_mcfg(t, out);
        else if (!memcmp(t, "DMAR", 4))
            parse_dmar(t, out);
    }
    return true;
}
