#!/usr/bin/env bash
# Build (once) a Debian trixie chroot holding the kernel toolchain:
# rustc with its matching rust-src, bindgen, clang/lld, the 6.12 kernel source,
# busybox and qemu. Everything comes from Debian's package archive; the mirror
# is read from the host's apt sources at run time.
#
# Usage: toolchain.sh            -> prints the chroot path on stdout
# Env:   QUIESCE_CACHE (default ~/.cache/quiesce)
set -euo pipefail

CACHE=${QUIESCE_CACHE:-$HOME/.cache/quiesce}
ROOT=$CACHE/toolchain-trixie
STAMP=$ROOT/.quiesce-ready
PKGS="rustc rust-src bindgen clang lld llvm libclang-dev flex bison bc libelf-dev
libssl-dev make cpio kmod busybox-static qemu-system-x86 linux-source-6.12
xz-utils libc6-dev patch zstd perl python3 gawk fio e2fsprogs xfsprogs"

log() { printf 'toolchain: %s\n' "$*" >&2; }

# The stamp holds the package list the chroot was made with; a longer list is
# installed into the existing chroot, not rebuilt from scratch.
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(echo $PKGS)" ]; then
	echo "$ROOT"
	exit 0
fi
if [ -f "$STAMP" ]; then
	log "installing the packages the chroot lacks"
	mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
	chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -c \
		"apt-get update -qq && apt-get install -y -qq --no-install-recommends $(echo $PKGS) >/dev/null && apt-get clean" >&2 || {
		umount -l "$ROOT/proc"
		exit 1
	}
	umount -l "$ROOT/proc"
	echo $PKGS >"$STAMP"
	echo "$ROOT"
	exit 0
fi

mirror() {
	# The first Debian archive (a URI whose path ends in /debian) among the
	# enabled apt sources (*.list and deb822 *.sources).
	local m
	m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | tr -d '[:space:]' |
		head -n1)
	[ -n "$m" ] || { log "no Debian mirror found in the host's apt sources"; exit 1; }
	echo "${m%/}"
}

MIRROR=$(mirror)
mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/bootstrap.XXXXXX")
cleanup() {
	for m in proc dev/pts dev sys; do
		mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m" || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v debootstrap >/dev/null; then
	log "fetching debootstrap"
	(cd "$WORK" && apt-get download debootstrap >/dev/null 2>&1) || {
		apt-get update -qq >/dev/null && (cd "$WORK" && apt-get download debootstrap >/dev/null)
	}
	dpkg -x "$WORK"/debootstrap_*.deb "$WORK/deb"
	export DEBOOTSTRAP_DIR=$WORK/deb/usr/share/debootstrap
	DEBOOTSTRAP=$WORK/deb/usr/sbin/debootstrap
else
	DEBOOTSTRAP=debootstrap
fi

# A half-made chroot from an interrupted run is not trusted.
for m in proc dev/pts dev sys; do
	mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m" || true
done
rm -rf "$ROOT"
log "debootstrap trixie (about 30 s)"
"$DEBOOTSTRAP" --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
	trixie "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
	tail -n 30 "$WORK/debootstrap.log" >&2
	exit 1
}
echo "deb $MIRROR trixie main" >"$ROOT/etc/apt/sources.list"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$ROOT/proc"
log "installing the kernel toolchain in the chroot (about 1 minute)"
chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -c \
	"apt-get update -qq && apt-get install -y -qq --no-install-recommends $(echo $PKGS) >/dev/null && apt-get clean" \
	>"$WORK/apt.log" 2>&1 || {
	tail -n 30 "$WORK/apt.log" >&2
	exit 1
}
umount -l "$ROOT/proc"
chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}\n' rustc rust-src bindgen clang linux-source-6.12 qemu-system-x86 busybox-static >"$ROOT/.quiesce-versions"
echo $PKGS >"$STAMP"
log "ready: $(tr '\n' ' ' <"$ROOT/.quiesce-versions")"
echo "$ROOT"
