/* irq.h - external interrupts: a 256-entry IDT (the exception gates of
 * cpu.c plus one stub per vector 32-255), the local APIC (enable, EOI, its
 * MSI address) and bounded waits for a vector with interrupts briefly on.
 *
 * The kernel runs with interrupts off; they are enabled only inside
 * irq_wait(), so handlers never interrupt driver code. */
#ifndef MINI_IRQ_H
#define MINI_IRQ_H

#include "types.h"

/* Vectors the drivers use (fixed delivery, edge). */
#define VEC_VTD_FAULT 0x30
#define VEC_VTD_PRQ 0x31
#define VEC_VTD_WAIT 0x32
#define VEC_SVA_DONE 0x34 /* + device index: completion */
#define VEC_SVA_ERROR 0x3c /* + device index: ring error */
#define VEC_SPURIOUS 0xff

typedef void (*irq_handler_fn)(u32 vector);

/* Builds and loads the IDT on this CPU and enables its local APIC. */
void irq_init(void);
/* Handler for `vector` (32..254), or NULL to only count it. */
void irq_set_handler(u32 vector, irq_handler_fn fn);
/* Interrupts seen on `vector` so far. */
u64 irq_count(u32 vector);
/* Interrupts seen on vectors that had no handler registered. */
u64 irq_unexpected(void);
/* Opens an interrupt window until irq_count(vector) > `seen` or `spins`
 * polls passed; true when the interrupt came. */
bool irq_wait(u32 vector, u64 seen, u32 spins);
/* Opens an interrupt window of `spins` polls (delivers whatever is pending). */
void irq_window(u32 spins);
/* The MSI address that targets this CPU's local APIC. */
u64 lapic_msi_address(void);

/* Entry stubs (irq.S) and the common C entry. */
extern char irq_stubs[];
#define IRQ_STUB_SIZE 16
void irq_dispatch(u64 vector);

#endif
