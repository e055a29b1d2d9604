# Helpers the shell tests (tests/*.sh) source after setting `test_name`
# (the test's name in its output lines; a variable of its own, so a
# function of the test with a `local name` does not change it). Not a
# test itself: tools/test-all.sh runs tests/*.sh only.

# skip WHY: prints one "SKIPPED: <test_name>: WHY" line and exits 0, so a
# missing tool or build never passes silently; with STALEWALK_REQUIRE_ALL=1
# (CI, where everything is installed) it is a failure instead.
skip() {
    if [ "${STALEWALK_REQUIRE_ALL:-0}" = 1 ]; then
        echo "$test_name: FAIL: $* (STALEWALK_REQUIRE_ALL=1: nothing may be skipped)"
        exit 1
    fi
    echo "SKIPPED: $test_name: $*"
    exit 0
}

# fail WHAT: prints one "<test_name>: FAIL: WHAT" line and counts it in
# $failures; the test goes on and exits 1 at its end when any failed.
failures=0
fail() {
    echo "$test_name: FAIL: $*"
    failures=$((failures + 1))
}

# output_dir DIR: sets $out to DIR, created and kept, for the logs a run
# leaves (the test's *_OUT variable); with DIR empty, to a temporary
# directory removed on exit.
output_dir() {
    if [ -n "$1" ]; then
        out=$1
        mkdir -p "$out"
    else
        out=$(mktemp -d)
        trap 'rm -rf "$out"' EXIT
    fi
}
