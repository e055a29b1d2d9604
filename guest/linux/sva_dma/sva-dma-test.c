// SPDX-License-Identifier: GPL-2.0
/*
 * sva-dma-test: exercise every operation of the stalewalk SVA DMA test
 * device through /dev/sva_dmaN, on this process's own virtual addresses.
 *
 *   sva-dma-test [-d /dev/sva_dma0] [-k KERNEL_ADDR]...
 *
 * Checks: fill and copy produce the right bytes; compare finds equal
 * buffers equal and reports the first difference; probe reads a byte of
 * a mapped buffer and faults on an unmapped address; probe of each
 * KERNEL_ADDR (a user request to a supervisor page) faults; a probe
 * without PASID does not reach this process's buffer; ATS
 * translation of a buffer succeeds, and a repeat is answered from the
 * device's ATC.  Prints one line per check and a summary line
 * "stalewalk-guest: sva_dma_test pass=N fail=M"; exits 0 only if
 * nothing failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sva_dma_uapi.h"

#define BUF_LEN		(64 * 1024)
#define MAX_KADDRS	16

static int passed, failed;

static void check(int ok, const char *what, const struct sva_dma_op *op)
{
	if (ok)
		passed++;
	else
		failed++;
	printf("sva-dma-test: %s %s", ok ? "PASS" : "FAIL", what);
	if (op)
		printf(" (status %u reason %u cflags %#x result %#" PRIx64 ")",
		       op->status, op->fault_reason, op->cflags,
		       (uint64_t)op->result);
	printf("\n");
}

static int submit(int fd, unsigned long cmd, struct sva_dma_op *op)
{
	if (ioctl(fd, cmd, op) < 0) {
		printf("sva-dma-test: ioctl %#lx: %s\n", cmd, strerror(errno));
		return -1;
	}
	return 0;
}

static void *map_buffer(void)
{
	void *p = mmap(NULL, BUF_LEN, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	/* Present and resident: no page request needed. */
	memset(p, 0, BUF_LEN);
	return p;
}

static void test_fill(int fd, uint8_t *dst)
{
	struct sva_dma_op op = { 0 };
	const uint64_t pattern = 0x0123456789abcdefULL;
	int ok = 1;
	size_t i;

	op.addr_b = (uintptr_t)dst;
	op.len = BUF_LEN;
	op.pattern = pattern;
	if (submit(fd, SVA_DMA_IOC_FILL, &op)) {
		check(0, "fill: ioctl", NULL);
		return;
	}
	for (i = 0; i < BUF_LEN; i++)
		ok &= dst[i] == (uint8_t)(pattern >> (8 * (i % 8)));
	check(op.status == SVA_DMA_ST_SUCCESS && ok, "fill 64 KiB", &op);
}

static void test_copy(int fd, uint8_t *src, uint8_t *dst)
{
	struct sva_dma_op op = { 0 };
	size_t i;

	for (i = 0; i < BUF_LEN; i++)
		src[i] = (uint8_t)(i * 7 + 3);
	memset(dst, 0, BUF_LEN);
	op.addr_a = (uintptr_t)src;
	op.addr_b = (uintptr_t)dst;
	op.len = BUF_LEN;
	if (submit(fd, SVA_DMA_IOC_COPY, &op)) {
		check(0, "copy: ioctl", NULL);
		return;
	}
	check(op.status == SVA_DMA_ST_SUCCESS && !memcmp(src, dst, BUF_LEN),
	      "copy 64 KiB", &op);
}

static void test_compare(int fd, uint8_t *a, uint8_t *b)
{
	struct sva_dma_op op = { 0 };
	const size_t diff = 12345;

	memcpy(b, a, BUF_LEN);
	op.addr_a = (uintptr_t)a;
	op.addr_b = (uintptr_t)b;
	op.len = BUF_LEN;
	if (!submit(fd, SVA_DMA_IOC_COMPARE, &op))
		check(op.status == SVA_DMA_ST_SUCCESS &&
		      !(op.cflags & SVA_DMA_CF_MISMATCH) && op.result == BUF_LEN,
		      "compare equal buffers", &op);
	else
		check(0, "compare: ioctl", NULL);

	b[diff] ^= 0xff;
	memset(&op, 0, sizeof(op));
	op.addr_a = (uintptr_t)a;
	op.addr_b = (uintptr_t)b;
	op.len = BUF_LEN;
	if (!submit(fd, SVA_DMA_IOC_COMPARE, &op))
		check(op.status == SVA_DMA_ST_SUCCESS &&
		      (op.cflags & SVA_DMA_CF_MISMATCH) && op.result == diff,
		      "compare finds the first difference", &op);
	else
		check(0, "compare: ioctl", NULL);
}

static void test_probe_mapped(int fd, uint8_t *buf)
{
	struct sva_dma_op op = { 0 };

	buf[100] = 0x5a;
	op.addr_a = (uintptr_t)&buf[100];
	if (submit(fd, SVA_DMA_IOC_PROBE, &op)) {
		check(0, "probe: ioctl", NULL);
		return;
	}
	check(op.status == SVA_DMA_ST_SUCCESS && (op.result & 0xff) == 0x5a,
	      "probe reads a mapped byte", &op);
}

static void test_probe_unmapped(int fd)
{
	struct sva_dma_op op = { 0 };
	void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	munmap(p, 4096);
	op.addr_a = (uintptr_t)p;
	if (submit(fd, SVA_DMA_IOC_PROBE, &op)) {
		check(0, "probe: ioctl", NULL);
		return;
	}
	check(op.status == SVA_DMA_ST_TRANSLATION_FAULT,
	      "probe of an unmapped user address faults", &op);
}

/*
 * A request without PASID goes through the device's DMA API domain, where
 * this process's buffer is not mapped: it must not succeed, and the driver
 * must encode it as the device expects (no PASID field without the PASID
 * flag, else the device answers "bad descriptor").
 */
static void test_probe_no_pasid(int fd, uint8_t *buf)
{
	struct sva_dma_op op = { 0 };

	op.addr_a = (uintptr_t)buf;
	op.flags = SVA_DMA_F_NO_PASID;
	if (submit(fd, SVA_DMA_IOC_PROBE, &op)) {
		check(0, "probe without PASID: ioctl", NULL);
		return;
	}
	check(op.status != SVA_DMA_ST_SUCCESS &&
	      op.status != SVA_DMA_ST_BAD_DESCRIPTOR,
	      "probe without PASID does not reach the process's memory", &op);
}

static void test_probe_kernel(int fd, uint64_t kaddr)
{
	struct sva_dma_op op = { 0 };
	char what[96];

	op.addr_a = kaddr;
	snprintf(what, sizeof(what),
		 "user probe of kernel address %#" PRIx64 " faults", kaddr);
	if (submit(fd, SVA_DMA_IOC_PROBE, &op)) {
		check(0, what, NULL);
		return;
	}
	check(op.status == SVA_DMA_ST_TRANSLATION_FAULT, what, &op);
}

static void test_ats(int fd, uint8_t *buf)
{
	struct sva_dma_op op = { 0 };
	uint64_t first;

	op.addr_a = (uintptr_t)buf;
	if (submit(fd, SVA_DMA_IOC_ATS_TRANSLATE, &op)) {
		check(0, "ats_translate: ioctl", NULL);
		return;
	}
	check(op.status == SVA_DMA_ST_SUCCESS && (op.result & 1),
	      "ats_translate of a mapped page", &op);
	first = op.result;

	memset(&op, 0, sizeof(op));
	op.addr_a = (uintptr_t)buf;
	if (submit(fd, SVA_DMA_IOC_ATS_TRANSLATE, &op)) {
		check(0, "ats_translate: ioctl", NULL);
		return;
	}
	check(op.status == SVA_DMA_ST_SUCCESS &&
	      (op.cflags & SVA_DMA_CF_ATC_HIT) && op.result == first,
	      "repeated ats_translate hits the ATC", &op);
}

/*
 * -w FILE: stay bound after the kernel probes (so the IOMMU may keep the
 * kernel entries they cached) until FILE exists, telling the caller through
 * FILE.held; then probe the same kernel addresses again. They must still
 * fault, unless -s says the kernel frees its page tables without an IOMMU
 * flush (kpgtable_free=sync): then the IOMMU may walk the freed tables and
 * the outcome is only reported (the VMM's report counts the stale walks).
 */
#define HOLD_POLL_US 100000
#define HOLD_MAX_POLLS 9000 /* 15 minutes */

static int hold_until(const char *file)
{
	char held[256];
	int fd, n;

	if (snprintf(held, sizeof(held), "%s.held", file) >= (int)sizeof(held))
		return -1;
	fd = open(held, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	close(fd);
	for (n = 0; n < HOLD_MAX_POLLS; n++) {
		if (access(file, F_OK) == 0)
			return 0;
		usleep(HOLD_POLL_US);
	}
	return -1;
}

static void probe_after_hold(int fd, uint64_t kaddr, int report_only)
{
	struct sva_dma_op op = { 0 };
	char what[112];

	op.addr_a = kaddr;
	if (submit(fd, SVA_DMA_IOC_PROBE, &op)) {
		check(0, "after the free: probe ioctl", NULL);
		return;
	}
	if (report_only) {
		printf("stalewalk-guest: sva_dma_test after_free_probe status=%u\n",
		       op.status);
		return;
	}
	snprintf(what, sizeof(what),
		 "after the free, user probe of kernel address %#" PRIx64
		 " still faults", kaddr);
	check(op.status == SVA_DMA_ST_TRANSLATION_FAULT, what, &op);
}

int main(int argc, char **argv)
{
	const char *path = "/dev/sva_dma0", *hold = NULL;
	int report_only = 0;
	uint64_t kaddrs[MAX_KADDRS];
	struct sva_dma_info info;
	int nk = 0, opt, fd, i;
	uint8_t *a, *b;
	char *end;

	while ((opt = getopt(argc, argv, "d:k:w:s")) != -1) {
		switch (opt) {
		case 'd':
			path = optarg;
			break;
		case 'w':
			hold = optarg;
			break;
		case 's':
			report_only = 1;
			break;
		case 'k':
			if (nk == MAX_KADDRS) {
				fprintf(stderr, "at most %d -k\n", MAX_KADDRS);
				return 2;
			}
			errno = 0;
			kaddrs[nk] = strtoull(optarg, &end, 0);
			if (errno || *end) {
				fprintf(stderr, "bad address %s\n", optarg);
				return 2;
			}
			nk++;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-d DEVICE] [-k KERNEL_ADDR]... [-w FILE [-s]]\n",
				argv[0]);
			return 2;
		}
	}

	fd = open(path, O_RDWR);
	if (fd < 0) {
		printf("sva-dma-test: open %s: %s\n", path, strerror(errno));
		printf("stalewalk-guest: sva_dma_test pass=0 fail=1\n");
		return 1;
	}
	if (ioctl(fd, SVA_DMA_IOC_INFO, &info) == 0)
		printf("sva-dma-test: bound, pasid=%u max_transfer=%u\n",
		       info.pasid, info.max_transfer);

	a = map_buffer();
	b = map_buffer();
	test_fill(fd, a);
	test_copy(fd, a, b);
	test_compare(fd, a, b);
	test_probe_mapped(fd, a);
	test_probe_unmapped(fd);
	test_probe_no_pasid(fd, a);
	for (i = 0; i < nk; i++)
		test_probe_kernel(fd, kaddrs[i]);
	test_ats(fd, a);
	if (hold) {
		fflush(stdout);
		check(hold_until(hold) == 0, "held the bind until the caller's free", NULL);
		for (i = 0; i < nk; i++)
			probe_after_hold(fd, kaddrs[i], report_only);
	}

	if (ioctl(fd, SVA_DMA_IOC_INFO, &info) == 0)
		printf("stalewalk-guest: sva_dma_device ops_completed=%llu ops_failed=%llu page_requests=%llu atc_entries=%llu atc_invalidations=%llu\n",
		       (unsigned long long)info.ops_completed,
		       (unsigned long long)info.ops_failed,
		       (unsigned long long)info.page_requests,
		       (unsigned long long)info.atc_entries,
		       (unsigned long long)info.atc_invalidations);
	close(fd);
	printf("stalewalk-guest: sva_dma_test pass=%d fail=%d\n", passed,
	       failed);
	return failed ? 1 : 0;
}
