/* platform.c - device bring-up (see platform.h). */
#include "platform.h"
#include "cmdline.h"
#include "console.h"
#include "exit.h"
#include "irq.h"
#include "lib.h"
#include "memory.h"
#include "proc.h"
#include "vtd.h"

u64 cmdline_u64(const char *key, u64 def)
{
    const char *v = cmdline_get(key);
    u64 out;
    if (!v)
        return def;
    if (!parse_u64(v, &out)) {
        /* Not the default in silence: the run would not be the one asked for. */
        kprintf("stalewalk-guest: error=bad_value key=%s value=%s (want a number)\n", key, v);
        guest_exit(EXIT_USAGE);
    }
    return out;
}

/* A page request from a bound process: map a fresh page there (a new
 * mapping: Linux announces none to the IOMMU) and answer Success; anything
 * else is an Invalid Request. */
static u8 demand_page(const struct vtd_page_request *r)
{
    struct proc *p = r->pasid_present ? proc_by_pasid(r->pasid) : NULL;
    if (!p || r->addr >= 0x0000800000000000ULL)
        return 1;
    if (proc_lookup(p, r->addr))
        return 0;
    return proc_map_new(p, r->addr) ? 0 : 1;
}

bool platform_up(struct platform *pf, bool pri, bool need_sva)
{
    memset(pf, 0, sizeof(*pf));
    if (!kpgtable_parse_policy(cmdline_get("kpgtable_free"), &pf->policy)) {
        kprintf("stalewalk-guest: error=bad_kpgtable_free value=%s\n", cmdline_get("kpgtable_free"));
        return false;
    }
    irq_init();
    if (!acpi_discover(&pf->acpi))
        return false;
    /* Without a DMAR unit only scenarios that need no SVA device go on
     * (their DMA is then untranslated). */
    if (!pf->acpi.ecam_base || (need_sva && !pf->acpi.drhd_base)) {
        kprintf("stalewalk-guest: error=acpi_tables mcfg_ecam=0x%llx dmar_drhd=0x%llx\n",
                pf->acpi.ecam_base, pf->acpi.drhd_base);
        return false;
    }
    pci_init(pf->acpi.ecam_base);
    pf->npci = pci_enumerate(pf->pci, PCI_MAX_DEVICES);
    if (pf->acpi.drhd_base && !vtd_init(pf->acpi.drhd_base, demand_page, need_sva))
        return false;
    if (!kpgtable_init(pf->policy))
        return false;
    if (vtd_present())
        pf->nsva = sva_probe_all(pf->pci, pf->npci, pri, pf->sva, SVA_MAX_DEVS);
    for (u32 i = 0; i < pf->nsva; i++)
        pf->rids[i] = pf->sva[i].pci.rid;
    if (vtd_present() && !vtd_enable_translation())
        return false;
    kprintf("stalewalk-guest: rsdp=0x%llx ecam=0x%llx drhd=0x%llx pci_devices=%u sva_devices=%u "
            "translation=%s kpgtable_free=%s\n",
            pf->acpi.rsdp, pf->acpi.ecam_base, pf->acpi.drhd_base, pf->npci, pf->nsva,
            vtd_present() ? "on" : "off", kpgtable_policy_name(pf->policy));
    if (need_sva && !pf->nsva) {
        kprintf("stalewalk-guest: error=no_sva_device (run with --sva-dev 1)\n");
        return false;
    }
    return true;
}
