#!/usr/bin/env bash
# Boots the patched Linux 6.12 guest kernel (guest/linux/) under QEMU with
# TCG (no KVM) and a scalable-mode intel-iommu, once per kpgtable_free=
# mode (the sync boot through the PVH entry of vmlinux, the others from
# the bzImage), has the initramfs free 256 kernel PTE tables in 8 bursts
# through pmd_free_pte_page() (kpgtable_test), and checks the debugfs
# counters the init script prints:
#
#   deferred  freed = 256, queued = 256, batches well below 256 (at most
#             one per 4 tables), one KVA flush per batch;
#   sync      all 256 freed by the time the free command returns, nothing
#             queued, no batch, no flush;
#   eager     freed = 256, one KVA flush per table.
#
# A fourth boot checks that kpgtable_hint_port= writes the page frame
# number of the first table freed to the port (see below).
#
# QEMU 7.2's intel-iommu has no SVA, so no mm is ever bound: kva_flushes
# counts the calls the worker makes to iommu_sva_invalidate_kva_range(),
# not invalidations that reached an IOMMU.
#
# Needs the cached kernel build (guest/linux/build.sh; CI builds it once
# per machine). Without it, prints one "SKIPPED: linux-qemu: <why>" line
# and exits 0. Any failure exits non-zero.
#
# Environment: STALEWALK_CACHE (see build.sh), LINUX_QEMU_TIMEOUT (seconds
# per boot, default 300).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
timeout_s=${LINUX_QEMU_TIMEOUT:-300}
pmds=32
bursts=8
tables=$((pmds * bursts))

skip() {
	echo "SKIPPED: linux-qemu: $*"
	exit 0
}

if ! paths=$("$root/guest/linux/build.sh" --check 2>/dev/null); then
	skip "no cached guest kernel build for the current guest/linux inputs (run guest/linux/build.sh)"
fi
command -v qemu-system-x86_64 >/dev/null ||
	skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"

bzimage=$(sed -n 's/^bzimage=//p' <<<"$paths")
vmlinux=$(sed -n 's/^vmlinux=//p' <<<"$paths")
initramfs=$(sed -n 's/^initramfs=//p' <<<"$paths")
[[ -f $bzimage && -f $vmlinux && -f $initramfs ]] || {
	echo "linux-qemu: build.sh --check printed paths that do not exist" >&2
	exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
fail() {
	echo "linux-qemu: FAIL: $*"
	failures=$((failures + 1))
}

# Value of key=... in the result line.
field() { sed -n "s/.* $1=\([0-9a-z]*\).*/\1/p" <<<"$2"; }

for mode in deferred sync eager; do
	log=$work/serial-$mode.log
	# One boot takes the PVH entry (the ELF vmlinux, as stalewalk loads
	# it), the others the bzImage.
	kernel=$bzimage
	[[ $mode == sync ]] && kernel=$vmlinux
	start=$(date +%s.%N)
	set +e
	timeout "$timeout_s" qemu-system-x86_64 \
		-accel tcg -machine q35 -cpu max -smp 2 -m 512M \
		-device intel-iommu,intremap=off,x-scalable-mode=on \
		-kernel "$kernel" -initrd "$initramfs" \
		-append "console=ttyS0 panic=-1 intel_iommu=on kpgtable_free=$mode stalewalk.pmds=$pmds stalewalk.bursts=$bursts" \
		-display none -monitor none -serial "file:$log" -no-reboot \
		</dev/null >"$work/qemu-$mode.out" 2>&1
	rc=$?
	set -e
	end=$(date +%s.%N)
	line=$(grep -a '^stalewalk-guest: kpgtable mode=' "$log" | tr -d '\r' | tail -n1 || true)
	if [[ $rc -ne 0 || -z $line ]]; then
		fail "$mode: qemu exit $rc, no result line; serial log tail:"
		tail -n 30 "$log" || true
		cat "$work/qemu-$mode.out"
		continue
	fi
	echo "linux-qemu: $mode, $(basename "$kernel") ($(printf '%.1f' "$(echo "$end - $start" | bc)") s): ${line#stalewalk-guest: }"

	got_mode=$(field mode "$line")
	queued=$(field queued "$line")
	freed=$(field freed "$line")
	freed_at_free=$(field freed_at_free "$line")
	batches=$(field batches "$line")
	flushes=$(field kva_flushes "$line")

	[[ $got_mode == "$mode" ]] || fail "$mode: kernel reports mode $got_mode"
	[[ $freed == "$tables" ]] || fail "$mode: freed=$freed, want $tables"
	case $mode in
	deferred)
		[[ $queued == "$tables" ]] || fail "deferred: queued=$queued, want $tables"
		((batches >= 1 && batches <= tables / 4)) ||
			fail "deferred: batches=$batches, want 1..$((tables / 4))"
		[[ $flushes == "$batches" ]] ||
			fail "deferred: kva_flushes=$flushes, want one per batch ($batches)"
		;;
	sync)
		[[ $freed_at_free == "$tables" ]] ||
			fail "sync: $freed_at_free freed when free returned, want $tables"
		[[ $queued == 0 && $batches == 0 && $flushes == 0 ]] ||
			fail "sync: queued=$queued batches=$batches kva_flushes=$flushes, want 0"
		;;
	eager)
		[[ $queued == "$tables" ]] || fail "eager: queued=$queued, want $tables"
		[[ $flushes == "$tables" ]] ||
			fail "eager: kva_flushes=$flushes, want one per table ($tables)"
		;;
	esac
	grep -aq '^stalewalk-guest: sva_dma loaded=1' "$log" ||
		fail "$mode: the sva_dma module did not load"
	grep -aq '^stalewalk-guest: done status=0' "$log" ||
		fail "$mode: init did not finish cleanly"
	if grep -aE 'BUG:|WARNING:|Oops|Bad page' "$log" >/dev/null; then
		fail "$mode: kernel warnings in the serial log:"
		grep -aE -A5 'BUG:|WARNING:|Oops|Bad page' "$log" | head -n 40
	fi
done

# kpgtable_hint_port=: point it at QEMU's isa-debug-exit, which ends QEMU
# with status (value << 1 | 1) & 0xff on the first 4-byte write. In sync
# mode the first kernel table freed after boot is the first table the test
# frees, so the status must come from that table's page frame number.
log=$work/serial-hint.log
set +e
timeout "$timeout_s" qemu-system-x86_64 \
	-accel tcg -machine q35 -cpu max -smp 2 -m 512M \
	-device intel-iommu,intremap=off,x-scalable-mode=on \
	-device isa-debug-exit,iobase=0x501,iosize=4 \
	-kernel "$bzimage" -initrd "$initramfs" \
	-append "console=ttyS0 panic=-1 kpgtable_free=sync kpgtable_hint_port=0x501 stalewalk.pmds=$pmds stalewalk.bursts=$bursts" \
	-display none -monitor none -serial "file:$log" -no-reboot \
	</dev/null >"$work/qemu-hint.out" 2>&1
rc=$?
set -e
pa=$(grep -a '^stalewalk-guest: kpgtable first_table_pa=' "$log" | tr -d '\r' | sed 's/.*=//' | tail -n1)
if [[ -z $pa ]]; then
	fail "hint: no first_table_pa line (qemu exit $rc); serial log tail:"
	tail -n 30 "$log" || true
else
	want=$(((((pa >> 12) << 1) | 1) & 0xff))
	if [[ $rc -eq $want ]] && ! grep -aq '^stalewalk-guest: done' "$log"; then
		echo "linux-qemu: hint: first freed table pfn $((pa >> 12)) written to port 0x501 (qemu exit $rc)"
	else
		fail "hint: qemu exit $rc, want $want from pfn $((pa >> 12))"
	fi
fi

if ((failures)); then
	echo "linux-qemu: $failures check(s) failed"
	exit 1
fi
echo "linux-qemu: ok (deferred, sync, eager, hint port; $tables tables in $bursts bursts each)"
