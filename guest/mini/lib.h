/* lib.h - the few string and memory helpers the compiler and the kernel
 * need (no libc in a freestanding kernel). */
#ifndef MINI_LIB_H
#define MINI_LIB_H

#include "types.h"

void *memset(void *dst, int c, usize n);
void *memcpy(void *dst, const void *src, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
int strcmp(const char *a, const char *b);
/* Parses an unsigned decimal or 0x-prefixed hex number; false when `s` is
 * not entirely a number or it overflows. */
bool parse_u64(const char *s, u64 *out);

#endif
