/*
 * boot.S - entry points: the PVH 32-bit entry, the 64-bit ELF entry, the AP
 * start-up trampoline, the boot GDT and the boot page tables (an identity
 * map of the first 4 GiB in 2 MiB pages, built by the assembler so that no
 * emulated guest instructions are spent on it).
 */
#include "layout.h"

/* ------------------------------------------------------------------ */
/* PVH note: XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen", 64-bit payload as
 * Linux emits it. Kept in its own file-local section so that a variant of
 * the image can be linked without it (pvhnote.S). */

    .section .text.boot, "ax"
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, boot_info_ptr
    movl $BOOT_PVH, boot_kind
    lgdt gdt_ptr
    movw $SEL_KDATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $bsp_far, %edi
    /* fall through */

/* Enables PAE paging with the boot page tables and long mode, then jumps
 * through the far pointer at %edi. Shared by the BSP and the APs; uses no
 * stack (PVH gives none, and APs start together). */
    .globl enter_long_mode32
enter_long_mode32:
    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx          /* EFER */
    rdmsr
    orl $0x100, %eax                /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax           /* CR0.PG | CR0.PE */
    movl %eax, %cr0
    ljmp *(%edi)

    .code64
/* ELF entry for loaders without PVH: long mode, %rsi = boot_params. */
    .globl start64
start64:
    cli
    cld
    movl %esi, boot_info_ptr(%rip)
    movl $BOOT_LINUX64, boot_kind(%rip)
    lgdt gdt_ptr(%rip)
    leaq boot_pml4(%rip), %rax
    movq %rax, %cr3
    leaq bsp_long_entry(%rip), %rax
    pushq $SEL_KCODE
    pushq %rax
    lretq

bsp_long_entry:
    movw $SEL_KDATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    leaq boot_stack_top(%rip), %rsp
    xorl %ebp, %ebp
    movl boot_kind(%rip), %edi
    movl boot_info_ptr(%rip), %esi
    call kmain
1:  cli
    hlt
    jmp 1b

/* APs arrive here from the trampoline, in long mode on the boot tables. */
    .globl ap_long_entry
ap_long_entry:
    movw $SEL_KDATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $1, %eax
    cpuid
    shrl $24, %ebx                  /* initial APIC ID */
    cmpl $MAX_CPUS, %ebx
    jae 2f
    movl %ebx, %eax
    incl %eax
    shll $12, %eax                  /* (id + 1) * AP_STACK_SIZE */
    leaq ap_stacks(%rip), %rsp
    addq %rax, %rsp
    xorl %ebp, %ebp
    movl %ebx, %edi
    call ap_main
2:  cli
    hlt
    jmp 2b

/* ------------------------------------------------------------------ */
/* AP trampoline: copied to AP_TRAMPOLINE and started by SIPI in real mode.
 * Position dependent only through AP_TRAMPOLINE. */
    .code16
    .globl ap_trampoline_start, ap_trampoline_end
ap_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl AP_TRAMPOLINE + (tramp_gdtr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE32, $(AP_TRAMPOLINE + (tramp32 - ap_trampoline_start))
    .code32
tramp32:
    movw $SEL_KDATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $ap_far, %edi
    movl $enter_long_mode32, %eax
    jmp *%eax
    .balign 4
tramp_gdtr:
    .word gdt_end - gdt - 1
    .long gdt
ap_trampoline_end:

/* ------------------------------------------------------------------ */
    .section .data
    .balign 16
    .globl gdt, gdt_ptr
gdt:
    .quad 0                         /* null */
    .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff        /* 0x10 kernel data */
    .quad 0x00cff2000000ffff        /* 0x18 user data, DPL 3 */
    .quad 0x00affa000000ffff        /* 0x20 user code, 64-bit, DPL 3 */
    .quad 0x00cf9a000000ffff        /* 0x28 code, 32-bit (AP trampoline) */
    .quad 0, 0                      /* 0x30 TSS, filled in by cpu.c */
gdt_end:
    .balign 8
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt

/* Far pointers (offset, selector) to the 64-bit entries. */
bsp_far:    .long bsp_long_entry
            .word SEL_KCODE
ap_far:     .long ap_long_entry
            .word SEL_KCODE

    .globl boot_kind, boot_info_ptr
boot_kind:      .long 0
boot_info_ptr:  .long 0

/* Boot page tables: identity map of [0, 4 GiB) with 2 MiB pages; the
 * 3-4 GiB MMIO hole is mapped uncached (PCD|PWT). */
    .balign 4096
    .globl boot_pml4
boot_pml4:
    .quad boot_pdpt + 0x3
    .fill 511, 8, 0
boot_pdpt:
    .quad boot_pd + 0x0000 + 0x3
    .quad boot_pd + 0x1000 + 0x3
    .quad boot_pd + 0x2000 + 0x3
    .quad boot_pd + 0x3000 + 0x3
    .fill 508, 8, 0
boot_pd:
    .set i, 0
    .rept 2048
    .if i < 1536
    .quad (i << 21) | 0x83
    .else
    .quad (i << 21) | 0x9b
    .endif
    .set i, i + 1
    .endr

    .section .bss
    .balign 4096
boot_stack:
    .skip BOOT_STACK_SIZE
boot_stack_top:
    .globl ap_stacks
ap_stacks:
    .skip AP_STACK_SIZE * (MAX_CPUS + 1)

    .section .note.GNU-stack, "", @progbits
