/* cpu.c - GDT TSS descriptor, IDT gates. */
#include "cpu.h"
#include "io.h"
#include "layout.h"

struct tss bsp_tss;
extern u64 gdt[];
extern u64 isr_table[];

#define IDT_VECTORS 32

struct idt_gate {
    u16 off_lo, sel;
    u8 ist, type;
    u16 off_mid;
    u32 off_hi, reserved;
} __attribute__((packed));

static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));
static volatile bool idt_built;

void tss_init(void)
{
    u64 base = (u64)&bsp_tss;
    u64 limit = sizeof(bsp_tss) - 1;
    bsp_tss.iomap_base = sizeof(bsp_tss);
    gdt[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
                       (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[SEL_TSS / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(SEL_TSS));
}

void idt_load(void)
{
    if (!idt_built) {
        for (int v = 0; v < IDT_VECTORS; v++) {
            u64 h = isr_table[v];
            idt[v].off_lo = (u16)h;
            idt[v].sel = SEL_KCODE;
            idt[v].ist = 0;
            idt[v].type = 0x8e; /* present, DPL 0, interrupt gate */
            idt[v].off_mid = (u16)(h >> 16);
            idt[v].off_hi = (u32)(h >> 32);
            idt[v].reserved = 0;
        }
        idt_built = true;
    }
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) ptr = {sizeof(idt) - 1, (u64)idt};
    __asm__ volatile("lidt %0" : : "m"(ptr));
}

u32 cpu_id(void)
{
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    return b >> 24;
}
