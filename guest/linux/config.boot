# stalewalk "boot" guest kernel: options on top of tinyconfig, for KVM that
# emulates guest kernel mode (KVM-NOTES.md): every kernel instruction costs,
# so the kernel carries exactly what the tests need and nothing that runs
# at boot for nothing. build.sh checks that each line below survives
# olddefconfig.

# 64-bit, one CPU, PVH entry (the VMM loads the ELF vmlinux), KVM clock.
CONFIG_64BIT=y
CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y
CONFIG_HYPERVISOR_GUEST=y
CONFIG_PVH=y
CONFIG_PARAVIRT=y
CONFIG_KVM_GUEST=y
# CONFIG_SMP is not set
# 100 timer ticks a second, not 250: each tick is emulated kernel work, and
# on a loaded host a starved guest spent most of its CPU share on ticks;
# and none while it idles.
CONFIG_HZ_100=y
CONFIG_NO_HZ_IDLE=y
# CONFIG_CPU_MITIGATIONS is not set
# CONFIG_JUMP_LABEL is not set
# CONFIG_X86_KERNEL_IBT is not set
# CONFIG_PERF_EVENTS_INTEL_UNCORE is not set
# CONFIG_PERF_EVENTS_INTEL_RAPL is not set
# CONFIG_PERF_EVENTS_INTEL_CSTATE is not set
# CONFIG_SWAP is not set

# Console and the guest's own timestamps (how boot time is measured).
CONFIG_PRINTK=y
CONFIG_PRINTK_TIME=y
CONFIG_KALLSYMS=y
CONFIG_TTY=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_SERIAL_8250_NR_UARTS=1
CONFIG_SERIAL_8250_RUNTIME_UARTS=1
# CONFIG_SERIAL_8250_PCI is not set
# CONFIG_SERIAL_8250_EXAR is not set
# CONFIG_SERIAL_8250_PERICOM is not set
# CONFIG_UNIX98_PTYS is not set
# CONFIG_LEGACY_PTYS is not set
# CONFIG_SERIAL_8250_LPSS is not set
# CONFIG_SERIAL_8250_MID is not set
# CONFIG_VT is not set
# CONFIG_INPUT is not set
# CONFIG_SERIO is not set
# CONFIG_HID_SUPPORT is not set

# Userspace: the busybox initramfs (uncompressed: no decompressor at all).
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_BLK_DEV_INITRD=y
# CONFIG_RD_GZIP is not set
# CONFIG_RD_BZIP2 is not set
# CONFIG_RD_LZMA is not set
# CONFIG_RD_XZ is not set
# CONFIG_RD_LZO is not set
# CONFIG_RD_LZ4 is not set
# CONFIG_RD_ZSTD is not set
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_DEVTMPFS=y
CONFIG_DEVTMPFS_MOUNT=y
CONFIG_FUTEX=y
CONFIG_MULTIUSER=y

# Platform: PCIe with ECAM (MCFG), ACPI (MADT, DMAR), MSI/MSI-X.
CONFIG_PCI=y
CONFIG_PCI_MSI=y
CONFIG_PCI_MMCONFIG=y
CONFIG_ACPI=y
# CONFIG_ACPI_AC is not set
# CONFIG_ACPI_BATTERY is not set
# CONFIG_ACPI_BUTTON is not set
# CONFIG_ACPI_FAN is not set
# CONFIG_ACPI_THERMAL is not set
# CONFIG_ACPI_PROCESSOR is not set
# CONFIG_ACPI_TABLE_UPGRADE is not set
# CONFIG_PCIEASPM is not set
# CONFIG_VGA_ARB is not set
# CONFIG_INTEL_MEI is not set

# VT-d in scalable mode with SVA, and what an SVA device needs.
CONFIG_IOMMU_SUPPORT=y
CONFIG_INTEL_IOMMU=y
CONFIG_INTEL_IOMMU_DEFAULT_ON=y
CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON=y
CONFIG_INTEL_IOMMU_SVM=y
CONFIG_IOMMU_SVA=y
CONFIG_PCI_PASID=y
CONFIG_PCI_ATS=y
CONFIG_PCI_PRI=y
# CONFIG_INTEL_IOMMU_PERF_EVENTS is not set

# virtio devices of the VMM.
CONFIG_BLOCK=y
CONFIG_BLK_DEV=y
CONFIG_VIRTIO_MENU=y
CONFIG_VIRTIO=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y

# BLAKE2s (the RNG's hash) runs its self test at boot unless the crypto
# manager's tests are off: 34 s measured here.
CONFIG_CRYPTO=y
CONFIG_CRYPTO_MANAGER_DISABLE_TESTS=y

# Test plumbing: debugfs counters, loadable test modules.
CONFIG_DEBUG_FS=y
CONFIG_MODULES=y
CONFIG_MODULE_UNLOAD=y
CONFIG_KPGTABLE_TEST=m
CONFIG_DEBUG_INFO_NONE=y
