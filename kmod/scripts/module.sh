#!/usr/bin/env bash
# Build quiesce.ko against the cached kernel. The module's sources and the
# generated protocol are copied into the chroot with the repository's layout,
# so that the module's #[path] to generated/src/protocol.rs resolves there too.
#
# Usage: module.sh   -> prints the path of quiesce.ko on the host
set -euo pipefail
export QUIESCE_TEST QUIESCE_MUTANT
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/.." && pwd)
TC=$(bash "$here/scripts/toolchain.sh")
KDIR=$(bash "$here/scripts/kernel.sh")
S=/build/quiesce-src
rm -rf "$TC$S"
mkdir -p "$TC$S/kmod/module" "$TC$S/generated/src"
cp "$here"/module/Kbuild "$here"/module/*.rs "$TC$S/kmod/module/"
cp "$root/generated/src/protocol.rs" "$TC$S/generated/src/"
if ! chroot "$TC" make -s -C "$KDIR" M="$S/kmod/module" LLVM=1 modules >"$TC$S/build.log" 2>&1; then
	cat "$TC$S/build.log" >&2
	echo "module: build failed" >&2
	exit 1
fi
grep -i warning "$TC$S/build.log" >&2 || true
echo "$TC$S/kmod/module/quiesce.ko"
