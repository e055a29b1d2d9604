/* cpuid_probe.c - what CPUID returns to this guest at CPL0 and at CPL3, for
 * the feature leaves a kernel reads (1, 7, 0xd, 0x80000001). On hosts where
 * guest kernel mode runs in KVM's instruction emulator, the two can differ
 * from each other and from what the VMM set with KVM_SET_CPUID2
 * (docs/EMULATION.md); the VMM's tests compare them. */
#include "scenario.h"
#include "../console.h"
#include "../exit.h"
#include "../io.h"
#include "../user.h"

/* Leaf/subleaf/register triples, in the order printed. */
static const struct {
    u32 leaf, sub;
    int reg; /* 0 eax, 1 ebx, 2 ecx, 3 edx */
    const char *name;
} probes[] = {
    {1, 0, 2, "l1_ecx"},          {1, 0, 3, "l1_edx"},  {7, 0, 1, "l7_ebx"},
    {7, 0, 2, "l7_ecx"},          {7, 0, 3, "l7_edx"},  {0xd, 0, 0, "ld_eax"},
    {0x80000001, 0, 2, "le1_ecx"},
};

/* At CPL3: CPUID for the (leaf, sub, reg) packed in `arg`. */
USER_TEXT void cpuid_user(u64 arg)
{
    u32 leaf = (u32)arg, sub = (u32)(arg >> 32) & 0xffff;
    int reg = (int)(arg >> 48);
    u32 r[4];
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
    user_syscall(SYS_EXIT, r[reg & 3]);
    for (;;)
        ;
}

int scenario_cpuid_probe(const struct boot_info *bi)
{
    (void)bi;
    struct user_process p;
    if (!user_process_create(&p)) {
        kprintf("stalewalk-guest: error=out_of_memory\n");
        return EXIT_FAIL;
    }
    int differ = 0;
    for (usize i = 0; i < ARRAY_SIZE(probes); i++) {
        u32 r[4];
        cpuid(probes[i].leaf, probes[i].sub, &r[0], &r[1], &r[2], &r[3]);
        u32 k = r[probes[i].reg];
        u64 arg = probes[i].leaf | ((u64)probes[i].sub << 32) | ((u64)probes[i].reg << 48);
        u32 u = (u32)user_call(&p, cpuid_user, arg);
        differ += k != u;
        kprintf("stalewalk-guest: cpuid_cpl0_%s=0x%x cpuid_cpl3_%s=0x%x\n", probes[i].name, k,
                probes[i].name, u);
    }
    user_process_destroy(&p);
    kprintf("stalewalk-guest: scenario=cpuid-probe cpl0_cpl3_differ=%d\n", differ);
    return EXIT_OK;
}
