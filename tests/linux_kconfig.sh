#!/usr/bin/env bash
# The series' gating, checked with the kernel's own Kconfig on the patched
# source tree guest/linux/build.sh keeps for the boot config:
#
#   x86, boot + debug configs      ASYNC_KERNEL_PGTABLE_FREE=y,
#                                  DEBUG_KPGTABLE_FREE=y (the control: the
#                                  symbols exist and the tests' kernels
#                                  defer);
#   x86, boot config without SVA   (INTEL_IOMMU_SVM off, so IOMMU_SVA off)
#                                  ASYNC_KERNEL_PGTABLE_FREE, DEBUG_KPGTABLE_
#                                  FREE and KPGTABLE_TEST all off: kernel
#                                  page tables are freed at once, as before
#                                  the series, and no test knob exists;
#   arm64 with SMMUv3 SVA          IOMMU_SVA=y but ASYNC_KERNEL_PGTABLE_FREE
#                                  off: only x86 selects deferral (SMMUv3
#                                  never walks kernel page tables).
#
# Only configuration runs (make tinyconfig, merge, olddefconfig in scratch
# object directories): about 20 s, no compiler work beyond Kconfig's
# probes. Prints one "SKIPPED: linux-kconfig: <why>" line and exits 0
# where linux-source-6.12 is not installed; with STALEWALK_REQUIRE_ALL=1
# that is a failure. Any failed check exits 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=linux-kconfig

# skip and fail (tests/lib/common.sh).
test_name=$name
source "$root/tests/lib/common.sh"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The boot config's patched tree, brought to the current series (seconds
# where it holds another one; build.sh unpacks the source package once).
[ -f /usr/src/linux-source-6.12.tar.xz ] ||
    skip "linux-source-6.12 is not installed (guest/linux/build.sh installs it)"
src=$(STALEWALK_NO_APT=1 bash "$root/guest/linux/build.sh" --config boot --source-only 2>"$scratch/src.log" |
    sed -n 's/^src=//p') || true
[ -n "$src" ] && [ -d "$src" ] || {
    echo "$name: FAIL: guest/linux/build.sh --config boot --source-only failed: $(tail -n 3 "$scratch/src.log")"
    exit 1
}

# configure NAME ARCH FRAGMENT...: tinyconfig + the fragments, in order,
# then olddefconfig, in $scratch/NAME.
configure() {
    local dir=$scratch/$1 arch=$2
    shift 2
    make -C "$src" O="$dir" ARCH="$arch" -s tinyconfig >"$dir.log" 2>&1 ||
        {
            fail "$arch tinyconfig failed: $(tail -n 3 "$dir.log")"
            return
        }
    "$src"/scripts/kconfig/merge_config.sh -m -O "$dir" "$dir/.config" "$@" >>"$dir.log" 2>&1
    make -C "$src" O="$dir" ARCH="$arch" -s olddefconfig >>"$dir.log" 2>&1 ||
        fail "$arch olddefconfig failed: $(tail -n 3 "$dir.log")"
}

# want NAME SYMBOL y|m|off
want() {
    local got
    got=$(sed -n "s/^CONFIG_$2=//p" "$scratch/$1/.config")
    [ -n "$got" ] || got=off
    if [ "$got" = "$3" ]; then
        echo "$name: $1: CONFIG_$2=$got"
    else
        fail "$1: CONFIG_$2=$got, want $3"
    fi
}

linux=$root/guest/linux
configure x86-debug x86_64 "$linux/config.boot" "$linux/config.debug"
want x86-debug IOMMU_SVA y
want x86-debug ASYNC_KERNEL_PGTABLE_FREE y
want x86-debug DEBUG_KPGTABLE_FREE y

printf '# CONFIG_INTEL_IOMMU_SVM is not set\n' >"$scratch/no-sva.frag"
configure x86-no-sva x86_64 "$linux/config.boot" "$scratch/no-sva.frag"
want x86-no-sva INTEL_IOMMU y
want x86-no-sva IOMMU_SVA off
want x86-no-sva ASYNC_KERNEL_PGTABLE_FREE off
want x86-no-sva DEBUG_KPGTABLE_FREE off
want x86-no-sva KPGTABLE_TEST off

printf 'CONFIG_PCI=y\nCONFIG_IOMMU_SUPPORT=y\nCONFIG_ARM_SMMU_V3=y\nCONFIG_ARM_SMMU_V3_SVA=y\n' \
    >"$scratch/arm64-sva.frag"
configure arm64-sva arm64 "$scratch/arm64-sva.frag"
want arm64-sva ARM_SMMU_V3_SVA y
want arm64-sva IOMMU_SVA y
want arm64-sva ASYNC_KERNEL_PGTABLE_FREE off

if [ "$failures" -gt 0 ]; then
    echo "$name: $failures check(s) failed"
    exit 1
fi
echo "$name: ok"
