/* user.h - running code at CPL3 and getting back into the kernel.
 *
 * User functions live in section .user (USER_TEXT), which the linker places
 * on its own pages and which an address space maps again, with the user
 * bit, at USER_CODE_VA. They may only reference themselves RIP-relatively
 * (no kernel data, no string literals). */
#ifndef MINI_USER_H
#define MINI_USER_H

#include "paging.h"
#include "trap.h"

#define USER_TEXT __attribute__((section(".user.text"), noinline, used))
/* Returned by run_user when the kernel killed the user function. */
#define USER_KILLED 0xdead00000000dead

/* A user process: its address space, entry and stack. */
struct user_process {
    struct address_space as;
    u64 stack_page;
};

/* Sets up an address space mapping the .user section and a stack page. */
bool user_process_create(struct user_process *p);
void user_process_destroy(struct user_process *p);
/* Runs `fn` (a USER_TEXT function) at CPL3 in `p` with `arg` in %rdi until
 * it makes the SYS_EXIT call; returns that call's argument. */
u64 user_call(struct user_process *p, void (*fn)(u64), u64 arg);

/* Low level (user_entry.S): enter CPL3 at `entry` with stack `rsp`. */
u64 run_user(u64 entry, u64 rsp, u64 arg);
__attribute__((noreturn)) void user_return(u64 value);

/* The system call as user code issues it. */
static inline __attribute__((always_inline)) u64 user_syscall(u64 nr, u64 arg)
{
    __asm__ volatile("ud2" : "+a"(nr) : "D"(arg) : "memory");
    return nr;
}

#endif
