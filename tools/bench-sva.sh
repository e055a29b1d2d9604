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
# Usage: tools/bench-sva.sh [--rounds N] [--mib M] [--smoke]
#   --smoke: one round of 8 MiB (the suite's check that it still works).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=5
mib=64
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --smoke) rounds=1; mib=8; shift ;;
    *) echo "usage: bench-sva.sh [--rounds N] [--mib M] [--smoke]" >&2; exit 2 ;;
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
        out=$("$bin" run --scenario sva-bench --memory 512M --serial off --report json \
            --viommu-check "$check" \
            --cmdline "sva_bench_mib=$mib sva_bench_2m=$huge sva_bench_reps=5" 2>"$tmp/err") || {
            cat "$tmp/err" >&2
            echo "bench-sva.sh: $c failed" >&2
            exit 1
        }
        python3 -c '
import json, sys
r = json.load(sys.stdin)
v = r["guest"]["values"]
assert v.get("verdict") == "pass", v
print(v["best_tsc_cycles"])
' <<<"$out" >>"$tmp/$c"
    done
done

python3 - "$tmp" "$mib" "$rounds" $configs <<'PY'
import statistics, sys
tmp, mib, rounds, configs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
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
print("| configuration | TSC cycles, median | of host memcpy, median (range) |")
print("|---|---|---|")
print(f"| host `memcpy` (`copy_from_slice`) | {statistics.median(mem):,.0f} | 100% |")
for c in configs:
    v = read(c)
    ratios = [m / x for m, x in zip(mem, v)]
    print(f"| {names[c]} | {statistics.median(v):,.0f} | **{statistics.median(ratios):.0%}** ({min(ratios):.0%} - {max(ratios):.0%}) |")
PY
