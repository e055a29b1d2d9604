#!/usr/bin/env bash
# bench-virtio.sh - virtio-blk sequential read throughput in the built-in
# mini guest with the vIOMMU on (first-stage translation, warm IOTLB) and
# off, side by side: the configurations run interleaved (on 2 MiB pages,
# on 4 KiB pages, off, on 2 MiB, ...) so all see the same host load, and
# the medians are compared. The guest's blk-bench scenario times its reads
# with the TSC (one warm-up request first, so the IOTLB and the host page
# cache are warm); MiB/s uses the host's TSC frequency. The best (lowest)
# run of each configuration is printed too: on a loaded host it is the
# steadier comparison.
#
# usage: tools/bench-virtio.sh [RUNS]   (default 5; needs /dev/kvm)
#   BENCH_MIB=N        MiB read per run (default 64)
#   STALEWALK_BIN=...  binary to measure (default: cargo build --release)
#   STALEWALK_ARGS=... extra `stalewalk run` options for every run
#   TSC_MHZ=...        TSC frequency (default: from dmesg's "tsc:" line)
set -euo pipefail

runs=${1:-5}
mib=${BENCH_MIB:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ -z "${STALEWALK_BIN:-}" ]; then
    cargo build --release -p stalewalk >&2
fi
sw=${STALEWALK_BIN:-$root/target/release/stalewalk}
# shellcheck disable=SC2206 # word splitting of the extra options is wanted
extra=(${STALEWALK_ARGS:-})

tsc=${TSC_MHZ:-$( (dmesg 2>/dev/null || true) | sed -n \
    -e 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' \
    -e 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -n 1)}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Random contents (not a sparse file), 2 MiB more than one pass reads so
# the warm-up request and the timed ones never wrap.
dd if=/dev/urandom of="$tmp/disk.img" bs=1M count=$((mib + 2)) status=none

configs=(on-2m on-4k off)
# run_one CONFIG: appends the guest's TSC cycles to $tmp/CONFIG.
run_one() {
    local name=$1 args
    case $name in
        on-2m) args=(--viommu on --cmdline "scenario=blk-bench blk_bench_mib=$mib blk_bench_2m=1") ;;
        on-4k) args=(--viommu on --cmdline "scenario=blk-bench blk_bench_mib=$mib blk_bench_2m=0") ;;
        off) args=(--viommu off --cmdline "scenario=blk-bench blk_bench_mib=$mib") ;;
    esac
    "$sw" run "${extra[@]}" --disk "$tmp/disk.img" "${args[@]}" >"$tmp/out.txt" 2>&1 || true
    local line
    line=$(grep -m1 "stalewalk-guest: scenario=blk-bench" "$tmp/out.txt" || true)
    case $line in
        *result=pass*) ;;
        *) echo "$name: the benchmark did not pass:" >&2; cat "$tmp/out.txt" >&2; exit 1 ;;
    esac
    sed -n 's/.*bench_tsc_cycles=\([0-9]*\).*/\1/p' <<<"$line" >>"$tmp/$name"
}

# One warm-up round, not counted.
for c in "${configs[@]}"; do run_one "$c"; done
rm -f "$tmp"/on-2m "$tmp"/on-4k "$tmp"/off
for _ in $(seq "$runs"); do
    for c in "${configs[@]}"; do run_one "$c"; done
done

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
off=$(median <"$tmp/off")
off_best=$(sort -n "$tmp/off" | head -n 1)
echo "virtio-blk sequential read, ${mib} MiB in 2 MiB requests, median of $runs (interleaved)"
[ -n "$tsc" ] && echo "TSC ${tsc} MHz" || echo "TSC frequency unknown (set TSC_MHZ): cycles only"
printf '%-8s %14s %10s %10s %14s %10s\n' config median_cycles MiB/s "x off" best_cycles "best x off"
for c in "${configs[@]}"; do
    med=$(median <"$tmp/$c")
    best=$(sort -n "$tmp/$c" | head -n 1)
    rate=-
    [ -n "$tsc" ] && rate=$(awk -v m="$mib" -v c="$med" -v f="$tsc" 'BEGIN {printf "%.0f", m / (c / (f * 1e6))}')
    ratio=$(awk -v on="$med" -v off="$off" 'BEGIN {printf "%.2f", off / on}')
    bratio=$(awk -v on="$best" -v off="$off_best" 'BEGIN {printf "%.2f", off / on}')
    printf '%-8s %14s %10s %10s %14s %10s\n' "$c" "$med" "$rate" "$ratio" "$best" "$bratio"
done
