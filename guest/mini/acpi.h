/* acpi.h - the few ACPI tables the mini guest reads: RSDP -> XSDT (or
 * RSDT) -> MCFG (the PCIe ECAM window) and DMAR (the VT-d unit's register
 * base from its DRHD). Nothing is hard-coded: a platform without these
 * tables gets a clear error. */
#ifndef MINI_ACPI_H
#define MINI_ACPI_H

#include "types.h"

struct acpi_info {
    u64 rsdp;
    u64 ecam_base; /* MCFG entry for segment 0 (0 when absent) */
    u8 ecam_bus_start, ecam_bus_end;
    u64 drhd_base; /* first DRHD register base (0 when absent) */
    u8 drhd_flags; /* bit 0 INCLUDE_PCI_ALL */
    u8 dmar_haw;   /* host address width - 1 */
};

/* Finds the tables; false (and an error line) when the RSDP or a table
 * checksum is bad. Missing MCFG/DMAR leave their fields 0. */
bool acpi_discover(struct acpi_info *out);

#endif
