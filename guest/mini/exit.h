/* exit.h - ending the run: the debug-exit port (value = the VMM's exit
 * status) and the i8042 reset line. */
#ifndef MINI_EXIT_H
#define MINI_EXIT_H

#include "io.h"
#include "layout.h"

static inline __attribute__((noreturn)) void guest_exit(u8 status)
{
    outb(PORT_DEBUG_EXIT, status);
    halt_forever();
    __builtin_unreachable();
}

static inline __attribute__((noreturn)) void guest_reset(void)
{
    outb(PORT_I8042_CMD, 0xfe);
    halt_forever();
    __builtin_unreachable();
}

#endif
