#!/usr/bin/env bash
# The SVA copy through a real `stalewalk run` (issue 16: measure what
# ships): the mini guest's sva-bench scenario copies 64 MiB with the SVA
# device through the vIOMMU, set up exactly as `stalewalk run` sets it up
# (event plumbing, checker `all` by default), with 4 KiB pages and with 2 MiB
# leaves, checker `all` and `off`; host memcpy of the same size is timed in
# the same TSC cycles by tools/examples/memcpy_tsc.rs. Rounds run the five
# measurements one after the other, so a noisy machine slows them alike;
# the table gives per-configuration medians over the rounds and the median
# of the per-round ratios to memcpy.
#
# Usage: tools/bench-sva.sh [--rounds N] [--mib M] [--smoke] [--baseline BIN]
#   --smoke: one round of 8 MiB (the suite's check that it still works).
#   --baseline BIN: also run another stalewalk binary (an older build)
#     right after each configuration, and add its column and the ratio
#     (side by side in one run, as comparisons on a shared machine need).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=5
mib=64
baseline=
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --smoke) rounds=1; mib=8; shift ;;
    --baseline) baseline=$2; shift 2 ;;
    *) echo "usage: bench-sva.sh [--rounds N] [--mib M] [--smoke] [--baseline BIN]" >&2; exit 2 ;;
    esac
done
cd "$root"
cargo build --release -q --bin stalewalk
cargo build --release -q -p stalewalk-tools --example memcpy_tsc
bin=target/release/stalewalk
memcpy=target/release/examples/memcpy_tsc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

configs="4k-all 4k-off 2m-all 2m-off"
for ((r = 1; r <= rounds; r++)); do
    "$memcpy" "$mib" 5 | sed -n 's/.*best_tsc_cycles=\([0-9]*\).*/\1/p' >>"$tmp/memcpy"
    for c in $configs; do
        pages=${c%-*} check=${c#*-}
        huge=0
        [ "$pages" = 2m ] && huge=1
        for which in new ${baseline:+base}; do
            b=$bin suffix=
            [ "$which" = base ] && b=$baseline suffix=.base
            out=$("$b" run --scenario sva-bench --memory 512M --serial off --report json \
                --viommu-check "$check" \
                --cmdline "sva_bench_mib=$mib sva_bench_2m=$huge sva_bench_reps=5" 2>"$tmp/err") || {
                cat "$tmp/err" >&2
                echo "bench-sva.sh: $c failed ($b)" >&2
                exit 1
            }
            python3 -c '
import json, sys
r = json.load(sys.stdin)
v = r["guest"]["values"]
assert v.get("verdict") == "pass", v
print(v["best_tsc_cycles"])
' <<<"$out" >>"$tmp/$c$suffix"
        done
    done
done

python3 - "$tmp" "$mib" "$rounds" "$baseline" $configs <<'PY'
import os, statistics, sys
tmp, mib, rounds, baseline, configs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
read = lambda n: [int(x) for x in open(f"{tmp}/{n}").read().split()]
mem = read("memcpy")
names = {
    "4k-all": "SVA copy, 4 KiB pages, checker all (the default)",
    "4k-off": "SVA copy, 4 KiB pages, checker off",
    "2m-all": "SVA copy, 2 MiB leaves, checker all",
    "2m-off": "SVA copy, 2 MiB leaves, checker off",
}
print(f"{mib} MiB per copy, best of 5 copies per run, {rounds} round(s); medians over the rounds")
print()
share = lambda v: [m / x for m, x in zip(mem, v)]
span = lambda r: f"**{statistics.median(r):.0%}** ({min(r):.0%} - {max(r):.0%})"
if baseline:
    print(f"baseline: {baseline}")
    print()
    print("| configuration | of host memcpy, this build | baseline | this / baseline, median |")
    print("|---|---|---|---|")
else:
    print("| configuration | TSC cycles, median | of host memcpy, median (range) |")
    print("|---|---|---|")
    print(f"| host `memcpy` (`copy_from_slice`) | {statistics.median(mem):,.0f} | 100% |")
for c in configs:
    v = read(c)
    if baseline:
        b = read(c + ".base")
        speed = [x0 / x1 for x0, x1 in zip(b, v)]
        print(f"| {names[c]} | {span(share(v))} | {span(share(b))} | x{statistics.median(speed):.2f} |")
    else:
        print(f"| {names[c]} | {statistics.median(v):,.0f} | {span(share(v))} |")
PY
