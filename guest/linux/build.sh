#!/usr/bin/env bash
# Build the stalewalk guest kernel: Debian's linux-source-6.12 with the
# series in patches/, one of four configs, the kpgtable_test and sva_dma
# modules, the sva-dma-test program and a busybox initramfs.
#
# Configs (--config NAME):
#   default  x86_64_defconfig + config.fragment; vmlinux, bzImage and a
#            gzip initramfs (hardware-virtualization hosts, QEMU).
#   boot     tinyconfig + config.boot: only what the tests need, for KVM
#            that emulates guest kernel mode (every kernel instruction
#            costs); vmlinux (what stalewalk boots), bzImage (the same
#            kernel for QEMU: tests/vtd_compare.sh) and an UNCOMPRESSED
#            initramfs (unpacking gzip is kernel-mode work: 290 s
#            measured here).
#   debug    boot + config.debug (lockdep, KASAN, memory hot-remove,
#            SMP; issue 15's QEMU TCG tests); vmlinux, bzImage and an
#            uncompressed initramfs.
#   nodebug  boot + config.nodebug: no test knobs (no DEBUG_KPGTABLE_FREE,
#            no kpgtable_test module); vmlinux, bzImage and an
#            uncompressed initramfs.
#
# Output goes to ${STALEWALK_CACHE:-$HOME/.cache/stalewalk}/linux-<hash>
# (default), linux-boot-<hash>, linux-debug-<hash>, where <hash> covers the
# config name, the source version, the series, the config files, the
# module and initramfs sources and this script. A run whose hash is
# already built only prints the paths.
#
# Each config has its own patched source and object tree (default:
# .../work/linux-<version>/{src,obj}; boot and debug:
# .../work/linux-<version>/<config>/{src,obj}) and its own lock, so configs
# build independently. The patched source is synced by content, so a change
# to one patch rebuilds only what that patch touches.
#
# Usage: build.sh [--config default|boot|debug|nodebug] [--check|--source-only]
#   --check        build nothing: print the paths and exit 0 if the build
#                  for the current inputs is in the cache, exit 3 if it is
#                  not.
#   --source-only  bring the config's patched source tree to the current
#                  series (seconds when it held another one) and print
#                  src=<dir>; configure and build nothing (tests/
#                  linux_kconfig.sh runs Kconfig on it).
#
# Environment:
#   STALEWALK_CACHE   cache root (default: $HOME/.cache/stalewalk)
#   STALEWALK_JOBS    make -j value (default: 2; the build runs at nice 19)
#   STALEWALK_NO_APT  set to 1 to skip installing build dependencies
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${STALEWALK_CACHE:-$HOME/.cache/stalewalk}
jobs=${STALEWALK_JOBS:-2}
src_pkg=linux-source-6.12
tarball=/usr/src/${src_pkg}.tar.xz

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage="usage: build.sh [--config default|boot|debug|nodebug] [--check|--source-only]"
check_only=0
source_only=0
config=default
while (($#)); do
	case $1 in
	--check) check_only=1 ;;
	--source-only) source_only=1 ;;
	--config)
		(($# >= 2)) || die "$usage"
		config=$2
		shift
		;;
	--config=*) config=${1#--config=} ;;
	-h | --help)
		echo "$usage"
		exit 0
		;;
	*) die "$usage" ;;
	esac
	shift
done

# Per config: the base make target, the fragments merged on top (in
# order), the name prefix in the cache, whether a bzImage is built, how
# the initramfs is compressed, and whether it has the kpgtable_test module.
want_kpgtable_test=1
case $config in
default)
	base_target=x86_64_defconfig
	fragments=("$here/config.fragment")
	prefix=linux
	want_bzimage=1
	initramfs_name=initramfs.cpio.gz
	;;
boot)
	base_target=tinyconfig
	fragments=("$here/config.boot")
	prefix=linux-boot
	want_bzimage=1
	initramfs_name=initramfs.cpio
	;;
debug)
	base_target=tinyconfig
	fragments=("$here/config.boot" "$here/config.debug")
	prefix=linux-debug
	want_bzimage=1
	initramfs_name=initramfs.cpio
	;;
nodebug)
	base_target=tinyconfig
	fragments=("$here/config.boot" "$here/config.nodebug")
	prefix=linux-nodebug
	want_bzimage=1
	initramfs_name=initramfs.cpio
	want_kpgtable_test=0
	;;
*) die "unknown config '$config' ($usage)" ;;
esac

# ---------------------------------------------------------------- deps --
# Packages, and a file each provides, so a machine that has them all
# does not need apt at all.
deps=(
	"build-essential:/usr/bin/make"
	"bc:/usr/bin/bc"
	"bison:/usr/bin/bison"
	"flex:/usr/bin/flex"
	"libelf-dev:/usr/include/libelf.h"
	"libssl-dev:/usr/include/openssl/ssl.h"
	"cpio:/usr/bin/cpio"
	"busybox-static:/bin/busybox"
	"xz-utils:/usr/bin/xz"
	"dwarves:/usr/bin/pahole"
	"rsync:/usr/bin/rsync"
	"kmod:/usr/bin/kmod"
	"gzip:/usr/bin/gzip"
	"${src_pkg}:${tarball}"
)

install_deps() {
	local missing=() d
	for d in "${deps[@]}"; do
		[[ -e ${d#*:} ]] || missing+=("${d%%:*}")
	done
	((${#missing[@]})) || return 0
	[[ ${STALEWALK_NO_APT:-0} == 1 ]] && die "missing packages: ${missing[*]}"
	log "installing ${missing[*]}"
	apt-get update -qq
	# Debian 12 ships linux-source-6.12 in bookworm-security and
	# bookworm-backports; enable backports only if apt cannot see it.
	if ! apt-cache policy "$src_pkg" | grep -q 'Candidate: [0-9]'; then
		log "enabling bookworm-backports for $src_pkg"
		echo 'deb http://deb.debian.org/debian bookworm-backports main' \
			>/etc/apt/sources.list.d/stalewalk-backports.list
		apt-get update -qq
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >&2
}

if ((check_only)); then
	version=$(dpkg-query -W -f='${Version}' "$src_pkg" 2>/dev/null) || true
	if [[ -z $version || ! -f $tarball ]]; then
		log "$src_pkg is not installed"
		exit 3
	fi
else
	install_deps
	version=$(dpkg-query -W -f='${Version}' "$src_pkg")
	[[ -n $version && -f $tarball ]] || die "$src_pkg is not installed"
fi

# --------------------------------------------------------------- hash --
shopt -s nullglob
series=("$here"/patches/*.patch)
# The cover letter (0000-*) is part of the series (and of the hash) but
# has no diff to apply.
patches=()
for p in "${series[@]}"; do
	[[ ${p##*/} == 0000-* ]] || patches+=("$p")
done
((${#patches[@]})) || die "no patches in $here/patches"
# The boot and debug configs also carry boot-patches/: workarounds for KVM
# that emulates guest kernel mode, each off unless its command-line switch
# is given (numbered 9xxx so they sort, and come off, after the series).
if [[ $config != default ]]; then
	patches+=("$here"/boot-patches/*.patch)
fi
inputs=("$here/build.sh" "${fragments[@]}" "${series[@]}" "${patches[@]}"
	"$here"/sva_dma/*.[ch] "$here"/sva_dma/Makefile "$here"/sva_dma/Kbuild
	"$here"/initramfs/*)
hash=$({
	echo "config $config"
	echo "$src_pkg $version"
	dpkg-query -W -f='${Version}\n' busybox-static 2>/dev/null || echo no-busybox
	for f in "${inputs[@]}"; do
		printf '%s\n' "${f#"$here"/}"
		sha256sum <"$f"
	done
} | sha256sum | cut -c1-16)
out=$cache_root/$prefix-$hash

print_paths() {
	echo "kernel_dir=$out"
	echo "vmlinux=$out/vmlinux"
	if ((want_bzimage)); then
		echo "bzimage=$out/bzImage"
	fi
	echo "initramfs=$out/$initramfs_name"
	if ((want_kpgtable_test)); then
		echo "kpgtable_test=$out/kpgtable_test.ko"
	fi
	cat <<EOF
sva_dma=$out/sva_dma.ko
sva_dma_test=$out/sva-dma-test
config=$out/config
EOF
}

if [[ -f $out/.complete ]] && ((!source_only)); then
	log "up to date ($out)"
	print_paths
	exit 0
fi
if ((check_only)); then
	log "not built yet: $out"
	exit 3
fi

mkdir -p "$cache_root"
# One lock per config (the default keeps the name older scripts use): a
# config's source and object tree are its own, so configs can build side
# by side while two builds of one config wait for each other.
if [[ $config == default ]]; then
	exec 9>"$cache_root/build.lock"
else
	exec 9>"$cache_root/build-$config.lock"
fi
flock 9
if [[ -f $out/.complete ]] && ((!source_only)); then
	print_paths
	exit 0
fi

start=$(date +%s)
# The default config's tree stays where it always was (an incremental
# rebuild must find its objects); the others live in a subdirectory.
work=$cache_root/work/linux-$version
if [[ $config != default ]]; then
	work=$work/$config
fi
src=$work/src
obj=$work/obj
mkdir -p "$work" "$obj"

# ------------------------------------------------------ patched source --
# Files a series touches, one per line.
series_files() {
	sed -n -e 's|^--- a/||p' -e 's|^+++ b/||p' "$@" | sort -u
}

# Fast path: src still holds the previous series (a copy is in $applied).
# Take it off with patch -R, put the new one on, and give back their old
# timestamps to files whose content ended up unchanged, so make rebuilds
# only what really changed. Takes seconds instead of minutes.
update_src_in_place() {
	local applied=$work/applied stamps=$work/stamps p f
	[[ -d $src && -d $applied ]] || return 1
	local old=("$applied"/*.patch)
	((${#old[@]})) || return 1
	: >"$stamps"
	while IFS= read -r f; do
		[[ -f $src/$f ]] &&
			printf '%s %s %s\n' "$(sha256sum <"$src/$f" | cut -c1-64)" \
				"$(stat -c %Y "$src/$f")" "$f" >>"$stamps"
	done < <(series_files "${old[@]}")
	for ((i = ${#old[@]} - 1; i >= 0; i--)); do
		patch -d "$src" -p1 -s -R --batch --no-backup-if-mismatch \
			<"${old[i]}" >/dev/null || return 1
	done
	rm -rf "$applied"
	for p in "${patches[@]}"; do
		patch -d "$src" -p1 -s --batch --forward --no-backup-if-mismatch \
			<"$p" || die "patch $(basename "$p") does not apply"
	done
	while read -r sum stamp f; do
		[[ -f $src/$f && $(sha256sum <"$src/$f" | cut -c1-64) == "$sum" ]] &&
			touch -d "@$stamp" "$src/$f"
	done <"$stamps"
	return 0
}

# Slow path: unpack the tarball, patch it, copy by content into src.
update_src_from_tarball() {
	local scratch=$work/scratch top p
	rm -rf "$scratch" "$work/applied"
	mkdir -p "$scratch"
	tar -xJf "$tarball" -C "$scratch"
	top=$(find "$scratch" -mindepth 1 -maxdepth 1 -type d | head -n1)
	for p in "${patches[@]}"; do
		patch -d "$top" -p1 -s --batch --forward <"$p" ||
			die "patch $(basename "$p") does not apply"
	done
	# Files that did not change keep their timestamps, so make only
	# rebuilds what the series changed since the last build.
	mkdir -p "$src"
	rsync -rlp --checksum --delete "$top"/ "$src"/
	rm -rf "$scratch"
}

log "applying ${#patches[@]} patches to $src_pkg $version"
if ! update_src_in_place; then
	log "unpacking $src_pkg (slow path)"
	update_src_from_tarball
fi
mkdir -p "$work/applied"
cp "${patches[@]}" "$work/applied/"
if ((source_only)); then
	echo "src=$src"
	exit 0
fi

# ------------------------------------------------------------- config --
kmake() { nice -n 19 make -C "$src" O="$obj" -j"$jobs" "$@"; }
log "configuring ($config: $base_target + ${fragments[*]##*/})"
kmake -s "$base_target"
"$src"/scripts/kconfig/merge_config.sh -m -O "$obj" "$obj/.config" \
	"${fragments[@]}" >/dev/null
kmake -s olddefconfig
# Every option the fragments set must have survived olddefconfig (where
# two fragments set one option, the later one counts, as in the merge).
declare -A want=() want_from=()
for frag in "${fragments[@]}"; do
	while IFS= read -r line; do
		case $line in
		CONFIG_*=*) sym=${line%%=*} ;;
		"# CONFIG_"*" is not set")
			sym=${line#"# "}
			sym=${sym%% *}
			;;
		*) continue ;;
		esac
		want[$sym]=$line
		want_from[$sym]=${frag##*/}
	done <"$frag"
done
for sym in "${!want[@]}"; do
	line=${want[$sym]}
	if [[ $line == CONFIG_* ]]; then
		grep -qx "$line" "$obj/.config" ||
			die "${want_from[$sym]}: '$line' did not stick (dependency missing?)"
	elif grep -q "^$sym=" "$obj/.config"; then
		die "${want_from[$sym]}: $sym is still enabled"
	fi
done

# -------------------------------------------------------------- build --
targets=(vmlinux modules)
if ((want_bzimage)); then
	targets+=(bzImage)
fi
log "building ${targets[*]} (make -j$jobs at nice 19)"
kmake "${targets[@]}"

log "building sva_dma"
mod=$work/sva_dma
rm -rf "$mod"
mkdir -p "$mod"
cp "$here"/sva_dma/* "$mod"/
# The module must build clean with W=1: compiler and modpost warnings both
# fail the build (the program's Makefile uses -Werror itself).
kmake M="$mod" W=1 modules 2>&1 | tee "$work/sva_dma.log"
if grep -qi 'warning' "$work/sva_dma.log"; then
	grep -i 'warning' "$work/sva_dma.log" >&2
	die "sva_dma built with warnings (full log: $work/sva_dma.log)"
fi
nice -n 19 make -C "$mod" -s sva-dma-test

# ---------------------------------------------------------- initramfs --
log "building initramfs"
root=$work/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,lib/modules}
cp /bin/busybox "$root/bin/busybox"
cp "$here/initramfs/init" "$root/init"
chmod 755 "$root/init"
modules=("$mod/sva_dma.ko")
if ((want_kpgtable_test)); then
	modules+=("$obj/mm/kpgtable_test.ko")
fi
cp "${modules[@]}" "$root/lib/modules/"
# Stripped: every initramfs byte is copied by the guest kernel, which is
# emulated where KVM emulates kernel mode.
strip -o "$root/bin/sva-dma-test" "$mod/sva-dma-test"
staging=$work/out.tmp
rm -rf "$staging"
mkdir -p "$staging"
(cd "$root" && find . -print0 | sort -z |
	cpio --null -o -H newc --owner=0:0 --quiet) >"$staging/initramfs.cpio"
if [[ $initramfs_name == *.gz ]]; then
	gzip -9n "$staging/initramfs.cpio"
fi

cp "$obj/vmlinux" "${modules[@]}" "$mod/sva-dma-test" "$staging/"
if ((want_bzimage)); then
	cp "$obj/arch/x86/boot/bzImage" "$staging/"
fi
cp "$obj/.config" "$staging/config"
end=$(date +%s)
echo "config $config: built in $((end - start)) s with make -j$jobs from $src_pkg $version" \
	>"$staging/BUILD-INFO"
touch "$staging/.complete"
rm -rf "$out"
mv "$staging" "$out"
# Keep the newest few builds of this config (about 40 MB each), not one
# per change ever.
keep=3
ls -1dt "$cache_root"/"$prefix"-*/ 2>/dev/null |
	grep -E "/$prefix-[0-9a-f]{16}/\$" | tail -n +$((keep + 1)) |
	while IFS= read -r old; do rm -rf "$old"; done
log "done in $((end - start)) s"
print_paths
