/* console.c - COM1 output. The VMM's and QEMU's UARTs accept a byte at any
 * time, so the transmitter is not polled: each poll would be one more
 * emulated instruction and one more VM exit. */
#include "console.h"
#include "io.h"
#include "layout.h"
#include "spinlock.h"

#include <stdarg.h>

static struct spinlock console_lock;

void console_putc(char c)
{
    if (c == '\n')
        outb(PORT_COM1, '\r');
    outb(PORT_COM1, (u8)c);
}

void console_puts(const char *s)
{
    while (*s)
        console_putc(*s++);
}

static void put_unsigned(u64 v, unsigned base)
{
    char buf[24];
    int i = 0;
    do {
        unsigned d = (unsigned)(v % base);
        buf[i++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (i)
        console_putc(buf[--i]);
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    spin_lock(&console_lock);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            console_putc(*fmt);
            continue;
        }
        fmt++;
        int longs = 0;
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            console_puts(s ? s : "(null)");
            break;
        }
        case 'c':
            console_putc((char)va_arg(ap, int));
            break;
        case 'd': {
            i64 v = longs ? va_arg(ap, i64) : va_arg(ap, int);
            if (v < 0) {
                console_putc('-');
                put_unsigned((u64)(-(v + 1)) + 1, 10);
            } else {
                put_unsigned((u64)v, 10);
            }
            break;
        }
        case 'u':
            put_unsigned(longs ? va_arg(ap, u64) : va_arg(ap, unsigned), 10);
            break;
        case 'x':
            put_unsigned(longs ? va_arg(ap, u64) : va_arg(ap, unsigned), 16);
            break;
        case 'p':
            console_puts("0x");
            put_unsigned((u64)va_arg(ap, void *), 16);
            break;
        case '%':
            console_putc('%');
            break;
        case '\0':
            fmt--;
            break;
        default:
            console_putc('%');
            console_putc(*fmt);
        }
    }
    spin_unlock(&console_lock);
    va_end(ap);
}
