/* cpu.h - per-CPU descriptor tables: the GDT (shared, from boot.S), the
 * BSP's TSS (RSP0 for traps from user mode) and the IDT. */
#ifndef MINI_CPU_H
#define MINI_CPU_H

#include "types.h"

struct tss {
    u32 reserved0;
    u64 rsp0, rsp1, rsp2;
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
} __attribute__((packed));

extern struct tss bsp_tss;

/* Installs the TSS in the GDT and loads it (BSP only: only the BSP runs
 * user code for now). */
void tss_init(void);
/* Builds the IDT (once) and loads it on the calling CPU. */
void idt_load(void);
/* This CPU's initial APIC ID (CPUID leaf 1). */
u32 cpu_id(void);

#endif
