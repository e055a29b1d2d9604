#!/usr/bin/env bash
# Smoke run of every fuzz target (fuzz/, cargo-fuzz): builds them once, then
# runs each for a few seconds from its committed seed corpus (copied to a
# scratch directory, so the repository stays clean). It keeps the targets
# building and catches a crash on the seeds or nearby; the long runs are
# tools/fuzz.sh and docs/SECURITY.md.
#
# Without the nightly toolchain or cargo-fuzz it prints one SKIPPED line and
# exits 0. A crash, hang or out-of-memory exits non-zero.
#
# FUZZ_SMOKE_SECONDS (default 3) sets the time per target.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
seconds="${FUZZ_SMOKE_SECONDS:-3}"

if ! command -v rustup >/dev/null 2>&1; then
    echo "SKIPPED: fuzz-smoke: rustup is not installed (cargo-fuzz needs the nightly toolchain)"
    exit 0
fi
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "SKIPPED: fuzz-smoke: the nightly toolchain is not installed (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "SKIPPED: fuzz-smoke: cargo-fuzz is not installed (cargo install cargo-fuzz)"
    exit 0
fi

cd "$fuzz"
build_start=$(date +%s)
nice -n 10 cargo +nightly fuzz build >/dev/null 2>"${TMPDIR:-/tmp}/fuzz-smoke-build.$$.log" || {
    cat "${TMPDIR:-/tmp}/fuzz-smoke-build.$$.log" >&2
    rm -f "${TMPDIR:-/tmp}/fuzz-smoke-build.$$.log"
    echo "fuzz-smoke: build failed" >&2
    exit 1
}
rm -f "${TMPDIR:-/tmp}/fuzz-smoke-build.$$.log"
echo "fuzz-smoke: built in $(($(date +%s) - build_start)) s"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/stalewalk-fuzz-smoke.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
failed=0
for target in $("$root/tools/fuzz.sh" --list); do
    bin="$fuzz/target/x86_64-unknown-linux-gnu/release/$target"
    work="$scratch/$target"
    mkdir -p "$work/corpus" "$work/artifacts"
    if [[ -d "$fuzz/corpus/$target" ]]; then
        cp -r "$fuzz/corpus/$target/." "$work/corpus/"
    fi
    if nice -n 10 "$bin" "$work/corpus" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
        >"$work/log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
        echo "fuzz-smoke: $target ok (${execs:-?} execs in ${seconds} s)"
    else
        failed=1
        echo "fuzz-smoke: $target FAILED:" >&2
        tail -n 40 "$work/log" >&2
        for a in "$work"/artifacts/*; do
            [[ -f $a ]] || continue
            keep="${TMPDIR:-/tmp}/fuzz-smoke-$target-$(basename "$a")"
            cp "$a" "$keep"
            echo "fuzz-smoke: reproducer kept at $keep" >&2
        done
    fi
done
exit "$failed"
