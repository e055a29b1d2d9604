#!/usr/bin/env bash
# bench-boot.sh - boot time and peak RSS of the built-in mini guest under
# stalewalk and under QEMU's fastest configuration for the same ELF, run
# interleaved (stalewalk, QEMU, stalewalk, ...) so both see the same host
# load. Wall time is measured from process start to process exit (the
# guest exits through the debug-exit port at the end of its boot).
#
# usage: tools/bench-boot.sh [RUNS]     (default 10; needs /dev/kvm, gcc,
#        qemu-system-x86_64 and GNU time: apt-get install qemu-system-x86 time)
set -euo pipefail

runs=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# STALEWALK_BIN / STALEWALK_ELF override the binary and the guest ELF
# (for example to measure an older build); by default both are built here.
if [ -z "${STALEWALK_BIN:-}" ]; then
    cargo build --release -p stalewalk >&2
fi
sw=${STALEWALK_BIN:-$root/target/release/stalewalk}
# The ELF embedded in the binary, as build.rs left it (newest build).
elf=${STALEWALK_ELF:-$(ls -t "$root"/target/release/build/stalewalk-*/out/mini.elf | head -n 1)}
qemu=(qemu-system-x86_64 -M microvm,rtc=off,pic=off,pit=off
      -enable-kvm -cpu kvm64 -m 128M -nodefaults -no-user-config -nographic
      -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$elf")
# Same guest memory for both.
swcmd=("$sw" run --memory 128M)

command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 missing: apt-get install -y qemu-system-x86" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing: apt-get install -y time" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# measure NAME CMD...: appends "wall_ms rss_kib" to $tmp/NAME; checks the banner.
measure() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -v -o "$tmp/time.txt" "$@" >"$tmp/out.txt" 2>"$tmp/err.txt" || true
    t1=$(date +%s%N)
    grep -q "stalewalk-guest: exit=0" "$tmp/out.txt" || { echo "$name: guest did not finish:" >&2; cat "$tmp/out.txt" "$tmp/err.txt" >&2; exit 1; }
    local rss
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time.txt")
    echo "$(( (t1 - t0) / 1000 )) $rss" >>"$tmp/$name"
}

# One warm-up each (page cache), not counted.
measure warm "${swcmd[@]}"; measure warm "${qemu[@]}"
for _ in $(seq "$runs"); do
    measure stalewalk "${swcmd[@]}"
    measure qemu "${qemu[@]}"
done

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
report() {
    local name=$1 wall rss
    wall=$(awk '{print $1}' "$tmp/$name" | median)
    rss=$(awk '{print $2}' "$tmp/$name" | median)
    awk -v n="$name" -v w="$wall" -v r="$rss" -v k="$runs" \
        'BEGIN {printf "%-10s wall median %7.1f ms   peak RSS median %6.1f MiB   (%d runs)\n", n, w / 1000, r / 1024, k}'
}
echo "host: $(nproc) CPUs, $(uname -r); $(qemu-system-x86_64 --version | head -n 1)"
report stalewalk
report qemu
