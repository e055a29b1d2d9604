/* irq.S - entry stubs for vectors 32-255: each pushes its vector number and
 * jumps to irq_common, which saves the caller-saved registers, calls
 * irq_dispatch(vector) and returns with iretq. Every stub is 16 bytes so
 * the IDT builder can compute its address. */
    .text
    .balign 16
    .globl irq_stubs
irq_stubs:
    .set vec, 32
    .rept 224
    .balign 16
    pushq $vec
    jmp irq_common
    .set vec, vec + 1
    .endr

irq_common:
    pushq %rbx
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movq 80(%rsp), %rdi
    movq %rsp, %rbx
    andq $-16, %rsp
    cld
    call irq_dispatch
    movq %rbx, %rsp
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    popq %rbx
    addq $8, %rsp
    iretq

    .section .note.GNU-stack, "", @progbits
