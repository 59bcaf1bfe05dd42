#!/usr/bin/env bash
# Build (once) the patched, Rust-enabled kernel inside the toolchain chroot.
# The build is cached under the chroot, keyed by the kernel source version,
# the config fragment and the patches; it stays at one absolute path (objtool
# records absolute paths, so a moved tree rebuilds).
#
# Usage: kernel.sh   -> prints the kernel tree's path inside the chroot
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
TC=$(bash "$here/scripts/toolchain.sh")
log() { printf 'kernel: %s\n' "$*" >&2; }

KVER=$(chroot "$TC" dpkg-query -W -f='${Version}' linux-source-6.12)
KEY=$( { echo "$KVER"; cat "$here/kernel.config" "$here"/patches/*.patch; } | sha256sum | cut -c1-16)
B=/build/linux-$KEY
if [ -f "$TC$B/.quiesce-built" ]; then
	log "cached: linux $KVER, key $KEY"
	echo "$B"
	exit 0
fi

cleanup() { mountpoint -q "$TC/proc" && umount -l "$TC/proc" || true; }
trap cleanup EXIT
mountpoint -q "$TC/proc" || mount -t proc proc "$TC/proc"

log "unpacking linux-source $KVER"
rm -rf "$TC$B"
mkdir -p "$TC$B"
tar -C "$TC$B" --strip-components=1 -xf "$TC"/usr/src/linux-source-6.12.tar.xz
for p in "$here"/patches/*.patch; do
	log "applying $(basename "$p")"
	patch -s -d "$TC$B" -p1 <"$p"
done
cp "$here/kernel.config" "$TC$B/quiesce.config"
chroot "$TC" make -s -C "$B" LLVM=1 KCONFIG_ALLCONFIG=quiesce.config allnoconfig >/dev/null
missing=0
while IFS= read -r opt; do
	grep -qx "$opt" "$TC$B/.config" || { log "config option did not survive: $opt"; missing=1; }
done < <(grep -E '^CONFIG_' "$here/kernel.config")
[ "$missing" = 0 ] || exit 1

jobs=$(nproc)
log "building with LLVM=1 -j$jobs (a fresh build takes several minutes; progress every 30 s)"
start=$(date +%s)
chroot "$TC" make -C "$B" LLVM=1 -j"$jobs" >"$TC$B/build.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
	for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
	kill -0 "$pid" 2>/dev/null && log "$(( $(date +%s) - start ))s: $(grep -c '^  [A-Z]' "$TC$B/build.log") steps, last: $(grep '^  [A-Z]' "$TC$B/build.log" | tail -n1 | sed 's/^ *//')"
done
if ! wait "$pid"; then
	grep -E 'error|Error' "$TC$B/build.log" | head -n 20 >&2
	log "build failed; full log: $TC$B/build.log"
	exit 1
fi
log "built in $(( $(date +%s) - start ))s"
touch "$TC$B/.quiesce-built"
echo "$B"
