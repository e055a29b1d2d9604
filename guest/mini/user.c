/* user.c - user processes: an address space with the .user section and a
 * stack, and the call into CPL3. */
#include "user.h"
#include "io.h"
#include "layout.h"
#include "memory.h"

extern char __user_start[], __user_end[];

bool user_process_create(struct user_process *p)
{
    p->stack_page = 0;
    if (!as_create(&p->as))
        return false;
    u64 start = (u64)__user_start, end = (u64)__user_end;
    for (u64 pa = start; pa < end; pa += PAGE_SIZE)
        if (!as_map(&p->as, USER_CODE_VA + (pa - start), pa, PTE_U))
            goto fail;
    p->stack_page = page_alloc();
    if (!p->stack_page || !as_map(&p->as, USER_STACK_TOP - PAGE_SIZE, p->stack_page, PTE_U | PTE_W))
        goto fail;
    return true;
fail:
    user_process_destroy(p);
    return false;
}

void user_process_destroy(struct user_process *p)
{
    if (p->stack_page)
        page_free(p->stack_page);
    p->stack_page = 0;
    if (p->as.pml4)
        as_destroy(&p->as);
}

u64 user_call(struct user_process *p, void (*fn)(u64), u64 arg)
{
    u64 entry = USER_CODE_VA + ((u64)fn - (u64)__user_start);
    write_cr3(p->as.pml4);
    u64 r = run_user(entry, USER_STACK_TOP - 8, arg);
    write_cr3(kernel_pml4());
    return r;
}
