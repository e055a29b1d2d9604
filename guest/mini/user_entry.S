/* user_entry.S - the switch to CPL3 (iretq) and back (from the #UD
 * handler's SYS_EXIT). The kernel context is kept on the kernel stack; the
 * TSS's RSP0 points just below it, so traps from user mode land there. */
#include "layout.h"
    .text
    .globl run_user, user_return
/* u64 run_user(u64 entry, u64 rsp, u64 arg) */
run_user:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, user_saved_rsp(%rip)
    movq %rsp, %rax
    andq $-16, %rax
    movq %rax, bsp_tss+4(%rip)      /* TSS.RSP0 */
    pushq $(SEL_UDATA | 3)
    pushq %rsi
    pushq $0x2                      /* RFLAGS: interrupts off */
    pushq $(SEL_UCODE | 3)
    pushq %rdi
    movq %rdx, %rdi
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %ebp, %ebp
    xorl %r8d, %r8d
    xorl %r9d, %r9d
    xorl %r10d, %r10d
    xorl %r11d, %r11d
    xorl %r12d, %r12d
    xorl %r13d, %r13d
    xorl %r14d, %r14d
    xorl %r15d, %r15d
    iretq

/* noreturn void user_return(u64 value): back to run_user's caller. */
user_return:
    movq user_saved_rsp(%rip), %rsp
    movq %rdi, %rax
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

    .section .bss
    .balign 8
user_saved_rsp:
    .quad 0

    .section .note.GNU-stack, "", @progbits
