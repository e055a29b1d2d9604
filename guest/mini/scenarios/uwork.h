/* uwork.h - the user-mode (CPL3) halves of the device scenarios: buffer
 * preparation and checking, forging page-table entries. Parameters come
 * in the process's first data page (struct uparams at USER_PARAM_VA),
 * which the kernel fills through its physical address. */
#ifndef MINI_UWORK_H
#define MINI_UWORK_H

#include "../proc.h"

struct uparams {
    u64 a, b, len;
};

/* Writes len bytes at a: 8-byte words seed + i * 0x9e3779b97f4a7c15. */
void user_fill_seq(u64 seed);
/* Returns the number of differing 8-byte words of a and b over len. */
void user_compare(u64 unused);
/* Returns the number of words of a (len bytes) that differ from pattern. */
void user_check_pattern(u64 pattern);
/* Writes `entry` into all 512 slots of the page at a; returns 512. */
void user_forge(u64 entry);

/* Kernel side: the parameter block of `p` (its first data page). */
struct uparams *uparams_of(struct proc *p);
/* Maps the parameter page (must be the process's first mapping). */
bool uparams_map(struct proc *p);
/* Runs `fn(arg)` at CPL3 in `p` with parameters a, b, len; returns what
 * it returned. */
u64 ucall(struct proc *p, void (*fn)(u64), u64 arg, u64 a, u64 b, u64 len);

#endif
