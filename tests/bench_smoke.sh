#!/usr/bin/env bash
# Smoke run of the benchmark suite: tools/bench.sh --smoke runs every step
# of tools/bench.sh briefly (criterion with tiny measurement times, one
# round of the SVA copy, virtio-blk, VMM start-up vs QEMU, churn, tracing)
# and writes target/bench-smoke/PERFORMANCE.md instead of the committed
# docs/PERFORMANCE.md. It keeps the scripts, the harness and the document's
# generated blocks working; the numbers mean nothing.
#
# Without /dev/kvm or python3 it prints one SKIPPED line and exits 0.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ ! -c /dev/kvm ]]; then
    echo "SKIPPED: bench-smoke: /dev/kvm is missing"
    exit 0
fi
if ! command -v python3 >/dev/null; then
    echo "SKIPPED: bench-smoke: python3 is missing"
    exit 0
fi

out="$root/target/bench-smoke"
before=$(git -C "$root" hash-object docs/PERFORMANCE.md)
start=$(date +%s)
BENCH_OUT="$out" tools/bench.sh --smoke
echo "bench-smoke: tools/bench.sh --smoke took $(($(date +%s) - start)) s (builds included)"

doc="$out/PERFORMANCE.md"
[[ -s $doc ]] || { echo "bench-smoke: $doc was not written" >&2; exit 1; }
[[ $(git -C "$root" hash-object docs/PERFORMANCE.md) == "$before" ]] ||
    { echo "bench-smoke: --smoke changed docs/PERFORMANCE.md" >&2; exit 1; }
# Every generated block got a measurement, not a placeholder.
fail=0
for block in machine targets viommu dma virtio boot churn trace-unit trace-guest; do
    body=$(sed -n "/<!-- bench:$block -->/,/<!-- \/bench:$block -->/p" "$doc")
    if [[ $(wc -l <<<"$body") -lt 3 ]] || grep -q -w -e "Not measured in this run" -e "not run" -e "nan" <<<"$body"; then
        echo "bench-smoke: block $block has no measurement:" >&2
        echo "$body" >&2
        fail=1
    fi
done
grep -q "IOTLB hit <= 20 ns" "$doc" || { echo "bench-smoke: no targets table" >&2; fail=1; }
# The SVA copy through a real run (tools/bench-sva.sh): one 8 MiB round,
# every configuration measured and beside memcpy.
sva=$(tools/bench-sva.sh --smoke) || { echo "bench-smoke: tools/bench-sva.sh --smoke failed" >&2; fail=1; }
if [[ $(grep -c '^| SVA copy' <<<"$sva") -ne 4 ]] || ! grep -q '^| host `memcpy`' <<<"$sva"; then
    echo "bench-smoke: tools/bench-sva.sh table incomplete:" >&2
    echo "$sva" >&2
    fail=1
fi
exit "$fail"
