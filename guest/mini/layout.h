/*
 * layout.h - the mini guest's memory layout and selectors, shared by the C
 * and assembly files. The platform map (I/O ports, LAPIC) follows
 * docs/ARCHITECTURE.md.
 */
#ifndef MINI_LAYOUT_H
#define MINI_LAYOUT_H

/* Physical load address of the kernel image (linker.ld). */
#define KERNEL_BASE 0x100000

/* Where the AP start-up trampoline is copied (below 1 MiB, page aligned:
 * the SIPI vector is its page number). */
#define AP_TRAMPOLINE 0x8000

/* Most CPUs the guest brings up; more are ignored (stack array size). */
#define MAX_CPUS 64
#define AP_STACK_SIZE 4096
#define BOOT_STACK_SIZE 16384

/* GDT selectors. */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x18 /* used with RPL 3: 0x1b */
#define SEL_UCODE 0x20 /* used with RPL 3: 0x23 */
#define SEL_CODE32 0x28
#define SEL_TSS 0x30

/* How the kernel was entered (boot_kind). */
#define BOOT_PVH 1     /* PVH: 32-bit entry, %ebx = hvm_start_info */
#define BOOT_LINUX64 2 /* 64-bit ELF entry, %rsi = Linux boot_params */

/* User-mode virtual addresses (PML4 slot 1, away from the identity map). */
#define USER_CODE_VA 0x0000008000000000ULL
#define USER_STACK_TOP 0x0000008040000000ULL

/* Platform I/O ports (docs/ARCHITECTURE.md). */
#define PORT_COM1 0x3f8
#define PORT_DEBUG_EXIT 0xf4
#define PORT_I8042_CMD 0x64
#define LAPIC_BASE 0xfee00000ULL

/* Guest exit statuses written to the debug-exit port. */
#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_EXCEPTION 3

#endif
