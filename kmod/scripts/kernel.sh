#!/usr/bin/env bash
# Build (once) the patched, Rust-enabled kernel inside the toolchain chroot.
# The build is cached under the chroot, keyed by the kernel source version,
# the config fragment and the patches; it stays at one absolute path (objtool
# records absolute paths, so a moved tree rebuilds).
#
# Usage: kernel.sh   -> prints the kernel tree's path inside the chroot
# Env:   QUIESCE_KERNEL=plain  the same kernel without the patch series (and so
#        without CONFIG_BLK_INTERPOSER_DEBUG), in a tree of its own: the bench's
#        baseline.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
TC=$(bash "$here/scripts/toolchain.sh")
log() { printf 'kernel: %s\n' "$*" >&2; }

KVER=$(chroot "$TC" dpkg-query -W -f='${Version}' linux-source-6.12)
CONFIG=$(mktemp)
trap 'rm -f "$CONFIG"' EXIT
if [ "${QUIESCE_KERNEL:-patched}" = plain ]; then
	grep -v '^CONFIG_BLK_INTERPOSER' "$here/kernel.config" >"$CONFIG"
else
	cp "$here/kernel.config" "$CONFIG"
fi
# The tree is keyed by the source version and the config; the patch series
# (plus QUIESCE_EXTRA_PATCHES, a test-only mutant of the C side) is swapped in
# place, so a changed patch costs an incremental build, not a fresh one.
KEY=$( { echo "$KVER"; cat "$CONFIG"; } | sha256sum | cut -c1-16)
B=/build/linux-$KEY
if [ "${QUIESCE_KERNEL:-patched}" = plain ]; then
	PATCHES=()
	PKEY=none
else
	# shellcheck disable=SC2086
	PATCHES=("$here"/patches/*.patch ${QUIESCE_EXTRA_PATCHES:-})
	PKEY=$(cat "${PATCHES[@]}" | sha256sum | cut -c1-16)
fi
if [ -f "$TC$B/.quiesce-built" ] && [ "$(cat "$TC$B/.quiesce-patches" 2>/dev/null)" = "$PKEY" ]; then
	log "cached: linux $KVER, config $KEY, patches $PKEY"
	echo "$B"
	exit 0
fi

cleanup() {
	rm -f "$CONFIG"
	mountpoint -q "$TC/proc" && umount -l "$TC/proc" || true
}
trap cleanup EXIT
mountpoint -q "$TC/proc" || mount -t proc proc "$TC/proc"

# The files a patch touches (its "+++ b/" paths).
touched() { sed -n 's|^+++ b/||p' "$1"; }

# Two patches that make the same change, whatever their messages say (from the
# first file header on: a git patch's "diff --git", a plain diff's "---").
same_change() { cmp -s <(sed -n '/^\(diff --git\|--- \)/,$p' "$1") <(sed -n '/^\(diff --git\|--- \)/,$p' "$2"); }

A=$TC$B/.quiesce-applied
if [ -d "$A" ] && [ -f "$TC$B/.config" ]; then
	rm -f "$TC$B/.quiesce-built" "$TC$B/.quiesce-patches"
	# Keep the applied patches that the wanted list starts with (a header such
	# as blk_types.h touched again would rebuild nearly everything); revert
	# the rest, last first.
	applied=()
	while IFS= read -r f; do applied+=("$f"); done < <(find "$A" -name '*.patch' | sort)
	keep=0
	while [ "$keep" -lt "${#applied[@]}" ] && [ "$keep" -lt "${#PATCHES[@]}" ] &&
		same_change "${applied[$keep]}" "${PATCHES[$keep]}"; do
		keep=$((keep + 1))
	done
	# Snapshot every file the patches to revert or apply touch: a file whose
	# content comes out the same gets its old time back, so that make rebuilds
	# only what really changed (a header such as blk_types.h otherwise rebuilds
	# nearly everything).
	SNAP=$(mktemp -d)
	for ((j = keep; j < ${#applied[@]}; j++)); do touched "${applied[$j]}"; done >"$SNAP/.list"
	for ((j = keep; j < ${#PATCHES[@]}; j++)); do touched "${PATCHES[$j]}"; done >>"$SNAP/.list"
	sort -u -o "$SNAP/.list" "$SNAP/.list"
	while IFS= read -r f; do
		if [ -f "$TC$B/$f" ]; then install -D -p -m 644 "$TC$B/$f" "$SNAP/$f"; fi
	done <"$SNAP/.list"
	for ((j = ${#applied[@]} - 1; j >= keep; j--)); do
		log "reverting $(basename "${applied[$j]}")"
		patch -s -R -d "$TC$B" -p1 <"${applied[$j]}"
		rm -f "${applied[$j]}"
	done
	fresh=0
else
	log "unpacking linux-source $KVER"
	rm -rf "$TC$B"
	mkdir -p "$TC$B"
	tar -C "$TC$B" --strip-components=1 -xf "$TC"/usr/src/linux-source-6.12.tar.xz
	fresh=1
	keep=0
fi
mkdir -p "$A"
for ((i = keep; i < ${#PATCHES[@]}; i++)); do
	p=${PATCHES[$i]}
	log "applying $(basename "$p")"
	# A patch that does not apply must leave the tree as it was: no half-applied
	# change may stay in the cached tree for the next build.
	if ! out=$(patch -s --dry-run -d "$TC$B" -p1 <"$p" 2>&1); then
		log "$(basename "$p") does not apply to the tree: $out"
		exit 1
	fi
	patch -s -d "$TC$B" -p1 <"$p"
	cp "$p" "$A/$(printf %03d $((i + 1))).patch"
done
if [ -n "${SNAP:-}" ]; then
	while IFS= read -r f; do
		if [ -f "$SNAP/$f" ] && cmp -s "$SNAP/$f" "$TC$B/$f"; then
			touch -r "$SNAP/$f" "$TC$B/$f"
		fi
	done <"$SNAP/.list"
	rm -rf "$SNAP"
fi
if [ "$fresh" = 1 ] || ! cmp -s "$CONFIG" "$TC$B/quiesce.config"; then
	cp "$CONFIG" "$TC$B/quiesce.config"
	chroot "$TC" make -s -C "$B" LLVM=1 KCONFIG_ALLCONFIG=quiesce.config allnoconfig >/dev/null
fi
chroot "$TC" make -s -C "$B" LLVM=1 olddefconfig >/dev/null
missing=0
while IFS= read -r opt; do
	grep -qx "$opt" "$TC$B/.config" || { log "config option did not survive: $opt"; missing=1; }
done < <(grep -E '^CONFIG_' "$CONFIG")
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
echo "$PKEY" >"$TC$B/.quiesce-patches"
echo "$B"
