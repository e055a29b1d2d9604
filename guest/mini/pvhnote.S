/* pvhnote.S - the PVH ELF note (XEN_ELFNOTE_PHYS32_ENTRY) naming the 32-bit
 * entry. Left out of the "no PVH" image variant used to test the 64-bit
 * ELF entry path. */
    .section .note.pvh, "a", @note
    .balign 4
    .long 4                 /* name size: "Xen\0" */
    .long 8                 /* descriptor size */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32

    .section .note.GNU-stack, "", @progbits
