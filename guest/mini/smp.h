/* smp.h - bringing up the application processors.
 *
 * The BSP wakes the APs with INIT-SIPI-SIPI through its local APIC, as on
 * hardware, rather than the VMM starting every vCPU at a kernel entry: the
 * same image then boots under any PVH loader (QEMU microvm included), and
 * APs that are not started cost nothing (they wait inside KVM for SIPI).
 * The number of CPUs to expect comes from CPUID leaf 0xB (the VMM fills it
 * in; ACPI's MADT will take over once the guest parses ACPI). */
#ifndef MINI_SMP_H
#define MINI_SMP_H

#include "types.h"

/* CPUs the platform says it has (1 when CPUID does not say). */
u32 smp_expected_cpus(void);
/* Starts the APs and waits (bounded) for them; returns CPUs online. */
u32 smp_start(u32 expected);
/* Entry of an AP in long mode (boot.S). */
void ap_main(u32 apic_id);

#endif
