/* main.c - kmain: boot information, console banner, memory, traps, SMP,
 * then the scenario named on the command line. */
#include "bootinfo.h"
#include "cmdline.h"
#include "console.h"
#include "cpu.h"
#include "kpgtable.h"
#include "exit.h"
#include "layout.h"
#include "memory.h"
#include "scenarios/scenario.h"
#include "smp.h"

static struct boot_info bi;

__attribute__((noreturn)) void kmain(u32 kind, u32 info)
{
    bool ok = bootinfo_parse(kind, info, &bi);
    console_puts("stalewalk mini guest 0.1\n");
    if (!ok) {
        kprintf("stalewalk-guest: error=unknown_boot_info kind=%u\n", kind);
        guest_exit(EXIT_USAGE);
    }
    cmdline_parse(bi.cmdline);
    idt_load();
    tss_init();
    memory_init(&bi);
    u32 expected = smp_expected_cpus();
    u32 online = smp_start(expected);
    kprintf("stalewalk-guest: boot=%s cpus=%u mem_mib=%llu\n", bi.loader, online,
            memory_total_pages() / 256);
    if (bi.truncated || cmdline_dropped())
        kprintf("stalewalk-guest: warning=boot_info_truncated\n");
    if (online != expected) {
        kprintf("stalewalk-guest: error=smp expected=%u online=%u\n", expected, online);
        guest_exit(EXIT_FAIL);
    }
    const char *name = cmdline_get("scenario");
    int status = EXIT_OK;
    const struct scenario *s = NULL;
    if (name) {
        s = scenario_find(name);
        if (!s) {
            kprintf("stalewalk-guest: error=unknown_scenario scenario=%s\n", name);
            scenario_list();
            guest_exit(EXIT_USAGE);
        }
    }
    /* A misspelt knob (kpgtable_fre=deferred) must not run the default and
     * pass: every key must be one this scenario reads (catalog.def). */
    for (u32 i = 0; i < cmdline_count(); i++) {
        const char *key = cmdline_key(i);
        if (!scenario_knob_known(name, key)) {
            kprintf("stalewalk-guest: error=unknown_key key=%s scenario=%s\n", key,
                    name ? name : "(none)");
            scenario_knobs_list(name);
            guest_exit(EXIT_USAGE);
        }
    }
    enum kpt_policy policy;
    if (!kpgtable_parse_policy(cmdline_get("kpgtable_free"), &policy)) {
        kprintf("stalewalk-guest: error=bad_value key=kpgtable_free value=%s "
                "(want sync, deferred or eager)\n",
                cmdline_get("kpgtable_free"));
        guest_exit(EXIT_USAGE);
    }
    if (s)
        status = s->run(&bi);
    kprintf("stalewalk-guest: exit=%d\n", status);
    guest_exit((u8)status);
}
