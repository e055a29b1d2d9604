/* uwork.c - user-mode work for the device scenarios (see uwork.h). These
 * functions run at CPL3 at full speed; they touch only user addresses. */
#include "uwork.h"

#define P ((volatile struct uparams *)USER_PARAM_VA)

USER_TEXT void user_fill_seq(u64 seed)
{
    volatile u64 *a = (volatile u64 *)P->a;
    u64 n = P->len / 8;
    for (u64 i = 0; i < n; i++)
        a[i] = seed + i * 0x9e3779b97f4a7c15ULL;
    user_syscall(SYS_EXIT, n);
    for (;;)
        ;
}

USER_TEXT void user_compare(u64 unused)
{
    (void)unused;
    volatile u64 *a = (volatile u64 *)P->a, *b = (volatile u64 *)P->b;
    u64 n = P->len / 8, bad = 0;
    for (u64 i = 0; i < n; i++)
        bad += a[i] != b[i];
    user_syscall(SYS_EXIT, bad);
    for (;;)
        ;
}

USER_TEXT void user_check_pattern(u64 pattern)
{
    volatile u64 *a = (volatile u64 *)P->a;
    u64 n = P->len / 8, bad = 0;
    for (u64 i = 0; i < n; i++)
        bad += a[i] != pattern;
    user_syscall(SYS_EXIT, bad);
    for (;;)
        ;
}

USER_TEXT void user_forge(u64 entry)
{
    volatile u64 *a = (volatile u64 *)P->a;
    for (u64 i = 0; i < 512; i++)
        a[i] = entry;
    user_syscall(SYS_EXIT, 512);
    for (;;)
        ;
}

struct uparams *uparams_of(struct proc *p) { return (struct uparams *)p->pa[0]; }

bool uparams_map(struct proc *p) { return p->npages == 0 && proc_map_new(p, USER_PARAM_VA) != 0; }

u64 ucall(struct proc *p, void (*fn)(u64), u64 arg, u64 a, u64 b, u64 len)
{
    struct uparams *u = uparams_of(p);
    u->a = a;
    u->b = b;
    u->len = len;
    return proc_run(p, fn, arg);
}
