/* registry.c - the table of scenarios. Add new ones here. */
#include "scenario.h"
#include "../console.h"
#include "../lib.h"

static const struct scenario scenarios[] = {
    {"smoke", "a loop at CPL3 returning through the ud2 system call", scenario_smoke},
    {"spin", "spin at CPL3 forever (tests of SIGINT/SIGTERM)", scenario_spin},
    {"fault-ud", "ud2 at CPL0: the exception path (exits 3)", scenario_fault_ud},
    {"triple-fault", "an exception with no IDT: the VMM reports a triple fault", scenario_triple_fault},
    {"emulation-failure", "cmpxchg16b (or emulation_insn=xrstor) at CPL0, which KVM's emulator cannot run", scenario_emulation_failure},
    {"reset", "reset through the i8042", scenario_reset},
    {"string-io", "rep outsb to COM1 and rep insb from its line status register", scenario_string_io},
    {"sva-ops", "SVA device copy/fill/probe/ATS through a bound PASID", scenario_sva_ops},
    {"sva-prq", "a page request from the SVA device, answered by the guest", scenario_sva_prq},
    {"sva-misuse", "malformed descriptors, bad rings and a doorbell storm on the SVA device", scenario_sva_misuse},
    {"dma-fault", "a DMA to an unmapped IOVA: fault record and fault interrupt", scenario_dma_fault},
    {"exploit", "the stale kernel page-table walk, under kpgtable_free=", scenario_exploit},
    {"churn", "kernel page-table frees in bursts with SVA DMA, per kpgtable_free=", scenario_churn},
    {"virtio-blk", "write and read back a pattern on virtio-blk through the vIOMMU", scenario_virtio_blk},
    {"vtd-blk", "virtio-blk round trip through first-stage DMA tables, then unmap: no stale IOTLB use", scenario_vtd_blk},
    {"vtd-blk-fault", "virtio-blk DMA to a never-mapped page: fault records and interrupts, nothing written", scenario_vtd_blk_fault},
    {"blk-bench", "virtio-blk sequential read, 1 MiB requests (blk_bench_mib=), vIOMMU on or off", scenario_blk_bench},
    {"vmm-emulate", "int3, popcnt/lzcnt/tzcnt, BMI1/2, movbe, cmpxchg16b, x87/SSE control at CPL0", scenario_vmm_emulate},
    {"cpuid-probe", "CPUID feature leaves as seen at CPL0 and at CPL3", scenario_cpuid_probe},
    {"chaos", "random vIOMMU/device registers, tables and rings (chaos_iters=, seed=)", scenario_chaos},
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
