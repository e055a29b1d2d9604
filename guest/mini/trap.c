/* trap.c - exception handling: user-mode `ud2` is a system call; anything
 * else is reported on the console and ends the run with EXIT_EXCEPTION. */
#include "trap.h"
#include "console.h"
#include "cpu.h"
#include "exit.h"
#include "io.h"
#include "layout.h"
#include "user.h"

static const char *const names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

static void syscall(struct trap_frame *f)
{
    switch (f->rax) {
    case SYS_EXIT:
        user_return(f->rdi);
    case SYS_PUTC:
        console_putc((char)f->rdi);
        break;
    default:
        kprintf("stalewalk-guest: error=bad_syscall nr=%llu rip=0x%llx\n", f->rax, f->rip);
        user_return(USER_KILLED);
    }
    f->rip += 2; /* past ud2 */
}

int (*trap_kernel_hook)(struct trap_frame *f);

void trap_dispatch(struct trap_frame *f)
{
    if (f->vector == 6 && (f->cs & 3) == 3) {
        syscall(f);
        return;
    }
    if ((f->cs & 3) == 0 && trap_kernel_hook && trap_kernel_hook(f))
        return;
    const char *name = f->vector < 32 && names[f->vector] ? names[f->vector] : "?";
    kprintf("stalewalk-guest: exception=%s vector=%llu error=0x%llx rip=0x%llx cs=0x%llx "
            "rsp=0x%llx cr2=0x%llx cpu=%u\n",
            name, f->vector, f->error, f->rip, f->cs, f->rsp, read_cr2(), cpu_id());
    guest_exit(EXIT_EXCEPTION);
}
