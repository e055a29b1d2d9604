/* vmm_emulate.c - runs, at CPL0, each instruction of the set the VMM
 * emulates when KVM's instruction emulator cannot (docs/EMULATION.md):
 * int3 through a #BP handler, popcnt/lzcnt/tzcnt, BMI1, BMI2, movbe,
 * cmpxchg16b, fwait and the x87/SSE control instructions. Each result and
 * each flag the SDM defines is checked against a known answer; the
 * scenario prints how often it ran each instruction (ran_NAME=N, for the
 * VMM's per-mnemonic counts), the failures, and a verdict.
 *
 * Where guest kernel mode runs natively (hardware virtualization) the CPU
 * runs them and the same checks hold; the VMM then counts nothing. */
#include "scenario.h"
#include "../console.h"
#include "../exit.h"
#include "../io.h"
#include "../lib.h"
#include "../platform.h"
#include "../trap.h"

#define CF 0x001ULL
#define PF 0x004ULL
#define AF 0x010ULL
#define ZF 0x040ULL
#define SF 0x080ULL
#define OF 0x800ULL
#define ARITH (CF | PF | AF | ZF | SF | OF)

enum {
    I_INT3, I_POPCNT, I_LZCNT, I_TZCNT, I_ANDN, I_BEXTR, I_BLSI, I_BLSMSK, I_BLSR,
    I_BZHI, I_MULX, I_PDEP, I_PEXT, I_RORX, I_SARX, I_SHLX, I_SHRX, I_MOVBE,
    I_CMPXCHG16B, I_FWAIT, I_FNINIT, I_FNSTSW, I_FNSTCW, I_FLDCW, I_STMXCSR, I_LDMXCSR,
    I_COUNT
};

static const char *const names[I_COUNT] = {
    "int3", "popcnt", "lzcnt", "tzcnt", "andn", "bextr", "blsi", "blsmsk", "blsr",
    "bzhi", "mulx", "pdep", "pext", "rorx", "sarx", "shlx", "shrx", "movbe",
    "cmpxchg16b", "fwait", "fninit", "fnstsw", "fnstcw", "fldcw", "stmxcsr", "ldmxcsr",
};

static unsigned ran[I_COUNT];
static int failures;

static void check(const char *what, u64 got, u64 want)
{
    if (got != want) {
        kprintf("stalewalk-guest: vmm_emulate_fail=%s got=0x%llx want=0x%llx\n", what, got, want);
        failures++;
    }
}

/* `insn` with %[d] the destination register, %[s] the source (register
 * or memory, per `scon`), %[c] a second source register; flags set to
 * `fin` before and read into `fl` after. */
#define RUN(insn, dst, src, scon, src2, fin, fl)                                        \
    __asm__ volatile("push %[i]\n\tpopfq\n\t" insn "\n\tpushfq\n\tpop %[f]"              \
                     : [d] "=&r"(dst), [f] "=&r"(fl)                                     \
                     : [s] scon(src), [c] "r"(src2), [i] "r"((u64)(fin))                      \
                     : "cc", "memory")

/* Checks result and the flags in `mask`. */
static void expect(int id, const char *what, u64 got, u64 want, u64 fl, u64 mask, u64 want_fl)
{
    ran[id]++;
    check(what, got, want);
    char buf[48];
    usize n = strlen(what);
    if (n > sizeof(buf) - 7)
        n = sizeof(buf) - 7;
    memcpy(buf, what, n);
    memcpy(buf + n, ".flags", 7);
    check(buf, fl & mask, want_fl);
}

static void bit_counts(void)
{
    u64 d, fl, unused = 0;
    u64 v = 0xf0f0000000000001ULL;
    RUN("popcnt %[s], %[d]", d, v, "r", unused, ARITH, fl);
    expect(I_POPCNT, "popcnt", d, 9, fl, ARITH, 0);
    u64 zero = 0;
    RUN("popcnt %[s], %[d]", d, zero, "m", unused, 0, fl);
    expect(I_POPCNT, "popcnt.zero", d, 0, fl, ARITH, ZF);
    u32 d32, w = 0xffffffffU;
    RUN("popcnt %[s], %[d]", d32, w, "m", unused, 0, fl);
    expect(I_POPCNT, "popcnt.m32", d32, 32, fl, ARITH, 0);

    /* Without LZCNT (CPUID 0x80000001 ECX[5]) and BMI1 (CPUID 7 EBX[3])
     * the CPU runs f3 0f bd / f3 0f bc as bsr / bsf, and so does KVM's
     * emulator, without an exit: check what the announced CPU would do,
     * for inputs where bsr/bsf are defined. */
    u32 a, b, c, dd;
    cpuid(0x80000001, 0, &a, &b, &c, &dd);
    int has_lzcnt = (c >> 5) & 1;
    cpuid(7, 0, &a, &b, &c, &dd);
    int has_bmi1 = (b >> 3) & 1;
    kprintf("stalewalk-guest: vmm_emulate_lzcnt_announced=%d vmm_emulate_bmi1_announced=%d\n", has_lzcnt,
            has_bmi1);
    u64 one = 1;
    RUN("lzcnt %[s], %[d]", d, one, "r", unused, ARITH, fl);
    if (has_lzcnt) {
        expect(I_LZCNT, "lzcnt", d, 63, fl, CF | ZF, 0);
        RUN("lzcnt %[s], %[d]", d, zero, "r", unused, 0, fl);
        expect(I_LZCNT, "lzcnt.zero", d, 64, fl, CF | ZF, CF);
        u32 top = 0x80000000U;
        RUN("lzcnt %[s], %[d]", d32, top, "r", unused, 0, fl);
        expect(I_LZCNT, "lzcnt.r32", d32, 0, fl, CF | ZF, ZF);
    } else {
        check("lzcnt.as_bsr", d, 0);
    }

    u64 b7 = 0x80;
    RUN("tzcnt %[s], %[d]", d, b7, "m", unused, ARITH, fl);
    if (has_bmi1) {
        expect(I_TZCNT, "tzcnt", d, 7, fl, CF | ZF, 0);
    } else {
        check("tzcnt.as_bsf", d, 7);
    }
}

static void bmi1(void)
{
    u64 d, fl;
    /* andn: ~c & s (AT&T: andn rm, vvvv, dst). */
    u64 s = 0xfff0, c = 0xff00;
    RUN("andn %[s], %[c], %[d]", d, s, "r", c, ARITH, fl);
    expect(I_ANDN, "andn", d, 0xf0, fl, CF | OF | ZF | SF, 0);
    u64 all = ~0ULL;
    RUN("andn %[s], %[c], %[d]", d, s, "m", all, 0, fl);
    expect(I_ANDN, "andn.zero", d, 0, fl, CF | OF | ZF | SF, ZF);

    /* bextr: 8 bits from bit 4 (AT&T: bextr ctl, src, dst). */
    u64 src = 0x12345678, ctl = 0x0804;
    RUN("bextr %[c], %[s], %[d]", d, src, "r", ctl, ARITH, fl);
    expect(I_BEXTR, "bextr", d, 0x67, fl, CF | OF | ZF, 0);

    u64 x = 0x28;
    RUN("blsi %[s], %[d]", d, x, "r", x, 0, fl);
    expect(I_BLSI, "blsi", d, 0x8, fl, CF | OF | ZF | SF, CF);
    RUN("blsmsk %[s], %[d]", d, x, "m", x, ARITH, fl);
    expect(I_BLSMSK, "blsmsk", d, 0xf, fl, CF | OF | ZF | SF, 0);
    RUN("blsr %[s], %[d]", d, x, "r", x, ARITH, fl);
    expect(I_BLSR, "blsr", d, 0x20, fl, CF | OF | ZF | SF, 0);
    u64 zero = 0;
    RUN("blsr %[s], %[d]", d, zero, "r", x, 0, fl);
    expect(I_BLSR, "blsr.zero", d, 0, fl, CF | OF | ZF | SF, CF | ZF);
}

static void bmi2(void)
{
    u64 d, fl;
    u64 s = 0xffff, idx = 8;
    RUN("bzhi %[c], %[s], %[d]", d, s, "r", idx, ARITH, fl);
    expect(I_BZHI, "bzhi", d, 0xff, fl, CF | OF | ZF | SF, 0);
    u64 big = 70;
    RUN("bzhi %[c], %[s], %[d]", d, s, "m", big, 0, fl);
    expect(I_BZHI, "bzhi.over", d, 0xffff, fl, CF | OF | ZF | SF, CF);

    u64 src = 0xb, mask = 0xf0f0;
    RUN("pdep %[s], %[c], %[d]", d, mask, "r", src, ARITH, fl);
    expect(I_PDEP, "pdep", d, 0xb0, fl, ARITH, ARITH);
    u64 packed = 0xb0;
    RUN("pext %[s], %[c], %[d]", d, mask, "m", packed, 0, fl);
    expect(I_PEXT, "pext", d, 0xb, fl, ARITH, 0);

    u64 one = 1;
    RUN("rorx $4, %[s], %[d]", d, one, "r", one, ARITH, fl);
    expect(I_RORX, "rorx", d, 0x1000000000000000ULL, fl, ARITH, ARITH);

    u64 neg = 0x8000000000000000ULL, n63 = 63, n40 = 40, n60 = 60;
    RUN("sarx %[c], %[s], %[d]", d, neg, "r", n63, 0, fl);
    expect(I_SARX, "sarx", d, ~0ULL, fl, ARITH, 0);
    RUN("shlx %[c], %[s], %[d]", d, one, "m", n40, 0, fl);
    expect(I_SHLX, "shlx", d, 1ULL << 40, fl, ARITH, 0);
    RUN("shrx %[c], %[s], %[d]", d, neg, "r", n60, ARITH, fl);
    expect(I_SHRX, "shrx", d, 8, fl, ARITH, ARITH);

    /* mulx: rdx * src -> hi:lo (AT&T: mulx rm, lo, hi). */
    u64 hi, lo, three = 3;
    __asm__ volatile("push %[i]\n\tpopfq\n\tmulx %[s], %[lo], %[hi]\n\tpushfq\n\tpop %[f]"
                     : [hi] "=&r"(hi), [lo] "=&r"(lo), [f] "=&r"(fl)
                     : [s] "m"(three), "d"(~0ULL), [i] "r"(ARITH)
                     : "cc", "memory");
    expect(I_MULX, "mulx.hi", hi, 2, fl, ARITH, ARITH);
    check("mulx.lo", lo, 0xfffffffffffffffdULL);
}

static int ud_hits;

static int ud_hook(struct trap_frame *f)
{
    if (f->vector != 6)
        return 0;
    ud_hits++;
    /* Resume after the movbe: the test put that address in %r11. */
    f->rip = f->r11;
    return 1;
}

static void byte_order_and_atomics(void)
{
    u64 d, fl;
    /* KVM's emulator runs movbe itself, or raises #UD when the CPUID the
     * VMM set lacks MOVBE (as a CPU without it would); either way no exit
     * reaches the VMM here. A #UD is recorded, not a failure. */
    u64 m = 0x0102030405060708ULL;
    d = 0;
    trap_kernel_hook = ud_hook;
    __asm__ volatile("lea 1f(%%rip), %%r11\n\tmovbe %[s], %[d]\n1:"
                     : [d] "+r"(d)
                     : [s] "m"(m)
                     : "r11", "memory");
    trap_kernel_hook = NULL;
    if (ud_hits) {
        kprintf("stalewalk-guest: vmm_emulate_movbe=ud\n");
    } else {
        ran[I_MOVBE]++;
        check("movbe.load", d, 0x0807060504030201ULL);
        u32 out = 0, v = 0x11223344U;
        __asm__ volatile("movbe %[v], %[m]" : [m] "=m"(out) : [v] "r"(v) : "memory");
        ran[I_MOVBE]++;
        check("movbe.store", out, 0x44332211U);
    }

    static u64 cell[2] __attribute__((aligned(16))) = {10, 20};
    u64 lo = 10, hi = 20;
    __asm__ volatile("push %[i]\n\tpopfq\n\tlock cmpxchg16b %[m]\n\tpushfq\n\tpop %[f]"
                     : [m] "+m"(*(volatile u64(*)[2])cell), "+a"(lo), "+d"(hi), [f] "=&r"(fl)
                     : "b"(30ULL), "c"(40ULL), [i] "r"(0ULL)
                     : "cc", "memory");
    expect(I_CMPXCHG16B, "cmpxchg16b.swap", cell[0] | (cell[1] << 32), 30 | (40ULL << 32), fl, ZF,
           ZF);
    lo = 1;
    hi = 2;
    __asm__ volatile("push %[i]\n\tpopfq\n\tlock cmpxchg16b %[m]\n\tpushfq\n\tpop %[f]"
                     : [m] "+m"(*(volatile u64(*)[2])cell), "+a"(lo), "+d"(hi), [f] "=&r"(fl)
                     : "b"(50ULL), "c"(60ULL), [i] "r"(ZF)
                     : "cc", "memory");
    expect(I_CMPXCHG16B, "cmpxchg16b.miss", lo | (hi << 32), 30 | (40ULL << 32), fl, ZF, 0);
    check("cmpxchg16b.kept", cell[0] | (cell[1] << 32), 30 | (40ULL << 32));
}

static void fpu_control(void)
{
    /* ldmxcsr/stmxcsr need CR4.OSFXSR, which this guest does not set at
     * boot. */
    u64 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | (1ULL << 9)));

    __asm__ volatile("fninit");
    ran[I_FNINIT]++;
    __asm__ volatile("fwait");
    ran[I_FWAIT]++;
    u16 cw = 0, sw = 0xffff;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    ran[I_FNSTCW]++;
    check("fnstcw.after_fninit", cw, 0x037f);
    __asm__ volatile("fnstsw %0" : "=a"(sw));
    ran[I_FNSTSW]++;
    check("fnstsw.after_fninit", sw, 0);
    u16 want = 0x027f;
    __asm__ volatile("fldcw %0" : : "m"(want));
    ran[I_FLDCW]++;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    ran[I_FNSTCW]++;
    check("fldcw", cw, 0x027f);

    u32 mx = 0, set = 0x1fa0;
    __asm__ volatile("ldmxcsr %0" : : "m"(set));
    ran[I_LDMXCSR]++;
    __asm__ volatile("stmxcsr %0" : "=m"(mx));
    ran[I_STMXCSR]++;
    check("ldmxcsr", mx, 0x1fa0);
    set = 0x1f80;
    __asm__ volatile("ldmxcsr %0" : : "m"(set));
    ran[I_LDMXCSR]++;
}

/* The faults the CPU raises for these instructions (the VMM injects them
 * where it runs the instruction): each test puts the address to resume at
 * in %r11 and the hook records the vector and error code. */
static u64 fault_vector, fault_error, fault_cr2;
static unsigned faults_seen;

static int fault_hook(struct trap_frame *f)
{
    if (f->vector != 7 && f->vector != 13 && f->vector != 14)
        return 0;
    faults_seen++;
    fault_vector = f->vector;
    fault_error = f->error;
    if (f->vector == 14)
        __asm__ volatile("mov %%cr2, %0" : "=r"(fault_cr2));
    f->rip = f->r11;
    return 1;
}

static void expect_fault_code(const char *what, u64 vector, u64 error)
{
    check(what, faults_seen, 1);
    check(what, fault_vector, vector);
    check(what, fault_error, error);
    faults_seen = 0;
    fault_vector = fault_error = ~0ULL;
}

static void expect_fault(const char *what, u64 vector)
{
    expect_fault_code(what, vector, 0);
}

static void faults(void)
{
    trap_kernel_hook = fault_hook;
    /* cmpxchg16b on an operand that is not 16-byte aligned: #GP(0). */
    static u64 cells[4] __attribute__((aligned(16)));
    volatile u64(*odd)[2] = (volatile u64(*)[2])&cells[1];
    __asm__ volatile("lea 1f(%%rip), %%r11\n\tlock cmpxchg16b %0\n1:"
                     : "+m"(*odd)
                     : "a"(0), "d"(0), "b"(1), "c"(1)
                     : "r11", "cc", "memory");
    ran[I_CMPXCHG16B]++;
    expect_fault("cmpxchg16b.misaligned_gp", 13);

    /* ldmxcsr with a reserved bit: #GP(0). */
    u32 bad = 0x10000 | 0x1f80;
    __asm__ volatile("lea 1f(%%rip), %%r11\n\tldmxcsr %0\n1:" : : "m"(bad) : "r11", "memory");
    ran[I_LDMXCSR]++;
    expect_fault("ldmxcsr.reserved_gp", 13);

    /* popcnt from a non-canonical address: #GP(0). */
    u64 d, bad_va = 0x0000800000000000ULL;
    __asm__ volatile("lea 1f(%%rip), %%r11\n\tpopcnt (%1), %0\n1:"
                     : "=r"(d)
                     : "r"(bad_va)
                     : "r11", "cc", "memory");
    (void)d;
    ran[I_POPCNT]++;
    expect_fault("popcnt.noncanonical_gp", 13);

    /* popcnt from a canonical address no page table maps (the mini guest
     * maps nothing at 0x7000_0000_0000): #PF, error 0 (read, not
     * present), CR2 the address. cmpxchg16b there: error 2 (a locked
     * read-modify-write faults as a write). */
    u64 unmapped = 0x0000700000000000ULL;
    fault_cr2 = 0;
    __asm__ volatile("lea 1f(%%rip), %%r11\n\tpopcnt (%1), %0\n1:"
                     : "=r"(d)
                     : "r"(unmapped)
                     : "r11", "cc", "memory");
    ran[I_POPCNT]++;
    check("popcnt.pf_cr2", fault_cr2, unmapped);
    expect_fault("popcnt.unmapped_pf", 14);
    fault_cr2 = 0;
    __asm__ volatile("lea 1f(%%rip), %%r11\n\tlock cmpxchg16b (%0)\n1:"
                     :
                     : "r"(unmapped), "a"(0), "d"(0), "b"(1), "c"(1)
                     : "r11", "cc", "memory");
    ran[I_CMPXCHG16B]++;
    check("cmpxchg16b.pf_cr2", fault_cr2, unmapped);
    expect_fault_code("cmpxchg16b.unmapped_pf", 14, 2);

    /* fwait with CR0.TS and CR0.MP: #NM. */
    u64 cr0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | 0xa)); /* MP | TS */
    __asm__ volatile("lea 1f(%%rip), %%r11\n\tfwait\n1:" : : : "r11", "memory");
    ran[I_FWAIT]++;
    __asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
    expect_fault("fwait.ts_nm", 7);
    trap_kernel_hook = NULL;
}

static u64 bp_rip[2];
static unsigned bp_hits;

static int bp_hook(struct trap_frame *f)
{
    if (f->vector != 3)
        return 0;
    if (bp_hits < 2)
        bp_rip[bp_hits] = f->rip;
    bp_hits++;
    return 1;
}

static void breakpoint(void)
{
    trap_kernel_hook = bp_hook;
    u64 first, second;
    __asm__ volatile("int3\n1:\n\tlea 1b(%%rip), %0" : "=r"(first) : : "memory");
    ran[I_INT3]++;
    __asm__ volatile("int3\n1:\n\tlea 1b(%%rip), %0" : "=r"(second) : : "memory");
    ran[I_INT3]++;
    trap_kernel_hook = NULL;
    check("int3.hits", bp_hits, 2);
    /* #BP is a trap: the handler sees RIP just past each int3. */
    check("int3.rip0", bp_rip[0], first);
    check("int3.rip1", bp_rip[1], second);
}

static int bench_bp_hook(struct trap_frame *f)
{
    return f->vector == 3;
}

/* vmm_emulate_bench=N: the cost of one exit, in TSC cycles per
 * iteration, for N iterations each of: an `add` KVM's emulator runs
 * without an exit (the floor), an `out` to an unclaimed port (a plain
 * port-I/O exit to the VMM), `popcnt` (an exit the VMM emulates) and
 * `int3` (an emulated exit plus #BP delivery and the handler's iretq). */
static void bench(u64 n)
{
    u64 t0 = rdtsc();
    u64 acc = 0;
    for (u64 i = 0; i < n; i++)
        __asm__ volatile("add %1, %0" : "+r"(acc) : "r"(i));
    u64 t1 = rdtsc();
    for (u64 i = 0; i < n; i++)
        __asm__ volatile("outb %%al, $0x80" : : "a"(0));
    u64 t2 = rdtsc();
    for (u64 i = 0; i < n; i++)
        __asm__ volatile("popcnt %1, %0" : "=r"(acc) : "r"(i) : "cc");
    u64 t3 = rdtsc();
    trap_kernel_hook = bench_bp_hook;
    for (u64 i = 0; i < n; i++)
        __asm__ volatile("int3" : : : "memory");
    trap_kernel_hook = NULL;
    u64 t4 = rdtsc();
    kprintf("stalewalk-guest: vmm_emulate_bench=%llu add_cycles=%llu pio_exit_cycles=%llu "
            "popcnt_exit_cycles=%llu int3_cycles=%llu\n",
            n, (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n, (t4 - t3) / n);
}

int scenario_vmm_emulate(const struct boot_info *bi)
{
    (void)bi;
    u64 n = cmdline_u64("vmm_emulate_bench", 0);
    if (n) {
        bench(n);
        return EXIT_OK;
    }
    breakpoint();
    bit_counts();
    bmi1();
    bmi2();
    byte_order_and_atomics();
    fpu_control();
    faults();
    for (int i = 0; i < I_COUNT; i++)
        kprintf("stalewalk-guest: ran_%s=%u\n", names[i], ran[i]);
    kprintf("stalewalk-guest: scenario=vmm-emulate failures=%d verdict=%s\n", failures,
            failures ? "fail" : "pass");
    return failures ? EXIT_FAIL : EXIT_OK;
}
