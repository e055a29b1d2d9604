/* virtio_blk.c - virtio-blk through the vIOMMU (issue 4): the guest finds
 * the DMAR unit and the PCI devices through ACPI, turns translation on,
 * writes a pattern to the disk through its first-stage DMA domain, reads
 * it back and compares; then a read into a buffer the DMA domain does not
 * map must fail without writing it. blk_sector=N picks the first sector
 * (default 8); the host checks the image file afterwards: byte i of the
 * 4 KiB written at N*512 is (i ^ (i >> 8) ^ 0xa5) & 0xff. On a read-only
 * disk the write must fail with IOERR instead (and the read must not find
 * the pattern). blk_bench_mib=N then reads N MiB sequentially in 64 KiB
 * requests and prints the TSC cycles it took (also with --viommu off,
 * where DMA is untranslated). */
#include "scenario.h"
#include "../console.h"
#include "../exit.h"
#include "../lib.h"
#include "../memory.h"
#include "../platform.h"
#include "../virtio_blk.h"
#include "../vtd.h"

static struct platform pf;
static struct vblk blk;

/* Sequential-read benchmark buffer: one request of BENCH_CHUNK bytes. */
#define BENCH_CHUNK 0x10000
#define BENCH_MAX_MIB 4096
static u8 bench_buf[BENCH_CHUNK] __attribute__((aligned(4096)));

/* Reads `mib` MiB from sector 0 on, wrapping at the disk's end, in
 * BENCH_CHUNK requests; returns the failed requests. */
static u64 bench(u64 mib, u64 *cycles)
{
    u64 sectors = BENCH_CHUNK / 512, at = 0, failed = 0;
    u64 n = mib * (0x100000 / BENCH_CHUNK);
    u64 t0 = rdtsc();
    for (u64 i = 0; i < n; i++) {
        if (at + sectors > blk.capacity)
            at = 0;
        failed += vblk_rw(&blk, false, at, (u64)bench_buf, BENCH_CHUNK) != 0;
        at += sectors;
    }
    *cycles = rdtsc() - t0;
    return failed;
}

int scenario_virtio_blk(const struct boot_info *bi)
{
    (void)bi;
    if (!platform_up(&pf, false, false) || !vblk_init(&blk, pf.pci, pf.npci))
        return EXIT_FAIL;
    u64 sector = cmdline_u64("blk_sector", 8);
    u64 mib = cmdline_u64("blk_bench_mib", 0);
    if (blk.capacity < BENCH_CHUNK / 512 || sector > blk.capacity - 8 || mib > BENCH_MAX_MIB) {
        kprintf("stalewalk-guest: error=blk_args sector=%llu capacity=%llu bench_mib=%llu\n",
                sector, blk.capacity, mib);
        return EXIT_USAGE;
    }
    u64 wbuf = page_alloc(), rbuf = page_alloc(), hidden = page_alloc();
    if (!wbuf || !rbuf || !hidden || !vtd_dma_map(wbuf, PAGE_SIZE) ||
        !vtd_dma_map(rbuf, PAGE_SIZE) || !vtd_dma_map((u64)bench_buf, BENCH_CHUNK))
        return EXIT_FAIL;
    for (u32 i = 0; i < PAGE_SIZE; i++)
        ((u8 *)wbuf)[i] = (u8)((i ^ (i >> 8) ^ 0xa5) & 0xff);
    memset((void *)rbuf, 0, PAGE_SIZE);
    memset((void *)hidden, 0x3c, PAGE_SIZE);
    /* on a read-only disk the write must fail with IOERR and change
     * nothing */
    u8 ws = vblk_rw(&blk, true, sector, wbuf, PAGE_SIZE);
    u8 rs = vblk_rw(&blk, false, sector, rbuf, PAGE_SIZE);
    bool match = memcmp((void *)wbuf, (void *)rbuf, PAGE_SIZE) == 0;
    /* a buffer outside the DMA domain: the device cannot reach it (only
     * checked with translation on) */
    u8 us = 0;
    bool untouched = true;
    if (vtd_present()) {
        us = vblk_rw(&blk, false, sector, hidden, PAGE_SIZE);
        for (u32 i = 0; i < PAGE_SIZE && untouched; i++)
            untouched = ((u8 *)hidden)[i] == 0x3c;
    }
    u32 faults = vtd_present() ? vtd_fault_service(NULL) : 0;
    u64 cycles = 0, bench_failed = mib ? bench(mib, &cycles) : 0;
    bool pass = rs == 0 && (!vtd_present() || us != 0) && untouched && bench_failed == 0 &&
                (blk.read_only ? ws == 1 && !match : ws == 0 && match);
    kprintf("stalewalk-guest: scenario=virtio-blk capacity=%llu sector=%llu read_only=%u "
            "write_status=%u read_status=%u match=%u unmapped_read_status=%u untouched=%u "
            "fault_records=%u\n",
            blk.capacity, sector, blk.read_only, ws, rs, match, us, untouched, faults);
    kprintf("stalewalk-guest: bench_read_mib=%llu bench_request_bytes=%u bench_tsc_cycles=%llu "
            "bench_failed=%llu result=%s\n",
            mib, BENCH_CHUNK, cycles, bench_failed, pass ? "pass" : "FAIL");
    return pass ? EXIT_OK : EXIT_FAIL;
}
