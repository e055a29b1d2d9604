/* cmdline.c - a tiny key=value command-line parser. */
#include "cmdline.h"
#include "lib.h"

static struct {
    const char *key, *value;
} args[CMDLINE_MAX_ARGS];
static u32 nargs, dropped;

void cmdline_parse(char *p)
{
    nargs = 0;
    dropped = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            *p++ = 0;
        if (!*p)
            break;
        char *word = p;
        char *value = "";
        bool has_value = false;
        while (*p && *p != ' ' && *p != '\t') {
            if (*p == '=' && !has_value) {
                *p = 0;
                value = p + 1;
                has_value = true;
            }
            p++;
        }
        if (nargs < CMDLINE_MAX_ARGS) {
            args[nargs].key = word;
            args[nargs].value = value;
            nargs++;
        } else {
            dropped++;
        }
    }
}

const char *cmdline_get(const char *key)
{
    for (u32 i = nargs; i > 0; i--)
        if (!strcmp(args[i - 1].key, key))
            return args[i - 1].value;
    return NULL;
}

u32 cmdline_dropped(void) { return dropped; }

u32 cmdline_count(void) { return nargs; }

const char *cmdline_key(u32 i) { return i < nargs ? args[i].key : NULL; }
