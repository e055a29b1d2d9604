/* cmdline.h - the kernel command line as key=value words. */
#ifndef MINI_CMDLINE_H
#define MINI_CMDLINE_H

#include "types.h"

/* Words kept; later words are ignored (and reported by cmdline_dropped). */
#define CMDLINE_MAX_ARGS 16

/* Splits `line` in place into words; a word without '=' has value "". */
void cmdline_parse(char *line);
/* The value of `key`, or NULL when absent (the last occurrence wins). */
const char *cmdline_get(const char *key);
/* Words that did not fit in the table. */
u32 cmdline_dropped(void);
/* Words kept, and the key of word `i` (NULL past the end). */
u32 cmdline_count(void);
const char *cmdline_key(u32 i);

#endif
