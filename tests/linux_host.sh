#!/usr/bin/env bash
# Linux 6.12 (patched, guest/linux/) under stalewalk on a host with hardware
# virtualization: boots to the initramfs with the vIOMMU in scalable mode
# and an SVA DMA test device, once per kpgtable_free= mode, and checks:
#  - the DMAR unit is found and uses queued invalidation, /sys/class/iommu
#    has dmar0 and its ECAP says scalable mode (SMTS);
#  - sva_dma binds and sva-dma-test runs;
#  - the kernel page-table test frees its tables (debugfs counters);
#  - the VMM's report: sync shows freed_while_cached > 0 (hint port), and
#    deferred/eager show no reused stale walk and no freed_while_cached.
#
# Gated: it runs only where KVM uses hardware virtualization (kvm_intel or
# kvm_amd loaded) and the kernel build is cached (or STALEWALK_LINUX_DIR
# names a copy of it); otherwise it prints one SKIPPED line and exits 0. (This machine's KVM emulates guest kernel mode
# and cannot boot Linux: KVM-NOTES.md.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
skip() { echo "SKIPPED: linux-host: $*"; exit 0; }

if [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
    skip "needs a host with hardware virtualization (no kvm_intel or kvm_amd module here)"
fi
[ -r /dev/kvm ] || skip "/dev/kvm not available"
if [ -n "${STALEWALK_LINUX_DIR:-}" ]; then
    # A build copied from another machine (the hardware-virtualization host
    # need not have the kernel sources): vmlinux and initramfs.cpio.gz from
    # the cache directory guest/linux/build.sh --check names.
    vmlinux=$STALEWALK_LINUX_DIR/vmlinux
    initrd=$STALEWALK_LINUX_DIR/initramfs.cpio.gz
    [ -r "$vmlinux" ] && [ -r "$initrd" ] ||
        skip "STALEWALK_LINUX_DIR=$STALEWALK_LINUX_DIR lacks vmlinux or initramfs.cpio.gz"
elif paths=$(bash "$root/guest/linux/build.sh" --check 2>/dev/null); then
    vmlinux=$(echo "$paths" | sed -n 's/^vmlinux=//p')
    initrd=$(echo "$paths" | sed -n 's/^initramfs=//p')
else
    skip "no cached guest kernel build (run guest/linux/build.sh)"
fi
bin="$root/target/release/stalewalk"
[ -x "$bin" ] || (cd "$root" && cargo build --release --bin stalewalk)

# STALEWALK_LINUX_HOST_OUT=DIR keeps the serial logs and reports there.
if [ -n "${STALEWALK_LINUX_HOST_OUT:-}" ]; then
    out=$STALEWALK_LINUX_HOST_OUT
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
fail=0
check() { # check FILE PATTERN WHAT
    if ! grep -Eq "$2" "$1"; then
        echo "linux-host: FAIL: $3 (no /$2/ in $1)" >&2
        fail=1
    fi
}
for mode in sync deferred eager; do
    "$bin" run --timeout 600 --kernel "$vmlinux" --initrd "$initrd" --cpu-profile host \
        --memory 1G --cpus 2 --sva-dev --serial "file=$out/$mode.log" \
        --report-file "$out/$mode.json" \
        --cmdline "console=ttyS0 intel_iommu=on,sm_on kpgtable_free=$mode kpgtable_hint_port=0xf0 reboot=k" \
        2>"$out/$mode.err" || { echo "linux-host: $mode: stalewalk exited $?" >&2; fail=1; }
    log=$out/$mode.log
    check "$log" 'DMAR' "$mode: the DMAR unit was found"
    check "$log" '[Qq]ueued invalidation' "$mode: queued invalidation"
    check "$log" 'stalewalk-guest: iommu units=dmar0' "$mode: /sys/class/iommu/dmar0"
    check "$log" 'stalewalk-guest: sva_dma loaded=1 devices=1' "$mode: sva_dma bound the device"
    check "$log" 'stalewalk-guest: sva_dma_test pass=[1-9][0-9]* fail=0' "$mode: every sva-dma-test check passed"
    check "$log" 'stalewalk-guest: sva_dma_test exit=0' "$mode: sva-dma-test exited 0"
    if [ "$mode" != sync ]; then
        # After the free, kernel probes must still fault; under sync the
        # IOMMU may walk freed tables, which is what the report shows.
        check "$log" 'stalewalk-guest: sva_dma_test_after_free exit=0' "$mode: sva-dma-test after the free"
    fi
    check "$log" "stalewalk-guest: kpgtable mode=$mode" "$mode: kpgtable_test ran"
    check "$log" 'stalewalk-guest: done status=0' "$mode: the init script finished"
    ecap=$(sed -n 's/.*ecap=\(0x[0-9a-f]*\).*/\1/p' "$log" | head -n1)
    if [ -z "$ecap" ] || [ $(( (ecap >> 43) & 1 )) -ne 1 ]; then
        echo "linux-host: FAIL: $mode: ECAP.SMTS not set ($ecap)" >&2
        fail=1
    fi
    python3 - "$mode" "$out/$mode.json" <<'PY' || fail=1
import json, sys
mode, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
ok = True
if mode == "sync":
    ok = r["freed_while_cached"] > 0
else:
    ok = r["freed_while_cached"] == 0 and r["stale_walks"]["reused"] == 0 and r["kva_invalidations"] > 0
print(f"linux-host: {mode}: freed_while_cached={r['freed_while_cached']} "
      f"reused={r['stale_walks']['reused']} kva_invalidations={r['kva_invalidations']} "
      f"{'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
done
exit $fail
