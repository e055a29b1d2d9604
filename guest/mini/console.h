/* console.h - output on the COM1 8250 UART, and a small printf. */
#ifndef MINI_CONSOLE_H
#define MINI_CONSOLE_H

#include "types.h"

void console_putc(char c);
void console_puts(const char *s);
/* printf subset: %s %c %d %u %x %lu %lx %llu %llx %p, and %%. */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
