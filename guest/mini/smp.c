/* smp.c - INIT-SIPI-SIPI through the xAPIC and the AP side of start-up. */
#include "smp.h"
#include "console.h"
#include "cpu.h"
#include "io.h"
#include "layout.h"
#include "lib.h"

#define APIC_SVR 0xf0
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define ICR_PENDING (1u << 12)
#define ICR_INIT 0x00000500u
#define ICR_STARTUP 0x00000600u
#define ICR_ASSERT 0x00004000u
#define ICR_ALL_BUT_SELF 0x000c0000u

/* How long the BSP waits for the APs, in TSC cycles: a few seconds at any
 * plausible TSC rate, so a lost AP cannot hang the boot. */
#define AP_WAIT_CYCLES 8000000000ULL
/* Polls of the ICR delivery-status bit before giving up on an IPI. */
#define ICR_POLLS 100000

extern char ap_trampoline_start[], ap_trampoline_end[];

static volatile u32 cpus_online = 1;

static void apic_write(u32 reg, u32 v) { mmio_write32(LAPIC_BASE + reg, v); }
static u32 apic_read(u32 reg) { return mmio_read32(LAPIC_BASE + reg); }

static bool send_ipi(u32 icr)
{
    apic_write(APIC_ICR_HI, 0);
    apic_write(APIC_ICR_LO, icr);
    for (int i = 0; i < ICR_POLLS; i++)
        if (!(apic_read(APIC_ICR_LO) & ICR_PENDING))
            return true;
    return false;
}

u32 smp_expected_cpus(void)
{
    u32 a, b, c, d;
    cpuid(0, 0, &a, &b, &c, &d);
    if (a < 0xb)
        return 1;
    /* Walk the topology levels; the last valid level counts every logical
     * CPU in the package. Bounded: at most 8 levels. */
    u32 n = 1;
    for (u32 level = 0; level < 8; level++) {
        cpuid(0xb, level, &a, &b, &c, &d);
        if (((c >> 8) & 0xff) == 0)
            break;
        n = b & 0xffff;
    }
    return n ? n : 1;
}

u32 smp_start(u32 expected)
{
    if (expected <= 1)
        return 1;
    if (expected > MAX_CPUS)
        expected = MAX_CPUS;
    usize len = (usize)(ap_trampoline_end - ap_trampoline_start);
    memcpy((void *)AP_TRAMPOLINE, ap_trampoline_start, len);
    apic_write(APIC_SVR, 0x1ff); /* enable, spurious vector 0xff */
    bool ok = send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
    ok = ok && send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (AP_TRAMPOLINE >> 12));
    ok = ok && send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (AP_TRAMPOLINE >> 12));
    if (!ok)
        kprintf("stalewalk-guest: error=ipi_not_delivered\n");
    u64 deadline = rdtsc() + AP_WAIT_CYCLES;
    while (cpus_online < expected && rdtsc() < deadline)
        cpu_relax();
    return cpus_online;
}

void ap_main(u32 apic_id)
{
    (void)apic_id;
    idt_load();
    __atomic_fetch_add(&cpus_online, 1, __ATOMIC_SEQ_CST);
    halt_forever();
}
