#!/usr/bin/env bash
# Boots the patched Linux 6.12 guest kernel (guest/linux/) under QEMU with
# TCG (no KVM) and a scalable-mode intel-iommu, once per kpgtable_free=
# mode, from the bzImage. In each boot the initramfs has kpgtable_test free 256
# kernel PTE tables in 8 bursts through pmd_free_pte_page(), then 512 PTE
# tables and their PMD table in one pud_free_pmd_page() call, and prints
# what the module checked and the kpgtable_free counters. Checked here:
#
#   every mode  the module saw each of its tables freed (unfreed=0), both
#               paths were driven (path_failures=0, the PUD case ok=1),
#               no BUG/WARNING/Oops in the serial log, init ended cleanly;
#   deferred    no table freed before an IOMMU flush that started after it
#               was queued (unflushed=0, in the module's per-table check and
#               in the kernel's counter), at most one flush per table, the
#               kernel not tainted;
#   eager       unflushed=0, at least one flush per table;
#   sync        every table freed with no flush (unflushed = tables, in both
#               checks), nothing queued, the kernel tainted (TAINT_USER, bit
#               6) and saying why on the console.
#
# A fourth boot runs the deferred mode with 256 MiB of RAM filled to 24 MiB
# available and a process allocating in the background (memory pressure),
# four rounds of bursts, and checks the same ordering; it prints the
# pending-list and wait figures (the cover letter of the series quotes
# them). A fifth boot checks kpgtable_hint_port= (see below); then a kernel
# built without the test knobs (build.sh --config nodebug) must not know
# them, and the debug kernel hot-removes memory (see the end).
#
# QEMU's intel-iommu binds no SVA device here, so kva_flushes counts the
# flushes the kernel started (iommu_sva_invalidate_kva_range() calls), not
# invalidations that reached an IOMMU.
#
# Every mode runs on the debug kernel (guest/linux/build.sh --config debug:
# the boot config plus lockdep, DEBUG_ATOMIC_SLEEP, DEBUG_LIST, KASAN and
# memory hot-remove; .ci/run builds it and the nodebug one), and fails on
# any report of those, or on LINUX_QEMU_KERNEL_DIR, a build.sh output
# directory (bzImage, vmlinux, initramfs.cpio[.gz]). Without one, prints
# one "SKIPPED: linux-qemu: <why>" line and exits 0 (a failure in CI,
# where STALEWALK_REQUIRE_ALL=1). Any failure exits non-zero.
#
# Environment: STALEWALK_CACHE (see build.sh), LINUX_QEMU_TIMEOUT (seconds
# per boot, default 300), LINUX_QEMU_KERNEL_DIR (see above),
# LINUX_QEMU_NODEBUG_BZIMAGE and LINUX_QEMU_DEBUG_KERNEL_DIR (see the end).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
timeout_s=${LINUX_QEMU_TIMEOUT:-300}
pmds=32
bursts=8
tables=$((pmds * bursts))

test_name=linux-qemu
# skip and fail (tests/lib/common.sh).
source "$root/tests/lib/common.sh"

# kernel_paths CONFIG: what `build.sh --config CONFIG --check` prints for
# the current guest/linux inputs (empty when that build is not cached).
kernel_paths() { "$root/guest/linux/build.sh" --config "$1" --check 2>/dev/null || true; }
# initramfs_in DIR: the build's initramfs (the small configs' is an
# uncompressed cpio, the default config's gzip-compressed).
initramfs_in() {
	if [[ -f $1/initramfs.cpio ]]; then echo "$1/initramfs.cpio"; else echo "$1/initramfs.cpio.gz"; fi
}

# The kernel every mode runs on: the debug config (the small boot config
# plus lockdep, DEBUG_ATOMIC_SLEEP, DEBUG_LIST, KASAN and memory hot-remove;
# .ci/run builds it), so each boot also fails on any report of those.
if [[ -n ${LINUX_QEMU_KERNEL_DIR:-} ]]; then
	kdir=$LINUX_QEMU_KERNEL_DIR
else
	paths=$(kernel_paths debug)
	[[ -n $paths ]] ||
		skip "no cached debug kernel for the current guest/linux inputs (run guest/linux/build.sh --config debug)"
	kdir=$(sed -n 's/^kernel_dir=//p' <<<"$paths")
fi
bzimage=$kdir/bzImage vmlinux=$kdir/vmlinux
initramfs=$(initramfs_in "$kdir")
command -v qemu-system-x86_64 >/dev/null ||
	skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
[[ -f $bzimage && -f $vmlinux && -f $initramfs ]] || {
	echo "linux-qemu: kernel paths that do not exist: $bzimage $vmlinux $initramfs" >&2
	exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
# Value of key=... (or "key value" in a module status line) in a line.
field() { sed -n -e "s/.* $1=\([0-9a-z]*\).*/\1/p" -e "t" -e "s/.* $1 \([0-9]*\).*/\1/p" <<<"$2"; }

# boot NAME KERNEL MEM APPEND [QEMU ARGS...]: one QEMU run, serial log in
# $work/serial-NAME.log, exit status in $rc, wall time in $secs.
boot() {
	local name=$1 kernel=$2 mem=$3 append=$4 start end
	shift 4
	start=$(date +%s.%N)
	set +e
	timeout "$timeout_s" qemu-system-x86_64 \
		-accel tcg -machine q35 -cpu max -smp 2 -m "$mem" \
		-device intel-iommu,intremap=off,x-scalable-mode=on \
		-kernel "$kernel" -initrd "$initramfs" \
		-append "console=ttyS0 panic=-1 intel_iommu=on $append" \
		-display none -monitor none -serial "file:$work/serial-$name.log" \
		-no-reboot "$@" </dev/null >"$work/qemu-$name.out" 2>&1
	rc=$?
	set -e
	end=$(date +%s.%N)
	secs=$(printf '%.1f' "$(echo "$end - $start" | bc)")
}

log_tail() {
	tail -n 30 "$work/serial-$1.log" || true
	cat "$work/qemu-$1.out"
}

# What lockdep, DEBUG_ATOMIC_SLEEP, KASAN and list debugging print.
debug_reports='BUG: KASAN|possible circular locking|possible recursive locking|inconsistent lock state|lock held when returning|suspicious RCU usage|sleeping function called from invalid context|list_add corruption|list_del corruption|kernel BUG'

# check_run NAME MODE TABLES: the checks every kpgtable_test boot shares.
check_run() {
	local name=$1 mode=$2 want=$3 log=$work/serial-$1.log line checks pud
	local got queued freed batches flushes unflushed tainted c
	line=$(grep -a '^stalewalk-guest: kpgtable mode=.* tables=' "$log" | tr -d '\r' | tail -n1 || true)
	if [[ $rc -ne 0 || -z $line ]]; then
		fail "$name: qemu exit $rc, no result line; serial log tail:"
		log_tail "$name"
		return
	fi
	echo "linux-qemu: $name ($secs s): ${line#stalewalk-guest: }"
	got=$(field mode "$line")
	queued=$(field queued "$line")
	freed=$(field freed "$line")
	batches=$(field batches "$line")
	flushes=$(field kva_flushes "$line")
	unflushed=$(field unflushed "$line")
	tainted=$(field tainted "$line")

	[[ $got == "$mode" ]] || fail "$name: kernel reports mode $got, want $mode"
	((freed >= want)) || fail "$name: freed=$freed, want at least $want"

	# The module's own per-table checks, one line per round.
	checks=$(grep -a '^stalewalk-guest: kpgtable check pmd ' "$log" | tr -d '\r' || true)
	[[ -n $checks ]] || fail "$name: no 'kpgtable check pmd' line"
	while read -r c; do
		[[ -z $c ]] && continue
		[[ $(field unfreed "$c") == 0 && $(field path_failures "$c") == 0 ]] ||
			fail "$name: module check: ${c#stalewalk-guest: }"
		if [[ $mode == sync ]]; then
			[[ $(field unflushed "$c") == "$(field freed "$c")" ]] ||
				fail "sync: the module saw tables freed after a flush: ${c#stalewalk-guest: }"
		else
			[[ $(field unflushed "$c") == 0 ]] ||
				fail "$name: a table was freed before its flush: ${c#stalewalk-guest: }"
		fi
	done <<<"$checks"

	pud=$(grep -a '^stalewalk-guest: kpgtable check pud ' "$log" | tr -d '\r' | tail -n1 || true)
	if [[ $(field ok "$pud") != 1 || $(field tables "$pud") != 513 || $(field freed "$pud") != 513 ]]; then
		fail "$name: PUD case (pud_free_pmd_page()): ${pud:-no line}"
	fi

	case $mode in
	deferred)
		((queued >= want)) || fail "$name: queued=$queued, want at least $want"
		[[ $unflushed == 0 ]] || fail "$name: kernel counted unflushed=$unflushed"
		((flushes >= 1 && flushes <= queued)) ||
			fail "$name: kva_flushes=$flushes, want 1..$queued (at most one per table)"
		((tainted & 64)) && fail "$name: kernel tainted ($tainted) without kpgtable_free=sync"
		;;
	eager)
		((queued >= want)) || fail "eager: queued=$queued, want at least $want"
		[[ $unflushed == 0 ]] || fail "eager: kernel counted unflushed=$unflushed"
		((flushes >= queued && batches >= queued)) ||
			fail "eager: kva_flushes=$flushes batches=$batches, want one per table ($queued)"
		((tainted & 64)) && fail "eager: kernel tainted ($tainted) without kpgtable_free=sync"
		;;
	sync)
		[[ $queued == 0 && $batches == 0 ]] ||
			fail "sync: queued=$queued batches=$batches, want 0"
		[[ $unflushed == "$freed" ]] ||
			fail "sync: unflushed=$unflushed, want every table freed ($freed)"
		((tainted & 64)) || fail "sync: kernel not tainted (tainted=$tainted)"
		grep -aq 'kpgtable_free=sync: kernel page tables are freed with no IOMMU flush' "$log" ||
			fail "sync: the kernel did not say why it is tainted"
		;;
	esac
	grep -aq '^stalewalk-guest: sva_dma loaded=1' "$log" ||
		fail "$name: the sva_dma module did not load"
	grep -aq '^stalewalk-guest: done status=0' "$log" ||
		fail "$name: init did not finish cleanly"
	if grep -aE 'BUG:|WARNING:|Oops|Bad page' "$log" >/dev/null; then
		fail "$name: kernel warnings in the serial log:"
		grep -aE -A5 'BUG:|WARNING:|Oops|Bad page' "$log" | head -n 40
	fi
	if grep -aE "$debug_reports" "$log" >/dev/null; then
		fail "$name: lockdep/KASAN/list-debug report:"
		grep -aE -A8 "$debug_reports" "$log" | head -n 40
	fi
	return 0
}

args="stalewalk.pmds=$pmds stalewalk.bursts=$bursts"
for mode in deferred sync eager; do
	# The bzImage: QEMU's PVH entry (the ELF vmlinux, as stalewalk loads
	# it) leaves the small tickless configs with CPU 0 never woken under
	# TCG (RCU stall warnings, no progress); tests/linux_kvm.sh boots the
	# vmlinux through stalewalk's PVH loader.
	boot "$mode" "$bzimage" 512M "kpgtable_free=$mode $args"
	check_run "$mode" "$mode" "$tables"
done

# Memory pressure: 256 MiB, filled until 24 MiB are available, a process
# allocating and freeing 8 MiB in a loop, four rounds of the bursts.
boot pressure "$bzimage" 256M "kpgtable_free=deferred $args stalewalk.pressure=24 stalewalk.rounds=4"
check_run pressure deferred $((tables * 4))
p=$(grep -a '^stalewalk-guest: pressure ' "$work/serial-pressure.log" | tr -d '\r' | tail -n1 || true)
[[ -n $p ]] || fail "pressure: the guest did not report the memory it filled"
echo "linux-qemu: pressure: ${p#stalewalk-guest: }"

# kpgtable_hint_port=: point it at QEMU's isa-debug-exit, which ends QEMU
# with status (value << 1 | 1) & 0xff on the first 4-byte write. In sync
# mode the first kernel table freed after boot is the first one the test
# frees, so QEMU must end, with an odd status, after init announced the
# free and before it could print a result.
boot hint "$bzimage" 512M "kpgtable_free=sync kpgtable_hint_port=0x501 $args" \
	-device isa-debug-exit,iobase=0x501,iosize=4
if ((rc % 2 == 1)) && grep -aq '^stalewalk-guest: kpgtable free-start round=1' "$work/serial-hint.log" &&
	! grep -aq '^stalewalk-guest: kpgtable mode=.* tables=' "$work/serial-hint.log"; then
	echo "linux-qemu: hint: the first table the test freed reached port 0x501 (qemu exit $rc, pfn low bits $((rc >> 1)))"
else
	fail "hint: qemu exit $rc, want an odd status from a hint written during the test's free; serial log tail:"
	log_tail hint
fi

# Optional: a kernel built from the same series without
# CONFIG_DEBUG_KPGTABLE_FREE (LINUX_QEMU_NODEBUG_BZIMAGE) must not know
# kpgtable_free= or kpgtable_hint_port=: it reports both as unknown,
# stays in deferred mode, untainted, and never writes the hint port.
nodebug_kernel=${LINUX_QEMU_NODEBUG_BZIMAGE:-}
if [[ -z $nodebug_kernel ]]; then
	nodebug_kernel=$(kernel_paths nodebug | sed -n 's/^bzimage=//p')
fi
if [[ -n $nodebug_kernel ]]; then
	boot nodebug "$nodebug_kernel" 512M "kpgtable_free=sync kpgtable_hint_port=0x501" \
		-device isa-debug-exit,iobase=0x501,iosize=4
	l=$work/serial-nodebug.log
	if [[ $rc -eq 0 ]] &&
		grep -aq 'Unknown kernel command line parameters "kpgtable_free=sync kpgtable_hint_port=0x501"' "$l" &&
		grep -aq '^stalewalk-guest: kpgtable mode=deferred tainted=0' "$l"; then
		echo "linux-qemu: nodebug: kpgtable_free= and kpgtable_hint_port= unknown, mode deferred, not tainted, no hint"
	else
		fail "nodebug: qemu exit $rc; serial log tail:"
		log_tail nodebug
	fi
else
	echo "SKIPPED: linux-qemu-nodebug: no kernel without CONFIG_DEBUG_KPGTABLE_FREE (run guest/linux/build.sh --config nodebug, or set LINUX_QEMU_NODEBUG_BZIMAGE)"
fi

# The debug kernel (lockdep, DEBUG_ATOMIC_SLEEP, DEBUG_LIST, KASAN,
# MEMORY_HOTPLUG, MEMORY_HOTREMOVE): LINUX_QEMU_DEBUG_KERNEL_DIR, a
# build.sh-style output directory (bzImage, vmlinux, initramfs.cpio.gz).
# Every mode again, then a memory hot-remove: QEMU's monitor hot-adds a
# 128 MiB DIMM, the guest onlines, uses and offlines it, the monitor
# removes it, and the kernel page tables of the range must be freed with
# no report from lockdep, KASAN or list debugging and none before its flush.

# hotremove NAME BZIMAGE: the hot-add/remove boot, driven through the
# human monitor on a local TCP port.
hotremove() {
	local name=$1 kernel=$2 log=$work/serial-$1.log port pid n sent=0
	port=$((40000 + RANDOM % 20000))
	qemu-system-x86_64 \
		-accel tcg -machine q35 -cpu max -smp 2 -m 512M,slots=2,maxmem=2G \
		-device intel-iommu,intremap=off,x-scalable-mode=on \
		-kernel "$kernel" -initrd "$initramfs" \
		-append "console=ttyS0 panic=-1 intel_iommu=on kpgtable_free=deferred stalewalk.bursts=1 stalewalk.pud=0 stalewalk.hotplug=1" \
		-display none -monitor "tcp:127.0.0.1:$port,server=on,wait=off" \
		-serial "file:$log" -no-reboot </dev/null >"$work/qemu-$name.out" 2>&1 &
	pid=$!
	rc=124
	for ((n = 0; n < timeout_s * 2; n++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			set +e
			wait "$pid"
			rc=$?
			set -e
			break
		fi
		if ((sent == 0)) && grep -aq '^stalewalk-guest: hotplug waiting' "$log" 2>/dev/null; then
			printf 'object_add memory-backend-ram,id=hotmem,size=128M\ndevice_add pc-dimm,id=hotdimm,memdev=hotmem\n' |
				monitor "$port" && sent=1
		fi
		if ((sent == 1)) && grep -aq '^stalewalk-guest: hotplug offlined' "$log" 2>/dev/null; then
			printf 'device_del hotdimm\n' | monitor "$port" && sent=2
		fi
		sleep 0.5
	done
	if ((rc == 124)); then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
}

# monitor PORT: send stdin's lines to QEMU's human monitor.
monitor() {
	local fd
	exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
	cat >&"$fd"
	sleep 1
	exec {fd}>&-
}

# The modes ran on the debug kernel above unless LINUX_QEMU_KERNEL_DIR named
# another; LINUX_QEMU_DEBUG_KERNEL_DIR names a debug kernel to run them on
# again. The hot-remove runs on the debug kernel either way.
debug_dir=${LINUX_QEMU_DEBUG_KERNEL_DIR:-}
modes_again=1
if [[ -z $debug_dir ]]; then
	debug_dir=$(kernel_paths debug | sed -n 's/^kernel_dir=//p')
	[[ $debug_dir == "$kdir" ]] && modes_again=0
fi
if [[ -n $debug_dir ]]; then
	saved_initramfs=$initramfs
	initramfs=$(initramfs_in "$debug_dir")
	dbz=$debug_dir/bzImage
	((modes_again)) || echo "linux-qemu: every mode above ran on the debug kernel; now its hot-remove"
	for mode in deferred sync eager; do
		((modes_again)) || break
		boot "debug-$mode" "$dbz" 512M "kpgtable_free=$mode $args"
		check_run "debug-$mode" "$mode" "$tables"
		if grep -aE "$debug_reports" "$work/serial-debug-$mode.log" >/dev/null; then
			fail "debug-$mode: lockdep/KASAN/list-debug report:"
			grep -aE -A8 "$debug_reports" "$work/serial-debug-$mode.log" | head -n 40
		fi
	done
	hotremove debug-hotremove "$dbz"
	l=$work/serial-debug-hotremove.log
	h=$(grep -a '^stalewalk-guest: hotplug removed ' "$l" | tr -d '\r' | tail -n1 || true)
	if [[ $rc -ne 0 || -z $h ]] || ! grep -aq '^stalewalk-guest: done status=0' "$l"; then
		fail "debug-hotremove: qemu exit $rc, ${h:-no 'hotplug removed' line}; serial log tail:"
		log_tail debug-hotremove
	elif (($(field freed "$h") < 1)) || [[ $(field unflushed "$h") != 0 ]]; then
		fail "debug-hotremove: ${h#stalewalk-guest: } (want freed >= 1, unflushed=0)"
	else
		echo "linux-qemu: debug-hotremove: ${h#stalewalk-guest: }"
	fi
	if grep -aE "$debug_reports|BUG:|WARNING:|Oops" "$l" >/dev/null; then
		fail "debug-hotremove: kernel report:"
		grep -aE -A8 "$debug_reports|BUG:|WARNING:|Oops" "$l" | head -n 40
	fi
	initramfs=$saved_initramfs
else
	echo "SKIPPED: linux-qemu-debug: no debug kernel (run guest/linux/build.sh --config debug, or set LINUX_QEMU_DEBUG_KERNEL_DIR)"
fi

if ((failures)); then
	echo "linux-qemu: $failures check(s) failed"
	exit 1
fi
echo "linux-qemu: ok (deferred, sync, eager, deferred under memory pressure, hint port; $tables tables in $bursts bursts each, plus the PUD case)"
