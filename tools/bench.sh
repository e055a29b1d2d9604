#!/usr/bin/env bash
# bench.sh - every benchmark behind docs/PERFORMANCE.md, in one command, and
# the document's tables rewritten from the results.
#
#   vIOMMU model     criterion: viommu/benches/translate.rs, invalidate.rs
#   device DMA       the SVA device's 64 MiB copy (devices, ignored test
#                    perf_copy_64m); virtio-blk via tools/bench-virtio.sh
#   VMM              start to first guest instruction, to exit, peak RSS and
#                    RSS beyond guest RAM, side by side with QEMU microvm
#                    booting the same ELF (tools/bench/boot.py)
#   guest patch      the mini guest's churn under kpgtable_free=eager/deferred
#   tracing          the trace writer's costs (stalewalk-tools ignored tests)
#                    and mini-guest runs traced vs untraced
#   profiles         perf (or callgrind) of the paths that miss their target
#
# Things that are compared run interleaved in the same invocation (A, B, A,
# B, ...) and the document reports medians, spread and per-round ratios.
# The raw results stay under OUT (target/bench, or target/bench-smoke);
# tools/bench/report.py writes the generated blocks of the document
# (between <!-- bench:NAME --> markers; all other text is kept).
#
# usage: tools/bench.sh [--smoke] [--rounds N] [--no-docs]
#   --smoke     a short run of every step (about a minute once built) that
#               writes OUT/PERFORMANCE.md instead of docs/PERFORMANCE.md
#               (tests/bench_smoke.sh); it installs nothing
#   --rounds N  rounds of every interleaved measurement (default 10 for the
#               VMM start-up, 3 for criterion, 5 for the others)
#   --no-docs   leave docs/PERFORMANCE.md alone (results in OUT only)
# Needs /dev/kvm, python3, gcc (the mini guest), GNU time; as root on
# Debian it installs qemu-system-x86 and time when they are missing.
set -euo pipefail

smoke=0
docs=1
rounds=""
while [ $# -gt 0 ]; do
    case $1 in
        --smoke) smoke=1; docs=0 ;;
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --no-docs) docs=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
load_start=$(cut -d" " -f1 /proc/loadavg)
invocation="tools/bench.sh${*:+ $*}"
[ "$smoke" = 1 ] && invocation="tools/bench.sh --smoke"

if [ "$smoke" = 1 ]; then
    out=${BENCH_OUT:-$root/target/bench-smoke}
    crit_rounds=1
    crit_args=(--warm-up-time 0.1 --measurement-time 0.2 --sample-size 10)
    boot_runs=${rounds:-2}
    runs=${rounds:-1}
    virtio_mib=8
    churn_knob=" churn_rounds=2"
else
    out=${BENCH_OUT:-$root/target/bench}
    crit_rounds=${rounds:-3}
    crit_args=(--warm-up-time 1 --measurement-time 2 --sample-size 20)
    boot_runs=${rounds:-10}
    runs=${rounds:-5}
    virtio_mib=64
    churn_knob=""
fi
# OUT is emptied first: refuse a directory that is not a previous OUT.
if [ -e "$out" ] && ! { [ -d "$out" ] && { [ -z "$(ls -A "$out")" ] || [ -f "$out/commands.txt" ]; }; }; then
    echo "bench.sh: $out exists and is not a bench.sh output directory; not emptying it" >&2
    exit 1
fi
rm -rf "$out"
mkdir -p "$out/criterion" "$out/reports" "$out/profiles"
: >"$out/commands.txt"

log() { echo "bench.sh [$(($(date +%s) - started)) s]: $*" >&2; }
# record CMD...: notes the command for the document, then runs it.
record() {
    local q
    q=$(printf '%q ' "$@")
    echo "${q% }" | sed "s|$root/||g; s|$out|OUT|g; s| --message-format=json-render-diagnostics||" >>"$out/commands.txt"
    "$@"
}
# note TEXT: a command line for the document that a loop runs many times.
note() { echo "$*" >>"$out/commands.txt"; }

# ------------------------------------------------------------ prerequisites
[ -c /dev/kvm ] || { echo "bench.sh: /dev/kvm is missing: the VMM rows need KVM" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench.sh: python3 is missing" >&2; exit 1; }
install_pkg() {
    # Only a full run, as root, on Debian/Ubuntu installs anything.
    if [ "$smoke" = 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing $* from the distribution"
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >"$out/apt.log" 2>&1 ||
            { apt-get update >>"$out/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >>"$out/apt.log" 2>&1; } ||
            log "could not install $* (see $out/apt.log)"
    fi
}
[ -x /usr/bin/time ] || install_pkg time
[ -x /usr/bin/time ] || { echo "bench.sh: GNU time (/usr/bin/time) is missing: apt-get install -y time" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || install_pkg qemu-system-x86
qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || log "no qemu-system-x86_64: the VMM rows show stalewalk only"

# ------------------------------------------------------------------ builds
log "building (release)"
record cargo build --release -p stalewalk >&2
sw=$root/target/release/stalewalk
elf=$(ls -t "$root"/target/release/build/stalewalk-*/out/mini.elf | head -n 1)
# exes CARGO-ARGS...: builds with cargo CARGO-ARGS (progress and
# errors on stderr) and prints "name executable" for each executable it
# produced, only those of the target kinds in the array `kinds` when it is
# not empty.
kinds=()
exes() {
    record cargo "$@" --message-format=json-render-diagnostics |
        python3 -c 'import json,sys
kinds = sys.argv[1:]
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and \
            (not kinds or set(kinds) & set(m["target"]["kind"])):
        print(m["target"]["name"], m["executable"])' "${kinds[@]}"
}
kinds=(bench)
crit_bins=$(exes bench -p viommu --no-run)
kinds=()
dev_bin=$(exes test --release -p devices --lib --no-run | awk '{print $2}' | head -n 1)
tool_bins=$(exes test --release -p stalewalk-tools --test trace_bench --test trace_roundtrip --no-run)
hot_bin=$(exes build --release -p viommu --example hotpath | awk '$1 == "hotpath" {print $2}')
[ -n "$crit_bins" ] && [ -n "$dev_bin" ] && [ -n "$tool_bins" ] && [ -n "$hot_bin" ] ||
    { echo "bench.sh: a build produced no executable" >&2; exit 1; }
log "built"

# --------------------------------------------------------- vIOMMU (criterion)
for r in $(seq "$crit_rounds"); do
    log "criterion round $r/$crit_rounds"
    while read -r name bin; do
        [ "$r" = 1 ] && note "cargo bench -p viommu --bench $name -- ${crit_args[*]} --noplot   # x$crit_rounds rounds"
        CRITERION_HOME="$out/criterion/work" "$bin" --bench "${crit_args[@]}" --noplot >>"$out/criterion.txt" 2>&1 ||
            { tail -n 30 "$out/criterion.txt" >&2; echo "bench.sh: criterion bench $name failed" >&2; exit 1; }
    done <<<"$crit_bins"
    mv "$out/criterion/work" "$out/criterion/round-$r"
done

# Instructions per operation (load-independent): callgrind counts of the
# viommu/examples/hotpath driver at two repetition counts, difference
# divided by the difference in repetitions.
if command -v valgrind >/dev/null; then
    log "callgrind instruction counts"
    mkdir -p "$out/callgrind"
    note "valgrind --tool=callgrind <viommu example hotpath> OP N   # N = 1000 and 11000 (descriptors: 10 and 110 batches of 1023)"
    for op in iotlb_hit iotlb_hit_checker pde_hit_speculative full_walk_4level full_walk_5level walker_4level descriptors; do
        n1=1000 n2=11000
        [ "$op" = descriptors ] && n1=10 n2=110
        counts=()
        for n in $n1 $n2; do
            valgrind --tool=callgrind --callgrind-out-file="$out/callgrind/$op-$n.out" "$hot_bin" "$op" "$n" \
                >/dev/null 2>"$out/callgrind/$op-$n.err" || { counts=(); break; }
            counts+=("$(sed -n -E 's/^(summary|totals): *([0-9]+).*/\2/p' "$out/callgrind/$op-$n.out" | head -n 1)")
        done
        [ "${#counts[@]}" = 2 ] && echo "$op $n1 $n2 ${counts[0]} ${counts[1]}" >>"$out/callgrind.txt"
    done
else
    echo "valgrind is not installed" >"$out/callgrind.skip"
fi

# ------------------------------------------------------- device DMA (copy)
log "SVA copy, $runs invocation(s)"
note "cargo test --release -p devices --lib -- --ignored --nocapture perf_   # x$runs"
for _ in $(seq "$runs"); do
    "$dev_bin" --ignored --nocapture perf_ >>"$out/dma.txt" 2>&1 ||
        { tail -n 30 "$out/dma.txt" >&2; echo "bench.sh: the SVA copy measurement failed" >&2; exit 1; }
done

# ---------------------------------------------------------- virtio-blk
if [ -x tools/bench-virtio.sh ] || [ -f tools/bench-virtio.sh ]; then
    log "virtio-blk, $runs round(s)"
    note "BENCH_MIB=$virtio_mib STALEWALK_BIN=target/release/stalewalk tools/bench-virtio.sh $runs"
    BENCH_MIB=$virtio_mib STALEWALK_BIN=$sw bash tools/bench-virtio.sh "$runs" >"$out/virtio.txt" 2>"$out/virtio.err" ||
        { cat "$out/virtio.err" >&2; echo "bench.sh: tools/bench-virtio.sh failed" >&2; exit 1; }
else
    echo "tools/bench-virtio.sh is not in this tree" >"$out/virtio.skip"
fi

# ------------------------------------------------------- VMM start-up
log "VMM start-up, $boot_runs round(s)"
note "python3 tools/bench/boot.py --runs $boot_runs --stalewalk target/release/stalewalk --elf target/release/build/stalewalk-*/out/mini.elf --qemu qemu-system-x86_64 --out OUT/boot.json"
python3 tools/bench/boot.py --runs "$boot_runs" --stalewalk "$sw" --elf "$elf" --qemu "$qemu" --out "$out/boot.json"

# -------------------------------------------------- guest patch: churn
log "churn eager vs deferred, $runs round(s)"
note "target/release/stalewalk run --sva-dev 2 --scenario churn --cmdline 'kpgtable_free=eager|deferred$churn_knob' --report-file FILE   # x$runs, interleaved"
for i in $(seq "$runs"); do
    for pol in eager deferred; do
        "$sw" run --sva-dev 2 --scenario churn --cmdline "kpgtable_free=$pol$churn_knob" \
            --report-file "$out/reports/churn-$pol-$i.json" >"$out/churn.log" 2>&1 ||
            { tail -n 20 "$out/churn.log" >&2; echo "bench.sh: churn ($pol) failed" >&2; exit 1; }
    done
done

# ------------------------------------------------------------ tracing
log "tracing"
while read -r name bin; do
    note "cargo test --release -p stalewalk-tools --test $name -- --ignored --nocapture"
    "$bin" --ignored --nocapture >>"$out/trace-bench.txt" 2>&1 ||
        { tail -n 30 "$out/trace-bench.txt" >&2; echo "bench.sh: $name failed" >&2; exit 1; }
done <<<"$tool_bins"
trace_rounds=$runs
[ "$smoke" = 0 ] && trace_rounds=$((runs > 3 ? 3 : runs))
note "target/release/stalewalk run --sva-dev --scenario exploit|churn --cmdline 'kpgtable_free=sync$churn_knob' [--trace FILE] --report-file FILE   # interleaved"
echo "{}" >"$out/trace-records.json"
for scen in exploit churn; do
    n=$runs
    [ "$scen" = churn ] && n=$trace_rounds
    for i in $(seq "$n"); do
        for mode in plain traced; do
            extra=()
            [ "$mode" = traced ] && extra=(--trace "$out/$scen.trace")
            "$sw" run --sva-dev --scenario "$scen" --cmdline "kpgtable_free=sync$churn_knob" "${extra[@]}" \
                --report-file "$out/reports/trace-${scen}_$mode-$i.json" >"$out/trace-run.log" 2>&1 || true
            [ -s "$out/reports/trace-${scen}_$mode-$i.json" ] ||
                { tail -n 20 "$out/trace-run.log" >&2; echo "bench.sh: $scen ($mode) wrote no report" >&2; exit 1; }
        done
    done
    python3 - "$out/$scen.trace" "$out/trace-records.json" "$scen" <<'EOF'
import json, sys
trace, meta, scen = sys.argv[1:]
with open(trace, encoding="utf-8") as f:
    end = json.loads(f.readlines()[-1])
m = json.load(open(meta))
m[scen] = {"records": end.get("records"), "dropped": end.get("dropped")}
json.dump(m, open(meta, "w"))
EOF
    rm -f "$out/$scen.trace"
done

# ----------------------------------------------------------- profiles
# perf when it can record here (perf_event_paranoid <= 2 lets a user profile
# its own processes), else callgrind; skipped in --smoke.
profile() { # NAME CMD...
    local name=$1; shift
    if perf record -q -F 1999 -o "$out/profiles/$name.data" -- "$@" >/dev/null 2>"$out/profiles/$name.err"; then
        perf report -i "$out/profiles/$name.data" --stdio --no-children --sort symbol --percent-limit 2 2>/dev/null |
            grep -E '^ +[0-9.]+%' | sed -E 's/ +- +- *$//' | head -n 12 | cut -c1-150 >"$out/profiles/$name.txt"
        rm -f "$out/profiles/$name.data"
    elif command -v valgrind >/dev/null; then
        valgrind --tool=callgrind --callgrind-out-file="$out/profiles/$name.cg" "$@" >/dev/null 2>>"$out/profiles/$name.err"
        callgrind_annotate "$out/profiles/$name.cg" 2>/dev/null | grep -E '^ *[0-9,]+ ' | head -n 13 | cut -c1-150 >"$out/profiles/$name.txt"
    fi
}
if [ "$smoke" = 0 ]; then
    log "profiles"
    translate_bin=$(awk '$1 == "translate" {print $2}' <<<"$crit_bins")
    for b in iotlb_hit full_walk_4level walker_4level; do
        note "perf record -F 1999 -- <translate bench> --bench --profile-time 3 '^translate/$b\$'"
        profile "$b" "$translate_bin" --bench --profile-time 3 "^translate/$b\$"
    done
    note "perf record -F 1999 -- <translate bench> --bench --profile-time 3 '^queue/piotlb_page_descriptors\$'"
    profile piotlb_page_descriptors "$translate_bin" --bench --profile-time 3 '^queue/piotlb_page_descriptors$'
    note "perf record -F 1999 -- <devices test binary> --ignored perf_"
    profile sva_copy "$dev_bin" --ignored perf_
    # The set-up before the first KVM_RUN, phase by phase (strace), else
    # a perf profile of whole runs.
    if command -v strace >/dev/null; then
        record python3 tools/bench/phases.py "$sw" 5 >"$out/profiles/vmm_start.txt"
    else
        note "perf record -F 1999 -- bash -c 'for i in \$(seq 20); do target/release/stalewalk run --memory 128M; done'"
        profile vmm_start bash -c 'for i in $(seq 20); do "$0" run --memory 128M >/dev/null 2>&1; done' "$sw"
    fi
    note "perf record -F 1999 -- <translate bench> --bench --profile-time 3 '^translate/miss_fill_plus_pasid_flush_checker\$'"
    profile checker "$translate_bin" --bench --profile-time 3 '^translate/miss_fill_plus_pasid_flush_checker$'
fi

# ----------------------------------------------------------- the document
finished=$(date +%s)
python3 - "$out/meta.json" "$invocation" "$((finished - started))" "$out/commands.txt" "$load_start" "$(nproc)" <<'EOF'
import json, os, platform, subprocess, sys, time
meta, invocation, duration, commands, load_start, nproc = sys.argv[1:]
cpu = "unknown CPU"
with open("/proc/cpuinfo", encoding="utf-8") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
kvm = ",".join(sorted(m for m in os.listdir("/sys/module") if m.startswith("kvm"))) or "none"
json.dump({
    "invocation": invocation,
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "commit": git("rev-parse", "--short", "HEAD"),
    "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    "cpu": cpu,
    "nproc": int(nproc),
    "uname": " ".join(platform.uname()[i] for i in (0, 2, 4)),
    "kvm": kvm,
    "load_start": load_start,
    "load_end": open("/proc/loadavg").read().split()[0],
    "duration_s": int(duration),
    "commands": open(commands).read().splitlines(),
}, open(meta, "w"), indent=1)
EOF
if [ "$docs" = 1 ]; then
    python3 tools/bench/report.py "$out" docs/PERFORMANCE.md docs/PERFORMANCE.md
    log "rewrote docs/PERFORMANCE.md"
else
    python3 tools/bench/report.py "$out" docs/PERFORMANCE.md "$out/PERFORMANCE.md"
    log "wrote $out/PERFORMANCE.md"
fi
log "done in $(($(date +%s) - started)) s"
