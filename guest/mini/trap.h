/* trap.h - exceptions and the ud2-based system call from user mode.
 *
 * User code enters the kernel with `ud2`, the call number in %rax and the
 * argument in %rdi: on these machines' KVM, `syscall` and `int n` from
 * CPL3 do not work (docs: KVM-NOTES.md), exceptions do. */
#ifndef MINI_TRAP_H
#define MINI_TRAP_H

#include "types.h"

struct trap_frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8;
    u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error;
    u64 rip, cs, rflags, rsp, ss;
};

#define SYS_EXIT 0 /* return %rdi to the kernel's run_user caller */
#define SYS_PUTC 1 /* print the character in %rdi */

void trap_dispatch(struct trap_frame *f);

/* A scenario's handler for exceptions raised at CPL0 on purpose (the
 * vmm-emulate scenario's int3): returns nonzero when it handled `f`, which
 * then resumes at f->rip. NULL (the default) for none. */
extern int (*trap_kernel_hook)(struct trap_frame *f);

#endif
