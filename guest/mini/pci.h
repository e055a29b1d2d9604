/* pci.h - PCI Express configuration space over ECAM (bus 0), device
 * enumeration, BARs, capabilities and MSI-X. */
#ifndef MINI_PCI_H
#define MINI_PCI_H

#include "types.h"

#define PCI_MAX_DEVICES 32

#define PCI_CAP_MSIX 0x11
#define PCI_EXT_CAP_ATS 0x0f
#define PCI_EXT_CAP_PRI 0x13
#define PCI_EXT_CAP_PASID 0x1b

struct pci_dev {
    u8 dev, fn;
    u16 vendor, device;
    u32 class_rev;
    u16 rid; /* requester id: bus << 8 | dev << 3 | fn */
};

/* Sets the ECAM window (from ACPI MCFG). */
void pci_init(u64 ecam_base);
/* Enumerates bus 0 into `out`; returns the count (at most `max`). */
u32 pci_enumerate(struct pci_dev *out, u32 max);
u32 pci_read32(const struct pci_dev *d, u32 off);
void pci_write32(const struct pci_dev *d, u32 off, u32 v);
u16 pci_read16(const struct pci_dev *d, u32 off);
void pci_write16(const struct pci_dev *d, u32 off, u16 v);
/* The address a memory BAR decodes (0 when it is not a memory BAR). */
u64 pci_bar(const struct pci_dev *d, u32 bar);
/* Sets Command.Memory Space and Bus Master. */
void pci_enable(const struct pci_dev *d);
/* Offset of a standard / extended capability, or 0. */
u32 pci_find_cap(const struct pci_dev *d, u8 id);
u32 pci_find_ext_cap(const struct pci_dev *d, u16 id);
/* Programs MSI-X table entry `vector` (address, data, unmasked) and
 * enables MSI-X; false without the capability or a valid table BAR. */
bool pci_msix_set(const struct pci_dev *d, u32 vector, u64 addr, u32 data);

#endif
