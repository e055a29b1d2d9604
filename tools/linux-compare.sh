#!/usr/bin/env bash
# Runs the patched Linux 6.12 guest (guest/linux/build.sh) under stalewalk
# once per kpgtable_free= mode, with the vIOMMU in scalable mode and an SVA
# DMA test device, and prints the three reports side by side (stalewalk
# compare).
#
# Any KVM host: it boots the "boot" config (build.sh --config boot), made
# for KVM that emulates guest kernel mode (these development machines) and
# fine on hardware virtualization too, with the command line in
# guest/linux/config.boot.cmdline. STALEWALK_LINUX_CONFIG=default boots the
# default config instead (hardware-virtualization hosts: it is slow where
# kernel mode is emulated), with the host CPU profile and 2 vCPUs.
#
# Usage: tools/linux-compare.sh [extra stalewalk compare flags, e.g. --report json]
set -euo pipefail
cd "$(dirname "$0")/.."

config=${STALEWALK_LINUX_CONFIG:-boot}
if ! paths=$(bash guest/linux/build.sh --config "$config" --check 2>/dev/null); then
    echo "tools/linux-compare.sh: no cached '$config' kernel build: run guest/linux/build.sh --config $config first" >&2
    exit 2
fi
vmlinux=$(sed -n 's/^vmlinux=//p' <<<"$paths")
initrd=$(sed -n 's/^initramfs=//p' <<<"$paths")
if [ ! -f "$vmlinux" ] || [ ! -f "$initrd" ]; then
    echo "tools/linux-compare.sh: cannot find vmlinux/initramfs in: $paths" >&2
    exit 2
fi
cmdline=$(grep -v '^#' guest/linux/config.boot.cmdline | tr '\n' ' ')
if [ "$config" = boot ]; then
    machine=(--memory 64M --cpus 1)
    # The smaller page-table test tests/linux_kvm.sh runs (see there).
    cmdline+=" stalewalk.pmds=16 stalewalk.bursts=4 stalewalk.pud=0"
else
    machine=(--cpu-profile host --memory 1G --cpus 2)
fi
cargo build --release --bin stalewalk >&2
exec "${CARGO_TARGET_DIR:-target}"/release/stalewalk compare --scenario linux-kpgtable \
    --kernel "$vmlinux" --initrd "$initrd" "${machine[@]}" --sva-dev --timeout 900 \
    --cmdline "$cmdline" "$@"
