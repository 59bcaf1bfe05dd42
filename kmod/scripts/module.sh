#!/usr/bin/env bash
# Build quiesce.ko against the cached kernel. The module's sources and the
# generated protocol are copied into the chroot with the repository's layout,
# so that the module's #[path] to generated/src/protocol.rs resolves there too.
# A build is cached, keyed on its sources, QUIESCE_TEST, and what the kernel
# gives a module (config, exported symbols, Rust bindings): the mutation gate's
# boots reuse the boot test's module.
#
# Usage: module.sh   -> prints the path of quiesce.ko on the host
set -euo pipefail
export QUIESCE_TEST
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/.." && pwd)
TC=$(bash "$here/scripts/toolchain.sh")
KDIR=$(bash "$here/scripts/kernel.sh")
key=$( {
	# Set (even empty) is a test build: option_env!("QUIESCE_TEST").is_some().
	echo "test=${QUIESCE_TEST+set}"
	cat "$here"/module/Kbuild "$here"/module/*.rs "$root/generated/src/protocol.rs"
	cat "$TC$KDIR/.config" "$TC$KDIR/Module.symvers" "$TC$KDIR"/rust/bindings/*generated*.rs
} | sha256sum | cut -c1-16)
KO=/build/quiesce-$key.ko
if [ -f "$TC$KO" ]; then
	echo "$TC$KO"
	exit 0
fi
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
# Keep the last few builds (a boot-test build and a normal one, say).
find "$TC/build" -maxdepth 1 -name 'quiesce-*.ko' -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -f
cp "$TC$S/kmod/module/quiesce.ko" "$TC$KO.tmp" && mv "$TC$KO.tmp" "$TC$KO"
echo "$TC$KO"
