/* sva_misuse.c - the guest misuses the SVA device on purpose (issue 5):
 * malformed descriptors complete with error statuses, a ring the DMA
 * domain does not map halts the device with ERROR=3 (ring fetch failed),
 * a bad ring configuration and a bad tail are refused, a doorbell storm
 * while halted is ignored (counted), and the device works again after the
 * driver resets its ring. */
#include "scenario.h"
#include "../console.h"
#include "../exit.h"
#include "../memory.h"
#include "../platform.h"
#include "../vtd.h"

#define SVA_REG_DOORBELLS_IGNORED 0x68
#define STORM 1000
#define ST_BAD_OPCODE 3
#define ST_BAD_DESCRIPTOR 4
#define ST_BAD_LENGTH 5

static struct platform pf;

static bool check(const char *what, u64 got, u64 want)
{
    kprintf("stalewalk-guest: %s=%llu expected=%llu %s\n", what, got, want,
            got == want ? "ok" : "FAIL");
    return got == want;
}

int scenario_sva_misuse(const struct boot_info *bi)
{
    (void)bi;
    if (!platform_up(&pf, false, true))
        return EXIT_FAIL;
    struct sva_dev *s = &pf.sva[0];
    bool pass = true;
    /* malformed descriptors: bad opcode, reserved flag bits, PRIV without
     * PASID, zero and oversized lengths */
    struct sva_desc d = {.opcode = 0x77};
    pass &= check("bad_opcode_status", sva_run(s, &d), ST_BAD_OPCODE);
    d = (struct sva_desc){.opcode = SVA_FILL, .flags = 0x80, .addr_b = s->ring, .len = 8};
    pass &= check("reserved_flags_status", sva_run(s, &d), ST_BAD_DESCRIPTOR);
    d = (struct sva_desc){.opcode = SVA_PROBE, .flags = SVA_F_PRIV, .addr_a = s->ring};
    pass &= check("priv_without_pasid_status", sva_run(s, &d), ST_BAD_DESCRIPTOR);
    d = (struct sva_desc){.opcode = SVA_FILL, .addr_b = s->ring, .len = 0};
    pass &= check("zero_length_status", sva_run(s, &d), ST_BAD_LENGTH);
    d = (struct sva_desc){.opcode = SVA_COPY, .addr_a = 0, .addr_b = 0, .len = 1ULL << 40};
    pass &= check("huge_length_status", sva_run(s, &d), ST_BAD_LENGTH);
    /* a bad ring configuration is refused at enable */
    sva_write32(s, SVA_REG_CTRL, 0);
    sva_write32(s, SVA_REG_RING_ENTRIES, 3);
    sva_write32(s, SVA_REG_CTRL, 1);
    pass &= check("bad_ring_error", sva_read32(s, SVA_REG_ERROR), 1);
    pass &= check("bad_ring_enabled", sva_read32(s, SVA_REG_STATUS) & 1, 0);
    /* a ring the DMA domain does not map: the fetch faults, the device
     * halts, and a doorbell storm does nothing */
    u64 unmapped = page_alloc();
    sva_write32(s, SVA_REG_ERROR, 0);
    *(volatile u64 *)(s->bar + SVA_REG_RING_BASE) = unmapped;
    sva_write32(s, SVA_REG_RING_ENTRIES, 64);
    sva_write32(s, SVA_REG_CTRL, 1);
    sva_write32(s, SVA_REG_TAIL, 1);
    pass &= check("unmapped_ring_error", sva_read32(s, SVA_REG_ERROR), 3);
    pass &= check("unmapped_ring_halted", (sva_read32(s, SVA_REG_STATUS) >> 2) & 1, 1);
    u64 ignored0 = sva_read64(s, SVA_REG_DOORBELLS_IGNORED);
    for (u32 i = 0; i < STORM; i++)
        sva_write32(s, SVA_REG_TAIL, i % 64);
    pass &= check("storm_doorbells_ignored", sva_read64(s, SVA_REG_DOORBELLS_IGNORED) - ignored0,
                  STORM);
    /* a bad tail on a good ring */
    sva_ring_reset(s);
    sva_write32(s, SVA_REG_TAIL, 64);
    pass &= check("bad_tail_error", sva_read32(s, SVA_REG_ERROR), 2);
    /* the driver resets its ring and the device works again */
    sva_ring_reset(s);
    u64 buf = page_alloc();
    vtd_dma_map(buf, PAGE_SIZE);
    u8 st = sva_fill(s, 0, 0, buf, 0x5151515151515151ULL, 64);
    pass &= check("recovered_fill_status", st, SVA_ST_SUCCESS);
    pass &= check("recovered_fill_byte", *(volatile u8 *)(buf + 63), 0x51);
    u32 faults = vtd_fault_service(NULL);
    kprintf("stalewalk-guest: scenario=sva-misuse fault_records=%u result=%s\n", faults,
            pass ? "pass" : "FAIL");
    return pass ? EXIT_OK : EXIT_FAIL;
}
