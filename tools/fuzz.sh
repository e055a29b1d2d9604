#!/usr/bin/env bash
# Runs one cargo-fuzz target of fuzz/ for a number of seconds, starting from
# its committed seed corpus (fuzz/corpus/TARGET), which is copied to a
# scratch directory first so the repository stays clean. Prints the number
# of inputs executed and whether anything crashed, hung or ran out of memory.
#
#   tools/fuzz.sh TARGET SECONDS   run TARGET for SECONDS (nice -n 10)
#   tools/fuzz.sh --list           list the targets
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# FUZZ_KEEP=1 keeps the scratch directory (grown corpus, log) afterwards; it
# is always kept when something was found, and its path printed.
# FUZZ_ARGS adds libFuzzer options (e.g. FUZZ_ARGS="-max_len=65536").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"

targets() {
    # The [[bin]] names of fuzz/Cargo.toml, in file order.
    awk '/^\[\[bin\]\]/{bin=1; next} bin && /^name *=/{gsub(/"|name *= */,""); print; bin=0}' \
        "$fuzz/Cargo.toml"
}

usage() {
    echo "usage: tools/fuzz.sh TARGET SECONDS | --list" >&2
    exit 2
}

if [[ $# -eq 1 && $1 == --list ]]; then
    targets
    exit 0
fi
[[ $# -eq 2 ]] || usage
target=$1
seconds=$2
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || usage
if ! targets | grep -qx "$target"; then
    echo "tools/fuzz.sh: unknown target '$target'; targets:" >&2
    targets >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "tools/fuzz.sh: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 2
fi

cd "$fuzz"
nice -n 10 cargo +nightly fuzz build "$target" >&2
bin="$fuzz/target/x86_64-unknown-linux-gnu/release/$target"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/stalewalk-fuzz-$target.XXXXXX")"
mkdir -p "$scratch/corpus" "$scratch/artifacts"
if [[ -d "$fuzz/corpus/$target" ]]; then
    cp -r "$fuzz/corpus/$target/." "$scratch/corpus/"
fi
seeds=$(find "$scratch/corpus" -type f | wc -l)
log="$scratch/log.txt"

echo "fuzz: $target for ${seconds}s from $seeds seed input(s); scratch $scratch" >&2
start=$(date +%s)
set +e
# -timeout: one input taking longer than 10 s is a hang; -rss_limit_mb:
# growing past 2 GiB is unbounded growth.
# shellcheck disable=SC2086
nice -n 10 "$bin" "$scratch/corpus" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$scratch/artifacts/" \
    ${FUZZ_ARGS:-} >"$log" 2>&1
rc=$?
set -e
elapsed=$(($(date +%s) - start))

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
inputs=$(find "$scratch/corpus" -type f | wc -l)
found=$(find "$scratch/artifacts" -type f | wc -l)
echo "target:  $target"
echo "seconds: $elapsed"
echo "execs:   ${execs:-unknown}"
echo "corpus:  $seeds -> $inputs inputs"
if [[ $rc -eq 0 && $found -eq 0 ]]; then
    echo "result:  ok (no crash, hang or out-of-memory)"
    if [[ ${FUZZ_KEEP:-0} != 1 ]]; then
        rm -rf "$scratch"
    fi
    exit 0
fi
echo "result:  FOUND something (libFuzzer exit $rc); artifacts and log in $scratch"
find "$scratch/artifacts" -type f -printf '  %p\n'
grep -m1 -E '^==[0-9]+==|panicked at|deadly signal|timeout|out-of-memory' "$log" || true
exit 1
