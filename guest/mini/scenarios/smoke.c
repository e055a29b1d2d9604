/* smoke.c - the user-mode round trip: a loop at CPL3 (native speed), its
 * result returned through the ud2 system call, checked by the kernel. */
#include "scenario.h"
#include "../console.h"
#include "../exit.h"
#include "../user.h"

#define SMOKE_ITERATIONS 1000000ULL

USER_TEXT void smoke_user(u64 n)
{
    u64 acc = 0;
    for (u64 i = 0; i < n; i++) {
        acc += i;
        __asm__ volatile("" : "+r"(acc)); /* keep the loop a loop */
    }
    user_syscall(SYS_EXIT, acc);
    for (;;)
        ;
}

int scenario_smoke(const struct boot_info *bi)
{
    (void)bi;
    struct user_process p;
    if (!user_process_create(&p)) {
        kprintf("stalewalk-guest: error=out_of_memory\n");
        return EXIT_FAIL;
    }
    u64 got = user_call(&p, smoke_user, SMOKE_ITERATIONS);
    user_process_destroy(&p);
    u64 want = SMOKE_ITERATIONS * (SMOKE_ITERATIONS - 1) / 2;
    kprintf("stalewalk-guest: scenario=smoke user_result=%llu expected=%llu %s\n", got, want,
            got == want ? "pass" : "FAIL");
    return got == want ? EXIT_OK : EXIT_FAIL;
}

USER_TEXT void spin_user(u64 unused)
{
    (void)unused;
    for (;;)
        __asm__ volatile("pause");
}

/* Spins at CPL3 forever: for tests of how the VMM stops a guest that never
 * exits (SIGINT/SIGTERM). */
int scenario_spin(const struct boot_info *bi)
{
    (void)bi;
    struct user_process p;
    if (!user_process_create(&p)) {
        kprintf("stalewalk-guest: error=out_of_memory\n");
        return EXIT_FAIL;
    }
    kprintf("stalewalk-guest: scenario=spin spinning=1\n");
    user_call(&p, spin_user, 0);
    return EXIT_FAIL;
}

/* Prints numbered serial lines forever: for tests of a VMM whose output
 * reader stalls (a full pipe must not stop --timeout or a signal). */
int scenario_chatter(const struct boot_info *bi)
{
    (void)bi;
    kprintf("stalewalk-guest: scenario=chatter chattering=1\n");
    for (u64 i = 0;; i++)
        kprintf("chatter %llu the quick brown fox jumps over the lazy dog\n", i);
    return EXIT_FAIL;
}
