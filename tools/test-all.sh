#!/usr/bin/env bash
# The project's test command (README "Run the tests"): every Rust test in the
# workspace, then the shell tests that need external tools. Tests that need
# something this machine lacks print one `SKIPPED: <test>: <why>` line.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin stalewalk
cargo test --workspace --release -- --nocapture 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || exit "$status"

for t in tests/*.sh; do
    [ -e "$t" ] || continue
    echo "== $t"
    bash "$t"
done

echo "== skipped tests"
grep -h '^SKIPPED:' target/test-output.log || echo "(none)"
