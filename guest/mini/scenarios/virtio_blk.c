/* virtio_blk.c - virtio-blk through the vIOMMU (issue 4): the guest finds
 * the DMAR unit and the PCI devices through ACPI, turns translation on,
 * writes a pattern to the disk through its first-stage DMA domain, reads
 * it back and compares; then a read into a buffer the DMA domain does not
 * map must fail without writing it. blk_sector=N picks the first sector
 * (default 8); the host checks the image file afterwards: byte i of the
 * 4 KiB written at N*512 is (i ^ (i >> 8) ^ 0xa5) & 0xff. On a read-only
 * disk the write must fail with IOERR instead (and the read must not find
 * the pattern). */
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

int scenario_virtio_blk(const struct boot_info *bi)
{
    (void)bi;
    if (!platform_up(&pf, false, false) || !vblk_init(&blk, pf.pci, pf.npci))
        return EXIT_FAIL;
    u64 sector = cmdline_u64("blk_sector", 8);
    if (blk.capacity < 8 || sector > blk.capacity - 8) {
        kprintf("stalewalk-guest: error=blk_sector sector=%llu capacity=%llu\n", sector,
                blk.capacity);
        return EXIT_USAGE;
    }
    u64 wbuf = page_alloc(), rbuf = page_alloc(), hidden = page_alloc();
    if (!wbuf || !rbuf || !hidden || !vtd_dma_map(wbuf, PAGE_SIZE) || !vtd_dma_map(rbuf, PAGE_SIZE))
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
    /* a buffer outside the DMA domain: the device cannot reach it */
    u8 us = vblk_rw(&blk, false, sector, hidden, PAGE_SIZE);
    bool untouched = true;
    for (u32 i = 0; i < PAGE_SIZE && untouched; i++)
        untouched = ((u8 *)hidden)[i] == 0x3c;
    u32 faults = vtd_fault_service(NULL);
    bool pass = rs == 0 && us != 0 && untouched &&
                (blk.read_only ? ws == 1 && !match : ws == 0 && match);
    kprintf("stalewalk-guest: scenario=virtio-blk capacity=%llu sector=%llu read_only=%u "
            "write_status=%u read_status=%u match=%u unmapped_read_status=%u untouched=%u "
            "fault_records=%u result=%s\n",
            blk.capacity, sector, blk.read_only, ws, rs, match, us, untouched, faults,
            pass ? "pass" : "FAIL");
    return pass ? EXIT_OK : EXIT_FAIL;
}
