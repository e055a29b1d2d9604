#!/usr/bin/env bash
# QEMU 10's VT-d model as an independent check of stalewalk's: the same
# guest runs under QEMU (intel-iommu,x-scalable-mode=on,x-flts=on: scalable
# mode, first-stage translation, TCG) and under stalewalk, and what its
# IOMMU driver sent is compared descriptor by descriptor.
#
#   mini   the mini guest's vtd-blk scenario (the PVH ELF stalewalk
#          embeds; QEMU boots it with -kernel and isa-debug-exit at 0xf4):
#          a virtio-blk round trip through first-stage DMA tables, then an
#          unmap, and a read that must fault.
#   linux  the patched Linux 6.12 (build.sh --config boot: stalewalk boots
#          its vmlinux, QEMU the bzImage of the same build) with a
#          virtio-blk disk on the DMA API path (iommu.strict=1: every unmap
#          flushes at once) and the initramfs' disk workload
#          (stalewalk.blk=256: 64 writes and 64 reads of 4 KiB, O_DIRECT),
#          then the small kpgtable test of tests/linux_kvm.sh.
#
# QEMU's trace (-trace 'vtd_inv_*' -trace vtd_dmar_fault -trace
# vtd_frr_new) is turned into a stalewalk trace by `stalewalk trace
# import-qemu`, which decodes each descriptor with the model's own decoder.
# Checked, for each guest:
#
#   - the guest passed under both (Linux: the disk data read back matched,
#     init ended with status 0);
#   - the two descriptor sequences are identical, field by field and in
#     order (addresses included: the virtio-blk device sits at 00:02.0 with
#     128-entry queues under both, so the kernel's IOVA allocations match),
#     except for the two differences docs/QEMU-COMPARE.md explains: a slot
#     QEMU 10 fetched without a trace event must be a PASID-cache
#     invalidation in stalewalk's sequence, and QEMU's IOTLB invalidations
#     carry drain-read/drain-write (QEMU advertises CAP.DRD/DWD); and an
#     invalidation wait's status address is compared within its page
#     (Linux's status array is where each machine's memory map put it);
#   - mini: both fault on the first unmapped page of the read buffer with
#     the same requester and reason, and stalewalk's record has PP clear;
#   - linux: both devices completed the same number of requests, and every
#     request was flushed by four page-selective PASID-based IOTLB
#     invalidations (descriptor table, header, data page, status).
#
# It prints `stalewalk trace diff` of each pair (the table in
# docs/QEMU-COMPARE.md). Prints one "SKIPPED: vtd-compare: <why>" line and
# exits 0 where QEMU with x-flts (QEMU 10), /dev/kvm, python3 or the cached
# boot kernel is missing; with STALEWALK_REQUIRE_ALL=1 (CI) that is a
# failure instead. Any failed check exits 1.
#
# Environment: VTD_COMPARE_OUT keeps the logs and traces in that directory;
# STALEWALK_CACHE (see guest/linux/build.sh); VTD_COMPARE_TIMEOUT seconds
# per Linux boot (default 600).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=vtd-compare
timeout_s=${VTD_COMPARE_TIMEOUT:-600}

# skip and fail (tests/lib/common.sh).
test_name=$name
source "$root/tests/lib/common.sh"

command -v qemu-system-x86_64 >/dev/null ||
    skip "qemu-system-x86_64 is not installed (QEMU 10: apt-get install -t bookworm-backports qemu-system-x86)"
qemu-system-x86_64 -device intel-iommu,help 2>/dev/null | grep -q 'x-flts' ||
    skip "this QEMU's intel-iommu has no x-flts (first-stage translation needs QEMU 10: apt-get install -t bookworm-backports qemu-system-x86)"
{ [ -r /dev/kvm ] && [ -w /dev/kvm ]; } || skip "/dev/kvm not available"
command -v python3 >/dev/null || skip "python3 is missing"
paths=$(bash "$root/guest/linux/build.sh" --config boot --check 2>/dev/null) ||
    skip "no cached boot kernel build for the current guest/linux inputs (run guest/linux/build.sh --config boot)"
kdir=$(sed -n 's/^kernel_dir=//p' <<<"$paths")
vmlinux=$kdir/vmlinux bzimage=$kdir/bzImage initrd=$kdir/initramfs.cpio
for f in "$vmlinux" "$bzimage" "$initrd"; do
    [ -f "$f" ] || {
        echo "$name: FAIL: the cached boot build lacks $f"
        exit 1
    }
done

target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release --bin stalewalk >&2)
bin=$target/release/stalewalk
# The mini guest stalewalk embeds (vmm/build.rs builds it).
mini=$(ls -t "$target"/release/build/stalewalk-vmm-*/out/mini.elf 2>/dev/null | head -n1 || true)
[ -n "$mini" ] || {
    echo "$name: FAIL: no mini.elf under $target/release/build"
    exit 1
}

output_dir "${VTD_COMPARE_OUT:-}"

# The same virtio-blk placement and queue size under both (stalewalk's
# device: 00:02.0, 128 entries), so the guest's allocations line up.
qemu_common=(-M q35 -accel tcg -nodefaults -no-user-config -display none -monitor none
    -no-reboot -device intel-iommu,intremap=off,x-scalable-mode=on,x-flts=on
    -device virtio-blk-pci,drive=d0,addr=2.0,disable-legacy=on,iommu_platform=on,queue-size=128
    -trace 'vtd_inv_*' -trace vtd_dmar_fault -trace vtd_frr_new -trace virtio_blk_req_complete)

disk() {
    rm -f "$1"
    truncate -s 8M "$1"
}

# compare GUEST: the field-by-field check of the two descriptor sequences,
# and the trace diff table.
compare() {
    local guest=$1
    "$bin" trace import-qemu "$out/$guest-qemu.log" -o "$out/$guest-qemu.trace" >"$out/$guest-import.txt" ||
        {
            fail "$guest: stalewalk trace import-qemu failed: $(cat "$out/$guest-import.txt")"
            return
        }
    echo "$name: $guest: $(head -n1 "$out/$guest-import.txt")"
    echo "$name: $guest: descriptor counts, QEMU (A) against stalewalk (B):"
    "$bin" trace diff "$out/$guest-qemu.trace" "$out/$guest-stalewalk.trace" |
        grep -E '^(counter|invalidations\.|faults)' | sed 's/^/  /'
    python3 - "$out/$guest-qemu.trace" "$out/$guest-stalewalk.trace" <<'PY' || fail "$guest: the descriptor sequences differ (see above)"
import json, sys

UNTRACED = "qemu: slot "


def sequence(path):
    seq = []
    for line in open(path):
        r = json.loads(line)
        if r.get("kind") == "inv" and r["data"].get("event") == "invalidation":
            d = dict(r["data"]["descriptor"])
            if d["type"] == "iotlb":
                # QEMU sets CAP.DRD/DWD, stalewalk does not: Linux asks
                # for draining only where the unit offers it.
                d.pop("dr"), d.pop("dw")
            elif d["type"] == "wait":
                # A guest physical address: where the kernel's status
                # array landed depends on the machine's memory map. Its
                # offset in the page names the queue slot's status word.
                d["status_addr"] &= 0xFFF
            seq.append(d)
        elif r.get("kind") == "serial" and r.get("text", "").startswith(UNTRACED):
            seq.append(None)
    return seq


qemu, sw = sequence(sys.argv[1]), sequence(sys.argv[2])
untraced = 0
for i, (q, s) in enumerate(zip(qemu, sw)):
    if q is None:
        untraced += 1
        if s["type"] != "pasid_cache":
            sys.exit(f"descriptor {i}: QEMU traced nothing, stalewalk saw {s} (only a PASID-cache descriptor goes untraced in QEMU 10)")
    elif q != s:
        sys.exit(f"descriptor {i} differs:\n  QEMU      {q}\n  stalewalk {s}")
if len(qemu) != len(sw):
    sys.exit(f"QEMU processed {len(qemu)} descriptors, stalewalk {len(sw)}")
print(f"vtd-compare: identical sequences of {len(sw)} descriptors"
      f" ({untraced} PASID-cache invalidations QEMU 10 does not trace)")
PY
}

# ---------------------------------------------------------------- mini --
disk "$out/mini-qemu.img"
disk "$out/mini-stalewalk.img"
set +e
# -icount shift=8: guest time runs with instructions (256 ns each), so the
# PIT's ticks land inside the guest's interrupt windows on every run, as
# they did on a loaded machine: an unmasked legacy interrupt fails the run
# every time, not only under load.
timeout 120 qemu-system-x86_64 "${qemu_common[@]}" -icount shift=8 -m 256M \
    -serial "file:$out/mini-qemu.serial" \
    -device isa-debug-exit,iobase=0xf4,iosize=4 \
    -drive "file=$out/mini-qemu.img,if=none,id=d0,format=raw" \
    -kernel "$mini" -append "scenario=vtd-blk" -D "$out/mini-qemu.log" </dev/null \
    >"$out/mini-qemu.out" 2>&1
"$bin" run --scenario vtd-blk --disk "$out/mini-stalewalk.img" --serial "file=$out/mini-stalewalk.serial" \
    --trace "$out/mini-stalewalk.trace" --trace-events inv,fault --report json --timeout 120 \
    >"$out/mini-stalewalk.json" 2>"$out/mini-stalewalk.err"
sw_rc=$?
set -e
for vmm in qemu stalewalk; do
    grep -a -q 'driver_descriptors=.* result=pass' "$out/mini-$vmm.serial" ||
        fail "mini: vtd-blk did not pass under $vmm: $(tail -n 4 "$out/mini-$vmm.serial" | tr '\n' ' ')"
done
[ "$sw_rc" -eq 0 ] || fail "mini: stalewalk exited $sw_rc ($(tail -n 3 "$out/mini-stalewalk.err"))"
grep -a -q 'fault_pasid_present=0' "$out/mini-stalewalk.serial" ||
    fail "mini: stalewalk's fault record for a request without PASID has PP set"
compare mini
# The faulting read: the same first fault (requester, page, reason).
first_fault() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "fault":
        d = r["data"]
        print("rid=%#x addr=%#x reason=%#x" % (d["rid"], d["addr"], d["reason"]))
        break
' "$1"
}
qf=$(first_fault "$out/mini-qemu.trace")
sf=$(first_fault "$out/mini-stalewalk.trace")
echo "$name: mini: first fault: QEMU $qf, stalewalk $sf"
[ -n "$sf" ] && [ "$qf" = "$sf" ] || fail "mini: the first faults differ (QEMU '$qf', stalewalk '$sf')"

# --------------------------------------------------------------- linux --
cmdline=$(grep -v '^#' "$root/guest/linux/config.boot.cmdline" | tr '\n' ' ' |
    sed 's/kpgtable_hint_port=[^ ]*//')
cmdline+=" iommu.strict=1 kpgtable_free=deferred stalewalk.blk=256"
cmdline+=" stalewalk.pmds=16 stalewalk.bursts=4 stalewalk.pud=0"
disk "$out/linux-qemu.img"
disk "$out/linux-stalewalk.img"
set +e
start=$EPOCHREALTIME
timeout "$timeout_s" qemu-system-x86_64 "${qemu_common[@]}" -cpu max -m 128M \
    -serial "file:$out/linux-qemu.serial" \
    -drive "file=$out/linux-qemu.img,if=none,id=d0,format=raw" \
    -kernel "$bzimage" -initrd "$initrd" -append "$cmdline" -D "$out/linux-qemu.log" </dev/null \
    >"$out/linux-qemu.out" 2>&1
q_rc=$?
mid=$EPOCHREALTIME
"$bin" run --kernel "$vmlinux" --initrd "$initrd" --memory 128M --disk "$out/linux-stalewalk.img" \
    --cmdline "$cmdline" --serial "file=$out/linux-stalewalk.serial" \
    --trace "$out/linux-stalewalk.trace" --trace-events inv,fault \
    --report-file "$out/linux-stalewalk.json" --timeout "$timeout_s" >/dev/null 2>"$out/linux-stalewalk.err"
s_rc=$?
end=$EPOCHREALTIME
set -e
printf '%s: linux: QEMU TCG %.1f s (exit %s), stalewalk %.1f s (exit %s)\n' "$name" \
    "$(bc <<<"$mid - $start")" "$q_rc" "$(bc <<<"$end - $mid")" "$s_rc"
[ "$s_rc" -eq 0 ] || fail "linux: stalewalk exited $s_rc ($(tail -n 3 "$out/linux-stalewalk.err"))"
for vmm in qemu stalewalk; do
    log=$out/linux-$vmm.serial
    grep -a '^stalewalk-guest: blk ' "$log" | sed "s/^/$name: linux: $vmm: /" || true
    grep -a -q '^stalewalk-guest: blk kib=256 match=1 .*status=0' "$log" ||
        fail "linux: the disk workload failed under $vmm: $(grep -a 'stalewalk-guest: blk' "$log" || tail -n 5 "$log")"
    grep -a -q '^stalewalk-guest: done status=0' "$log" ||
        fail "linux: init did not end with status 0 under $vmm: $(tail -n 5 "$log" | tr '\n' ' ')"
    # QEMU must have run first-stage translation: ECAP.FLTS (bit 47).
    ecap=$(sed -n 's/^stalewalk-guest: iommu .*ecap=\([0-9a-f]*\).*/\1/p' "$log" | head -n1)
    [ -n "$ecap" ] && (((0x$ecap >> 47) & 1)) ||
        fail "linux: $vmm's unit does not offer first-stage translation (ecap=${ecap:-none})"
done
compare linux
q_reqs=$(grep -c '^virtio_blk_req_complete' "$out/linux-qemu.log" || true)
read -r s_reqs s_piotlb < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
reqs = sum(d["device_counters"]["requests_ok"] for d in r["virtio_devices"] if d["kind"] == "block")
print(reqs, r["invalidations"]["piotlb"])
' "$out/linux-stalewalk.json")
echo "$name: linux: virtio-blk requests: QEMU $q_reqs, stalewalk $s_reqs; stalewalk PASID-based IOTLB invalidations $s_piotlb"
[ "$q_reqs" = "$s_reqs" ] || fail "linux: QEMU's device completed $q_reqs requests, stalewalk's $s_reqs"
[ "$s_piotlb" -eq $((4 * s_reqs)) ] ||
    fail "linux: $s_piotlb PASID-based IOTLB invalidations for $s_reqs requests (want 4 per request)"

if [ "$failures" -gt 0 ]; then
    echo "$name: $failures check(s) failed (logs: ${VTD_COMPARE_OUT:-set VTD_COMPARE_OUT to keep them})"
    exit 1
fi
echo "$name: ok"
