/* registry.c - the table of scenarios. Add new ones here. */
#include "scenario.h"
#include "../console.h"
#include "../lib.h"

static const struct scenario scenarios[] = {
    {"smoke", "a loop at CPL3 returning through the ud2 system call", scenario_smoke},
    {"fault-ud", "ud2 at CPL0: the exception path (exits 3)", scenario_fault_ud},
    {"triple-fault", "an exception with no IDT: the VMM reports a triple fault", scenario_triple_fault},
    {"emulation-failure", "cmpxchg16b at CPL0, which KVM's emulator cannot run", scenario_emulation_failure},
    {"reset", "reset through the i8042", scenario_reset},
};

const struct scenario *scenario_find(const char *name)
{
    for (usize i = 0; i < ARRAY_SIZE(scenarios); i++)
        if (!strcmp(scenarios[i].name, name))
            return &scenarios[i];
    return NULL;
}

void scenario_list(void)
{
    for (usize i = 0; i < ARRAY_SIZE(scenarios); i++)
        kprintf("stalewalk-guest: scenario_available=%s\n", scenarios[i].name);
}
