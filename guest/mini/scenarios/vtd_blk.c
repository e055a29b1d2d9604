/* vtd_blk.c - virtio-blk DMA through the vIOMMU's first-stage tables
 * (issue 4), on the polled driver in ../virtio_blk.c:
 *
 *  vtd-blk        needs a DMAR unit. Writes VTD_BLK_BYTES of a pattern at
 *                 blk_sector=N (default 64) through mapped buffers, reads
 *                 it back and compares; then unmaps the read buffer
 *                 (PASID-based IOTLB invalidation + wait) and reads again:
 *                 the device must fault instead of using a stale IOTLB
 *                 entry, and the buffer must stay untouched. Byte i of the
 *                 pattern is (i * 7 + (i >> 9)) & 0xff ^ 0x5a.
 *                 blk_unmap_flush=0 plays a buggy driver: the mappings are
 *                 cleared without the IOTLB invalidation, so the device
 *                 writes the buffer through the stale IOTLB entries; the
 *                 scenario then reports FAIL (and the model's checker
 *                 sees the stale use).
 *  vtd-blk-fault  needs a DMAR unit. A read into and a write from a page the
 *                 DMA domain never mapped: both requests fail, each DMA
 *                 raises a fault record and a fault interrupt, the page
 *                 stays untouched and the disk at blk_sector=N (default
 *                 128) keeps its contents (read before and after through a
 *                 mapped buffer: the device and the VMM carry on).
 *  blk-bench      with or without a DMAR unit: reads blk_bench_mib=N MiB
 *                 (default 64) sequentially in BENCH_REQ-byte requests into
 *                 one mapped buffer, after one warm-up request (so the
 *                 IOTLB is warm when translation is on), and prints the
 *                 bytes and the TSC cycles the timed reads took. The
 *                 buffer is mapped with 2 MiB first-stage leaves (as Linux
 *                 maps an aligned 2 MiB range), or with 4 KiB pages when
 *                 blk_bench_2m=0. */
#include "scenario.h"
#include "../console.h"
#include "../exit.h"
#include "../io.h"
#include "../irq.h"
#include "../lib.h"
#include "../memory.h"
#include "../platform.h"
#include "../virtio_blk.h"
#include "../vtd.h"

/* Bytes the vtd-blk round trip writes (two pages: one request spans a
 * page boundary of the IOVA space). */
#define VTD_BLK_BYTES (2 * PAGE_SIZE)
/* Polls of the fault-interrupt window per expected fault. */
#define FAULT_IRQ_SPINS 200000
/* One benchmark request: large, so the guest's emulated kernel-mode work
 * per byte stays tiny (the device allows up to 16 MiB); one 2 MiB page. */
#define BENCH_REQ (2u << 20)
/* Most MiB one benchmark run reads (bounds the run time). */
#define BENCH_MAX_MIB 4096

static struct platform pf;
static struct vblk blk;
static u8 bench_buf[BENCH_REQ] __attribute__((aligned(BENCH_REQ)));
/* The round trip's buffers: physically contiguous (the kernel image is
 * identity-mapped and so is the DMA domain). */
static u8 wbuf_mem[VTD_BLK_BYTES] __attribute__((aligned(4096)));
static u8 rbuf_mem[VTD_BLK_BYTES] __attribute__((aligned(4096)));

static u8 pattern(u64 i) { return (u8)((((i * 7) + (i >> 9)) & 0xff) ^ 0x5a); }

/* Bring-up shared by the three scenarios; `need_vtd` fails the run when
 * the platform has no DMAR unit. */
static bool up(const char *name, bool need_vtd)
{
    if (!platform_up(&pf, false, false))
        return false;
    if (need_vtd && !vtd_present()) {
        kprintf("stalewalk-guest: scenario=%s error=no_dmar_unit (run with --viommu on)\n", name);
        return false;
    }
    return vblk_init(&blk, pf.pci, pf.npci);
}

/* The buggy unmap of blk_unmap_flush=0: clears the DMA domain's 4 KiB
 * leaves of [pa, pa+len) and sends no invalidation. */
static bool clear_without_flush(u64 pa, u64 len)
{
    for (u64 a = pa; a < pa + len; a += PAGE_SIZE) {
        u64 *t = (u64 *)vtd_dma_domain()->pml4;
        for (int level = 3; level > 0; level--) {
            u64 e = t[(a >> (12 + 9 * level)) & 511];
            if (!(e & PTE_P) || (e & PTE_PS))
                return false;
            t = (u64 *)(e & PTE_ADDR);
        }
        t[(a >> 12) & 511] = 0;
    }
    return true;
}

/* The request carried no PASID: stalewalk's record says so (PP=0); QEMU
 * 10's names the RID_PASID (0) the unit translated it with (PP=1), as
 * Linux's fault handler also accepts (docs/QEMU-COMPARE.md). */
static bool no_pasid_tag(const struct vtd_fault *f) { return !f->pasid_present || f->pasid == 0; }

static bool all_bytes(u64 pa, u64 len, u8 v)
{
    for (u64 i = 0; i < len; i++)
        if (((u8 *)pa)[i] != v)
            return false;
    return true;
}

int scenario_vtd_blk(const struct boot_info *bi)
{
    (void)bi;
    if (!up("vtd-blk", true))
        return EXIT_FAIL;
    u64 sector = cmdline_u64("blk_sector", 64);
    if (blk.capacity < VTD_BLK_BYTES / 512 || sector > blk.capacity - VTD_BLK_BYTES / 512) {
        kprintf("stalewalk-guest: scenario=vtd-blk error=blk_args sector=%llu capacity=%llu\n",
                sector, blk.capacity);
        return EXIT_USAGE;
    }
    u64 wbuf = (u64)wbuf_mem, rbuf = (u64)rbuf_mem;
    if (!vtd_dma_map(wbuf, VTD_BLK_BYTES) || !vtd_dma_map(rbuf, VTD_BLK_BYTES)) {
        kprintf("stalewalk-guest: scenario=vtd-blk error=buffers\n");
        return EXIT_FAIL;
    }
    for (u64 i = 0; i < VTD_BLK_BYTES; i++)
        ((u8 *)wbuf)[i] = pattern(i);
    u8 ws = vblk_rw(&blk, true, sector, wbuf, VTD_BLK_BYTES);
    u8 rs = vblk_rw(&blk, false, sector, rbuf, VTD_BLK_BYTES);
    bool match = memcmp((void *)wbuf, (void *)rbuf, VTD_BLK_BYTES) == 0;
    /* unmap the read buffer: the IOTLB entries the two reads left must be
     * gone, so a third read faults and writes nothing */
    memset((void *)rbuf, 0x3c, VTD_BLK_BYTES);
    u64 faults0 = vtd_stats()->faults, irqs0 = irq_count(VEC_VTD_FAULT);
    bool flush = cmdline_u64("blk_unmap_flush", 1) != 0;
    bool unmapped = flush ? vtd_dma_unmap(rbuf, VTD_BLK_BYTES)
                          : clear_without_flush(rbuf, VTD_BLK_BYTES);
    u8 us = vblk_rw(&blk, false, sector, rbuf, VTD_BLK_BYTES);
    bool irq = irq_wait(VEC_VTD_FAULT, irqs0, FAULT_IRQ_SPINS);
    vtd_fault_service(NULL);
    u64 nf = vtd_stats()->faults - faults0;
    const struct vtd_fault *f = vtd_last_fault();
    bool fault_ok = nf >= 1 && (f->addr & ~0xfffULL) >= rbuf &&
                    (f->addr & ~0xfffULL) < rbuf + VTD_BLK_BYTES && f->rid == blk.pci.rid &&
                    no_pasid_tag(f);
    bool untouched = all_bytes(rbuf, VTD_BLK_BYTES, 0x3c);
    const struct vtd_stats *s = vtd_stats();
    bool pass = ws == 0 && rs == 0 && match && unmapped && us != 0 && irq && fault_ok && untouched;
    kprintf("stalewalk-guest: scenario=vtd-blk rid=0x%x capacity=%llu sector=%llu bytes=%llu "
            "write_status=%u read_status=%u match=%u\n",
            blk.pci.rid, blk.capacity, sector, VTD_BLK_BYTES, ws, rs, match);
    kprintf("stalewalk-guest: unmapped=%u unmap_flush=%u stale_read_status=%u fault_irq=%u "
            "fault_records=%llu fault_addr=0x%llx fault_rid=0x%x fault_reason=0x%x "
            "fault_pasid_present=%u untouched=%u\n",
            unmapped, flush, us, irq, nf, f->addr, f->rid, f->reason, f->pasid_present, untouched);
    kprintf("stalewalk-guest: driver_descriptors=%llu driver_waits=%llu driver_piotlb=%llu "
            "driver_pasid_cache=%llu result=%s\n",
            s->descriptors, s->waits, s->piotlb, s->pasid_cache, pass ? "pass" : "FAIL");
    return pass ? EXIT_OK : EXIT_FAIL;
}

/* One request on `victim` (never mapped): it must fail, raise a fault
 * interrupt and a record naming the device and the page. */
static bool faulting_request(bool write, u64 sector, u64 victim, u8 *status, bool *irq,
                             struct vtd_fault *f)
{
    u64 faults0 = vtd_stats()->faults, irqs0 = irq_count(VEC_VTD_FAULT);
    *status = vblk_rw(&blk, write, sector, victim, PAGE_SIZE);
    *irq = irq_wait(VEC_VTD_FAULT, irqs0, FAULT_IRQ_SPINS);
    vtd_fault_service(NULL);
    u64 nf = vtd_stats()->faults - faults0;
    *f = *vtd_last_fault();
    return *status != 0 && *irq && nf >= 1 && (f->addr & ~0xfffULL) == victim &&
           f->rid == blk.pci.rid && !f->pasid_present && f->reason != 0;
}

int scenario_vtd_blk_fault(const struct boot_info *bi)
{
    (void)bi;
    if (!up("vtd-blk-fault", true))
        return EXIT_FAIL;
    u64 sector = cmdline_u64("blk_sector", 128);
    if (blk.capacity < 8 || sector > blk.capacity - 8) {
        kprintf("stalewalk-guest: scenario=vtd-blk-fault error=blk_args sector=%llu "
                "capacity=%llu\n",
                sector, blk.capacity);
        return EXIT_USAGE;
    }
    u64 victim = page_alloc(), ok_buf = page_alloc(), before = page_alloc();
    if (!victim || !ok_buf || !before || !vtd_dma_map(ok_buf, PAGE_SIZE))
        return EXIT_FAIL;
    memset((void *)victim, 0x3c, PAGE_SIZE);
    /* what the disk holds there before the faulting write */
    u8 first = vblk_rw(&blk, false, sector, ok_buf, PAGE_SIZE);
    memcpy((void *)before, (void *)ok_buf, PAGE_SIZE);
    u8 rs, ws;
    bool rirq, wirq;
    struct vtd_fault rf, wf;
    /* device -> memory (a disk read) and memory -> device (a disk write) */
    bool read_ok = faulting_request(false, sector, victim, &rs, &rirq, &rf);
    bool write_ok = faulting_request(true, sector, victim, &ws, &wirq, &wf);
    bool untouched = all_bytes(victim, PAGE_SIZE, 0x3c);
    /* the device and the VMM carry on: a mapped read of the same sectors
     * works and finds them unchanged */
    memset((void *)ok_buf, 0xee, PAGE_SIZE);
    u8 after = vblk_rw(&blk, false, sector, ok_buf, PAGE_SIZE);
    bool disk_unchanged = memcmp((void *)ok_buf, (void *)before, PAGE_SIZE) == 0;
    bool pass = first == 0 && read_ok && write_ok && untouched && after == 0 && disk_unchanged;
    kprintf("stalewalk-guest: scenario=vtd-blk-fault rid=0x%x sector=%llu victim=0x%llx "
            "read_status=%u read_fault_irq=%u read_fault_addr=0x%llx read_fault_reason=0x%x "
            "read_fault_write=%u\n",
            blk.pci.rid, sector, victim, rs, rirq, rf.addr, rf.reason, rf.write);
    kprintf("stalewalk-guest: write_status=%u write_fault_irq=%u write_fault_addr=0x%llx "
            "write_fault_reason=0x%x write_fault_write=%u untouched=%u\n",
            ws, wirq, wf.addr, wf.reason, wf.write, untouched);
    kprintf("stalewalk-guest: after_status=%u disk_unchanged=%u fault_irqs_handled=%llu "
            "fault_records_total=%llu result=%s\n",
            after, disk_unchanged, vtd_stats()->fault_irqs, vtd_stats()->faults,
            pass ? "pass" : "FAIL");
    return pass ? EXIT_OK : EXIT_FAIL;
}

int scenario_blk_bench(const struct boot_info *bi)
{
    (void)bi;
    if (!up("blk-bench", false))
        return EXIT_FAIL;
    u64 mib = cmdline_u64("blk_bench_mib", 64);
    u64 req_sectors = BENCH_REQ / 512;
    if (mib == 0 || mib > BENCH_MAX_MIB || blk.capacity < req_sectors) {
        kprintf("stalewalk-guest: scenario=blk-bench error=blk_args bench_mib=%llu "
                "capacity=%llu (needs >= %llu sectors)\n",
                mib, blk.capacity, req_sectors);
        return EXIT_USAGE;
    }
    bool huge = cmdline_u64("blk_bench_2m", 1) != 0;
    if (!(huge ? vtd_dma_map_2m((u64)bench_buf, BENCH_REQ)
               : vtd_dma_map((u64)bench_buf, BENCH_REQ))) {
        kprintf("stalewalk-guest: scenario=blk-bench error=map\n");
        return EXIT_FAIL;
    }
    /* warm-up: fills the IOTLB (translation on) and the host page cache */
    u64 failed = vblk_rw(&blk, false, 0, (u64)bench_buf, BENCH_REQ) != 0;
    /* whole requests: an odd MiB count rounds up */
    u64 n = ((mib << 20) + BENCH_REQ - 1) / BENCH_REQ, at = 0;
    u64 t0 = rdtsc();
    for (u64 i = 0; i < n; i++) {
        if (at + req_sectors > blk.capacity)
            at = 0;
        failed += vblk_rw(&blk, false, at, (u64)bench_buf, BENCH_REQ) != 0;
        at += req_sectors;
    }
    u64 cycles = rdtsc() - t0;
    kprintf("stalewalk-guest: scenario=blk-bench translation=%s bench_dma_pages=%s "
            "bench_bytes=%llu bench_request_bytes=%u bench_requests=%llu bench_tsc_cycles=%llu "
            "bench_failed=%llu result=%s\n",
            vtd_present() ? "on" : "off", !vtd_present() ? "none" : huge ? "2m" : "4k",
            n * BENCH_REQ, BENCH_REQ, n, cycles, failed,
            failed ? "FAIL" : "pass");
    return failed ? EXIT_FAIL : EXIT_OK;
}
