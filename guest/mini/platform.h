/* platform.h - bring-up shared by the device scenarios: interrupts, ACPI,
 * PCI enumeration, the VT-d unit (in Linux 6.12's order, devices attached
 * before translation is enabled), the SVA devices, the kernel page-table
 * model with the policy from kpgtable_free=, and a page-request handler
 * that maps demand pages for bound processes. */
#ifndef MINI_PLATFORM_H
#define MINI_PLATFORM_H

#include "acpi.h"
#include "kpgtable.h"
#include "pci.h"
#include "sva.h"

struct platform {
    struct acpi_info acpi;
    struct pci_dev pci[PCI_MAX_DEVICES];
    u32 npci;
    struct sva_dev sva[SVA_MAX_DEVS];
    u16 rids[SVA_MAX_DEVS];
    u32 nsva;
    enum kpt_policy policy;
};

/* Everything up to translation enabled; `pri` turns PRI on in the
 * devices. Prints one summary line; false (with an error line) on any
 * failure, including no SVA device when `need_sva`. */
bool platform_up(struct platform *pf, bool pri, bool need_sva);
/* The u64 value of key= on the command line, or `def`. */
u64 cmdline_u64(const char *key, u64 def);

#endif
