/* scenario.h - named test programs selected with scenario=NAME on the
 * command line. Each returns an exit status (EXIT_OK when it passed) and
 * reports what it observed as "stalewalk-guest: key=value" lines. */
#ifndef MINI_SCENARIO_H
#define MINI_SCENARIO_H

#include "../bootinfo.h"

struct scenario {
    const char *name;
    const char *what;
    int (*run)(const struct boot_info *bi);
};

/* The scenario called `name`, or NULL. */
const struct scenario *scenario_find(const char *name);
/* Prints the known scenario names (for an unknown scenario=). */
void scenario_list(void);
/* Whether `key=` is a knob of `scenario` (NULL: no scenario) per catalog.def. */
bool scenario_knob_known(const char *scenario, const char *key);
/* Prints the knobs `scenario` accepts, with their defaults. */
void scenario_knobs_list(const char *scenario);

int scenario_smoke(const struct boot_info *bi);
int scenario_spin(const struct boot_info *bi);
int scenario_chatter(const struct boot_info *bi);
int scenario_fault_ud(const struct boot_info *bi);
int scenario_triple_fault(const struct boot_info *bi);
int scenario_emulation_failure(const struct boot_info *bi);
int scenario_reset(const struct boot_info *bi);
int scenario_string_io(const struct boot_info *bi);
int scenario_sva_ops(const struct boot_info *bi);
int scenario_sva_prq(const struct boot_info *bi);
int scenario_dma_fault(const struct boot_info *bi);
int scenario_sva_misuse(const struct boot_info *bi);
int scenario_exploit(const struct boot_info *bi);
int scenario_churn(const struct boot_info *bi);
int scenario_chaos(const struct boot_info *bi);
int scenario_sva_bench(const struct boot_info *bi);
int scenario_virtio_blk(const struct boot_info *bi);
int scenario_vtd_blk(const struct boot_info *bi);
int scenario_vtd_blk_fault(const struct boot_info *bi);
int scenario_blk_bench(const struct boot_info *bi);
int scenario_vmm_emulate(const struct boot_info *bi);
int scenario_cpuid_probe(const struct boot_info *bi);

#endif
