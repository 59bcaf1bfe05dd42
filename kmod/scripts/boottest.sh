#!/usr/bin/env bash
# Boot the patched kernel under qemu (TCG) with quiesce.ko and run kmod/test/init.
# Prints the test's own lines and ends with its "N passed, N failed" line;
# exits non-zero unless everything passed.
#
# Env: QUIESCE_CYCLES (default 100) attach/detach cycles per device under stress.
#      QUIESCE_MODE=bench runs kmod/bench/bench.sh instead and prints a table.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
TC=$(bash "$here/scripts/toolchain.sh")
KDIR=$(bash "$here/scripts/kernel.sh")
KO=$(bash "$here/scripts/module.sh")
log() { printf 'boottest: %s\n' "$*" >&2; }

R=/build/initramfs
rm -rf "$TC$R" && mkdir -p "$TC$R"/{bin,dev,proc,sys,tmp}
cp "$TC/bin/busybox" "$TC$R/bin/"
for a in $(chroot "$TC" /bin/busybox --list); do
	[ "$a" = busybox ] || ln -sf busybox "$TC$R/bin/$a"
done
cp "$here/test/init" "$TC$R/init"
cp "$KO" "$TC$R/quiesce.ko"
cp "$here/bench/bench.sh" "$TC$R/bench.sh"
cp "$here/bench/iobench.c" "$TC/build/iobench.c"
chroot "$TC" clang -O2 -static -o "$R/iobench" /build/iobench.c
mknod -m 600 "$TC$R/dev/console" c 5 1
chroot "$TC" sh -c "cd $R && find . | cpio -o -H newc --quiet | gzip -1 >/build/initramfs.gz"

out=$(mktemp)
cycles=${QUIESCE_CYCLES:-100}
append="console=ttyS0 panic=-1 oops=panic null_blk.nr_devices=0 brd.rd_nr=2 brd.rd_size=65536"
append="$append dm-mod.create=\"lin,,,rw,0 131072 linear /dev/ram1 0\" dm-mod.waitfor=/dev/ram1"
append="$append quiesce.cycles=$cycles quiesce.mode=${QUIESCE_MODE:-test}"
log "booting under qemu (TCG); console log: $out"
start=$(date +%s)
set +e
timeout 1500 chroot "$TC" qemu-system-x86_64 -accel tcg -cpu max -m 1024M -smp 2 \
	-nographic -no-reboot -kernel "$KDIR/arch/x86/boot/bzImage" \
	-initrd /build/initramfs.gz -append "$append" </dev/null >"$out" 2>&1
rc=$?
set -e
log "qemu exited ($rc) after $(( $(date +%s) - start ))s"
if [ "${QUIESCE_MODE:-test}" = bench ]; then
	grep -a '^bench: ' "$out" | tr -d '\r' | awk -f "$here/bench/table.awk"
	grep -aq '^bench: cycles' "$out" || { tail -n 40 "$out" >&2; exit 1; }
	exit 0
fi
grep -E '^(PASS|FAIL): |^quiesce-boot: ' "$out" | tr -d '\r' || true
line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$out" | tr -d '\r' | tail -n1 || true)
if [ -z "$line" ]; then
	tail -n 60 "$out" | tr -d '\r' >&2
	log "the boot test did not finish"
	echo "0 passed, 1 failed"
	exit 1
fi
echo "$line"
case "$line" in
*" 0 failed") [ "${line%% *}" -gt 0 ] ;;
*) tail -n 80 "$out" | grep -aE 'BUG|WARNING|Oops|lockdep|VIOLATION|blocked|FAIL' | head -n 40 >&2 || true; exit 1 ;;
esac
