/* faults.c - scenarios that end the run abnormally on purpose, so the
 * VMM's and the kernel's error paths are tested. */
#include "scenario.h"
#include "../console.h"
#include "../exit.h"
#include "../io.h"
#include "../cmdline.h"
#include "../lib.h"

int scenario_fault_ud(const struct boot_info *bi)
{
    (void)bi;
    __asm__ volatile("ud2");
    return EXIT_FAIL; /* not reached: the #UD handler exits */
}

int scenario_triple_fault(const struct boot_info *bi)
{
    (void)bi;
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) empty = {0, 0};
    __asm__ volatile("lidt %0; ud2" : : "m"(empty));
    return EXIT_FAIL;
}

int scenario_emulation_failure(const struct boot_info *bi)
{
    (void)bi;
    /* emulation_insn=xrstor: an instruction outside the set the VMM
     * emulates (docs/EMULATION.md), so the run stops even with
     * --emulate-in-vmm on. RFBM (edx:eax) 0 restores nothing. */
    const char *insn = cmdline_get("emulation_insn");
    if (insn && !strcmp(insn, "xrstor")) {
        static u8 area[576] __attribute__((aligned(64)));
        __asm__ volatile("xrstor %0" : : "m"(area), "a"(0), "d"(0) : "memory");
        kprintf("stalewalk-guest: emulation_failure=not_triggered\n");
        return EXIT_FAIL;
    }
    static u64 target[2] __attribute__((aligned(16)));
    u64 lo = 0, hi = 0;
    __asm__ volatile("lock cmpxchg16b %0"
                     : "+m"(*(volatile u64(*)[2])target), "+a"(lo), "+d"(hi)
                     : "b"(1ULL), "c"(2ULL)
                     : "memory", "cc");
    /* Only reached where CPL0 code runs natively (hardware virtualization). */
    kprintf("stalewalk-guest: emulation_failure=not_triggered\n");
    return EXIT_FAIL;
}

int scenario_reset(const struct boot_info *bi)
{
    (void)bi;
    kprintf("stalewalk-guest: resetting\n");
    guest_reset();
}
