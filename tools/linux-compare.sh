#!/usr/bin/env bash
# Runs the patched Linux 6.12 guest (guest/linux/build.sh) under stalewalk
# once per kpgtable_free= mode, with the vIOMMU and an SVA DMA test device,
# and prints the three reports side by side (stalewalk compare).
#
# Needs a host with hardware virtualization (Linux cannot boot on KVM that
# emulates guest kernel mode, see KVM-NOTES.md) and the cached kernel build.
#
# Usage: tools/linux-compare.sh [extra stalewalk compare flags, e.g. --report json]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! paths=$(bash guest/linux/build.sh --check 2>/dev/null); then
    echo "tools/linux-compare.sh: no cached kernel build: run guest/linux/build.sh first" >&2
    exit 2
fi
vmlinux=$(echo "$paths" | sed -n 's/^vmlinux[:=] *//p' | head -n1)
initrd=$(echo "$paths" | sed -n 's/^initramfs[:=] *//p' | head -n1)
if [ ! -f "$vmlinux" ] || [ ! -f "$initrd" ]; then
    echo "tools/linux-compare.sh: cannot find vmlinux/initramfs in: $paths" >&2
    exit 2
fi
cargo build --release --bin stalewalk >&2
exec ./target/release/stalewalk compare --scenario linux-kpgtable \
    --kernel "$vmlinux" --initrd "$initrd" --cpu-profile host --memory 1G --cpus 2 \
    --sva-dev --show-serial \
    --cmdline "console=ttyS0 intel_iommu=on,sm_on kpgtable_hint_port=0xf0 reboot=k" \
    "$@"
