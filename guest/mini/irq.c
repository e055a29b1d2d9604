/* irq.c - the full IDT, the local APIC and interrupt windows. */
#include "irq.h"
#include "io.h"
#include "layout.h"

#define APIC_ID 0x20
#define APIC_TPR 0x80
#define APIC_EOI 0xb0
#define APIC_SVR 0xf0
/* The 8259 PICs' data (mask) ports. */
#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1

extern u64 isr_table[]; /* trap.S: exception stubs 0-31 */

struct gate {
    u16 off_lo, sel;
    u8 ist, type;
    u16 off_mid;
    u32 off_hi, reserved;
} __attribute__((packed));

static struct gate idt[256] __attribute__((aligned(16)));
static irq_handler_fn handlers[256];
static volatile u64 counts[256];
static volatile u64 unexpected;

static void set_gate(u32 v, u64 h)
{
    idt[v].off_lo = (u16)h;
    idt[v].sel = SEL_KCODE;
    idt[v].ist = 0;
    idt[v].type = 0x8e; /* present, DPL 0, interrupt gate */
    idt[v].off_mid = (u16)(h >> 16);
    idt[v].off_hi = (u32)(h >> 32);
    idt[v].reserved = 0;
}

void irq_init(void)
{
    for (u32 v = 0; v < 32; v++)
        set_gate(v, isr_table[v]);
    for (u32 v = 32; v < 256; v++)
        set_gate(v, (u64)irq_stubs + (v - 32) * IRQ_STUB_SIZE);
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) ptr = {sizeof(idt) - 1, (u64)idt};
    __asm__ volatile("lidt %0" : : "m"(ptr));
    /* Mask the legacy 8259s (both VMMs' MADTs set PCAT_COMPAT: they are
     * there). Firmware such as QEMU's SeaBIOS leaves the timer's IRQ 0
     * unmasked at vector 8, so the first interrupt window after a PIT tick
     * looked like a double fault (tests/vtd_compare.sh, under load or
     * -icount). Everything here uses the local APIC and MSIs. */
    outb(PIC1_DATA, 0xff);
    outb(PIC2_DATA, 0xff);
    mmio_write32(LAPIC_BASE + APIC_TPR, 0);
    mmio_write32(LAPIC_BASE + APIC_SVR, 0x100 | VEC_SPURIOUS);
}

void irq_set_handler(u32 vector, irq_handler_fn fn)
{
    if (vector >= 32 && vector < 255)
        handlers[vector] = fn;
}

u64 irq_count(u32 vector) { return vector < 256 ? counts[vector] : 0; }
u64 irq_unexpected(void) { return unexpected; }

void irq_dispatch(u64 vector)
{
    u32 v = (u32)(vector & 0xff);
    counts[v]++;
    if (handlers[v])
        handlers[v](v);
    else if (v != VEC_SPURIOUS)
        unexpected++;
    if (v != VEC_SPURIOUS)
        mmio_write32(LAPIC_BASE + APIC_EOI, 0);
}

bool irq_wait(u32 vector, u64 seen, u32 spins)
{
    for (u32 i = 0; i < spins; i++) {
        __asm__ volatile("sti; nop; cli" ::: "memory");
        if (counts[vector & 0xff] > seen)
            return true;
    }
    return false;
}

void irq_window(u32 spins)
{
    for (u32 i = 0; i < spins; i++)
        __asm__ volatile("sti; nop; cli" ::: "memory");
}

u64 lapic_msi_address(void)
{
    u32 id = mmio_read32(LAPIC_BASE + APIC_ID) >> 24;
    return 0xfee00000ULL | ((u64)id << 12);
}
