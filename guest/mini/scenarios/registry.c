/* registry.c - the tables of scenarios and their command-line knobs, both
 * from catalog.def: add new ones there. */
#include "scenario.h"
#include "../console.h"
#include "../lib.h"

static const struct scenario scenarios[] = {
#define SCENARIO(fn, name, needs, what) {name, what, scenario_##fn},
#define KNOB(scenario, key, def, what)
#include "catalog.def"
#undef SCENARIO
#undef KNOB
};

/* The knobs each scenario reads ("*": every scenario). */
static const struct knob {
    const char *scenario, *key, *def;
} knobs[] = {
#define SCENARIO(fn, name, needs, what)
#define KNOB(scenario, key, def, what) {scenario, key, def},
#include "catalog.def"
#undef SCENARIO
#undef KNOB
};

static bool knob_applies(const struct knob *k, const char *scenario)
{
    return !strcmp(k->scenario, "*") || (scenario && !strcmp(k->scenario, scenario));
}

bool scenario_knob_known(const char *scenario, const char *key)
{
    for (usize i = 0; i < ARRAY_SIZE(knobs); i++)
        if (knob_applies(&knobs[i], scenario) && !strcmp(knobs[i].key, key))
            return true;
    return false;
}

void scenario_knobs_list(const char *scenario)
{
    for (usize i = 0; i < ARRAY_SIZE(knobs); i++)
        if (knob_applies(&knobs[i], scenario))
            kprintf("stalewalk-guest: knob_available=%s default=%s\n", knobs[i].key,
                    knobs[i].def[0] ? knobs[i].def : "(none)");
}

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
