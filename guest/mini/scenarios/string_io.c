/* string_io.c - string port I/O (rep outsb / rep insb): the VMM must hand
 * each element to the device as its own access, as hardware does. */
#include "scenario.h"
#include "../console.h"
#include "../exit.h"
#include "../io.h"
#include "../lib.h"

#define COM1_DATA 0x3f8
#define COM1_LSR 0x3fd
#define READS 8

static const char message[] = "stalewalk-guest: string_io=rep_outsb\n";

int scenario_string_io(const struct boot_info *bi)
{
    (void)bi;
    /* The whole line in one instruction: every byte must reach the UART. */
    const char *src = message;
    u64 n = sizeof(message) - 1;
    __asm__ volatile("cld; rep outsb" : "+S"(src), "+c"(n) : "d"((u16)COM1_DATA) : "memory");

    /* Eight reads of the line status register in one instruction: each
     * must be a read of the register (THR empty), not 0xff filler. */
    u8 lsr[READS];
    u8 *dst = lsr;
    n = READS;
    __asm__ volatile("cld; rep insb" : "+D"(dst), "+c"(n) : "d"((u16)COM1_LSR) : "memory");
    u8 want = inb(COM1_LSR);
    int same = 0;
    for (int i = 0; i < READS; i++)
        same += lsr[i] == want;
    int ok = same == READS && want != 0xff;
    kprintf("stalewalk-guest: scenario=string-io lsr=0x%x insb_same=%d/%d %s\n", want, same, READS,
            ok ? "pass" : "FAIL");
    return ok ? EXIT_OK : EXIT_FAIL;
}
