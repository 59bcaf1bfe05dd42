#!/usr/bin/env bash
# Boot the patched kernel under qemu (TCG) with quiesce.ko and run kmod/test/init.
# Prints the test's own lines, then one "caught: CHECK: detail" line for each
# kernel check that fired anywhere in the serial log (KASAN, KFENCE, slub_debug,
# DEBUG_OBJECTS, lockdep, hung task, the interposer's own checks, the module's
# assertions and monitor), and ends with "N passed, N failed"; exits non-zero
# unless everything passed.
#
# Env: QUIESCE_CYCLES (default 5) minimum attach/detach cycles per device under load.
#      QUIESCE_MUTANT  the mutant the module is made at each load (`mutant NAME`; the
#        test build only; see kmod/mutants.toml). The module is the boot test's own.
#      QUIESCE_FIRST  a phase of the test to run first (the gate's `first`; see test/init).
#      QUIESCE_ONLY   phases to run, and no others (a developer's run: `a,b`; see test/init).
#      QUIESCE_EXTRA_PATCHES  patches applied on top of kmod/patches (a mutant of the C hook).
#      QUIESCE_MODE=bench runs kmod/bench/bench.sh instead and prints its "bench:"
#        lines (kmod/scripts/bench.sh makes the table); with QUIESCE_KERNEL=plain,
#        on the kernel without the patch series, and without the module.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
TC=$(bash "$here/scripts/toolchain.sh")
KDIR=$(bash "$here/scripts/kernel.sh")
if [ "${QUIESCE_KERNEL:-patched}" = plain ]; then
	[ "${QUIESCE_MODE:-test}" = bench ] || { log "QUIESCE_KERNEL=plain is for QUIESCE_MODE=bench"; exit 2; }
	KO=
else
	KO=$(QUIESCE_TEST=1 bash "$here/scripts/module.sh")
fi
log() { printf 'boottest: %s\n' "$*" >&2; }
echo "boottest: built kernel and module (mutant: ${QUIESCE_MUTANT:-none})"

# The initramfs: a cached base (busybox, Debian's fio with its libraries, the
# bench), and a small archive with this run's /init and quiesce.ko appended
# (the kernel unpacks concatenated archives in order).
# Debian's tools the guest runs, each with its libraries.
TOOLS="/usr/bin/fio /usr/sbin/mkfs.ext4 /usr/sbin/e2fsck /usr/sbin/mkfs.xfs /usr/sbin/xfs_repair"
BKEY=$( { echo "$TOOLS"; chroot "$TC" dpkg-query -W -f='${Version}' busybox-static fio e2fsprogs xfsprogs; cat "$here/bench/bench.sh"; } | sha256sum | cut -c1-16)
BASE=/build/initramfs-base-$BKEY.gz
if [ ! -f "$TC$BASE" ]; then
	R=/build/initramfs-base
	rm -rf "$TC$R" && mkdir -p "$TC$R"/{bin,dev,proc,sys,tmp,mnt,etc,usr/bin,usr/sbin}
	cp "$TC/bin/busybox" "$TC$R/bin/"
	for a in $(chroot "$TC" /bin/busybox --list); do
		[ "$a" = busybox ] || ln -sf busybox "$TC$R/bin/$a"
	done
	for t in $TOOLS; do
		cp -L "$TC$t" "$TC$R$t"
		for lib in $(chroot "$TC" ldd "$t" | awk '/=>/ { print $3 } /^\t\// { print $1 }'); do
			mkdir -p "$TC$R$(dirname "$lib")"
			cp -L "$TC$lib" "$TC$R$lib"
		done
	done
	cp "$TC/etc/mke2fs.conf" "$TC$R/etc/"
	cp "$here/bench/bench.sh" "$TC$R/bench.sh"
	mknod -m 600 "$TC$R/dev/console" c 5 1
	chroot "$TC" sh -c "cd $R && find . | cpio -o -H newc --quiet | gzip -1 >$BASE.tmp" && mv "$TC$BASE.tmp" "$TC$BASE"
fi
# The changed-block map's reader, static, for the guest.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" cargo build --release --locked -q -p quiesce-cbt \
	--manifest-path "$here/../Cargo.toml" --target x86_64-unknown-linux-gnu --target-dir "$here/../target/guest"
R=/build/initramfs-run
rm -rf "$TC$R" && mkdir -p "$TC$R/usr/bin"
cp "$here/../target/guest/x86_64-unknown-linux-gnu/release/quiesce-cbt" "$TC$R/usr/bin/"
cp "$here/test/init" "$TC$R/init"
[ -z "$KO" ] || cp "$KO" "$TC$R/quiesce.ko"
chroot "$TC" sh -c "cd $R && find . | cpio -o -H newc --quiet | gzip -1 >/build/initramfs-run.gz"
cat "$TC$BASE" "$TC/build/initramfs-run.gz" >"$TC/build/initramfs.gz"

out=$(mktemp)
cycles=${QUIESCE_CYCLES:-5}
append="console=ttyS0 panic=-1 oops=panic hung_task_panic=1 slub_debug=FZPU kfence.sample_interval=5"
append="$append null_blk.nr_devices=1 null_blk.queue_mode=2 null_blk.irqmode=2 null_blk.completion_nsec=2000000"
append="$append null_blk.memory_backed=1 null_blk.gb=1 null_blk.hw_queue_depth=64 brd.rd_nr=3 brd.rd_size=65536 brd.max_part=4"
# dm-2: dm-delay on nullb0 past dm-0's sectors; reads at once, writes 2 s late (longer than starting quiesce-cbt under TCG).
# dm-3: 320 MiB of dm-linear on nullb0, room for xfs.
append="$append dm-mod.create=\"lin,,,rw,0 131072 linear /dev/nullb0 0;lin1,,,rw,0 131072 linear /dev/ram1 0;dly,,,rw,0 65536 delay /dev/nullb0 262144 0 /dev/nullb0 262144 2000;big,,,rw,0 655360 linear /dev/nullb0 524288\""
append="$append dm-mod.waitfor=/dev/nullb0,/dev/ram1 quiesce.cycles=$cycles quiesce.mode=${QUIESCE_MODE:-test}"
case "${QUIESCE_MUTANT:-}" in
*[!a-z0-9_:]*)
	echo "boottest: setup failed: QUIESCE_MUTANT=$QUIESCE_MUTANT: a mutant's name has only a-z, 0-9, _ and :"
	exit 2
	;;
?*) append="$append quiesce.mutant=$QUIESCE_MUTANT" ;;
esac
case "${QUIESCE_FIRST:-}" in
*[!a-z]*)
	echo "boottest: setup failed: QUIESCE_FIRST=$QUIESCE_FIRST: a phase's name has only a-z"
	exit 2
	;;
?*) append="$append quiesce.first=$QUIESCE_FIRST" ;;
esac
case "${QUIESCE_ONLY:-}" in
*[!a-z,]*)
	echo "boottest: setup failed: QUIESCE_ONLY=$QUIESCE_ONLY: phases' names, a-z, separated by commas"
	exit 2
	;;
?*) append="$append quiesce.only=$QUIESCE_ONLY" ;;
esac
# QUIESCE_FS=0 leaves out the mounted-filesystem phase (ext4, xfs; see test/init).
[ "${QUIESCE_FS:-1}" = 0 ] && append="$append quiesce.fs=0"
[ "${QUIESCE_KERNEL:-patched}" = plain ] && append="$append quiesce.kernel=plain"
# A mutant's run ends at the first check that fires (WARN, KASAN, KFENCE,
# DEBUG_OBJECTS and hung tasks then panic; the test powers off at its first
# FAIL): the gate needs the catch, not the rest.
# I/O stuck with no report at all (block-layer waits keep out of the hung-task
# detector) shows as a run that does not finish within 8 minutes (a whole run takes about 5).
limit=1200
if [ -n "${QUIESCE_MUTANT:-}${QUIESCE_EXTRA_PATCHES:-}" ]; then
	# The trace buffer goes to the console at a panic: the gate replays it too.
	append="$append panic_on_warn=1 quiesce.gate=1 ftrace_dump_on_oops"
	limit=480
fi
log "booting under qemu (TCG); console log: $out"
start=$(date +%s)
set +e
timeout "$limit" chroot "$TC" qemu-system-x86_64 -accel tcg -cpu max -m 1536M -smp 2 \
	-nographic -no-reboot -kernel "$KDIR/arch/x86/boot/bzImage" \
	-initrd /build/initramfs.gz -append "$append" </dev/null >"$out" 2>&1
rc=$?
set -e
log "qemu exited ($rc) after $(( $(date +%s) - start ))s"
if [ "${QUIESCE_MODE:-test}" = bench ]; then
	grep -a '^bench: ' "$out" | tr -d '\r'
	grep -aq '^bench: done' "$out" || { tail -n 40 "$out" >&2; exit 1; }
	exit 0
fi
tr -d '\r' <"$out" >"$out.txt"
# Not anchored: a kernel line on the serial console may run into init's echo.
if grep -aq 'quiesce-setup: ' "$out.txt"; then
	grep -a 'quiesce-setup: ' "$out.txt" >&2
	echo "boottest: setup failed: $(grep -a -m1 -o 'quiesce-setup: .*' "$out.txt" | cut -d' ' -f2-)"
	exit 2
fi
grep -aE '^(PASS|FAIL): |^quiesce-(boot|inflight): ' "$out.txt" || true
# The traces test/init printed (trace_dump()), decoded into $out.traces/.
rm -rf "$out.traces" && mkdir -p "$out.traces"
awk -v dir="$out.traces" '
/^quiesce-trace-begin: / { n++; f = dir "/" n ".b64"; sub(/^quiesce-trace-begin: /, ""); print > (dir "/" n ".what"); next }
/^quiesce-trace-end: / { f = ""; next }
# A kernel message the console printed amid the trace is not part of it.
f != "" && /^[A-Za-z0-9+\/=]+$/ { print > f }' "$out.txt"
# A panic while a trace was being recorded dumped the buffer to the console
# (the gate's ftrace_dump_on_oops): that trace, up to the panic, for the device
# the last "quiesce-trace-start" line names.
if grep -aq '^\(\[ *[0-9.]*\] \)\?Dumping ftrace buffer:' "$out.txt"; then
	start=$(grep -a '^quiesce-trace-start: ' "$out.txt" | tail -n1 | cut -d' ' -f2- || true)
	started=$(grep -an '^quiesce-trace-start: ' "$out.txt" | tail -n1 | cut -d: -f1 || true)
	printed=$(grep -an '^quiesce-trace-begin: ' "$out.txt" | tail -n1 | cut -d: -f1 || true)
	# Only if the panic came while a trace was being recorded (not yet printed).
	if [ -n "$start" ] && [ "${started:-0}" -gt "${printed:-0}" ]; then
		echo "$start (dumped at the panic)" >"$out.traces/dump.what"
		sed -n '/Dumping ftrace buffer:/,$p' "$out.txt" >"$out.traces/dump.trace"
	fi
fi
# Each is replayed in the model of the kernel spec (`quiesce replay`): a
# divergence is a failure ("caught: replay: ...").
cargo build --release --locked -q -p quiesce --manifest-path "$here/../Cargo.toml"
QUIESCE="$here/../target/release/quiesce"
devargs() { # MAJ:MIN or MAJ:MIN@MAJ:MIN (a partition, then its disk)
	case "$1" in
	*@*) echo "--dev ${1%@*} --disk ${1#*@}" ;;
	*) echo "--dev $1" ;;
	esac
}
for b in "$out.traces"/*.b64; do
	[ -e "$b" ] || break
	t=${b%.b64}.trace
	read -r dev kind majmin label <"${b%.b64}.what"
	if ! base64 -d "$b" | gunzip >"$t"; then
		echo "caught: replay: the trace of $label did not decode (the run ended inside it?)" >>"$out.replay"
		continue
	fi
	# A partition's number is followed by its disk's: its queue's events carry that.
	if "$QUIESCE" replay "$here/../model/specs/15-filter-module.toml" "$t" --kind "$kind" $(devargs "$majmin") >"$t.out" 2>&1; then
		echo "replay: $label: $(head -n1 "$t.out" | sed 's/^[^ ]* //')"
	else
		sed "s|^|replay: $label: |" "$t.out"
		echo "caught: replay: $label: $(grep -m1 -E 'DIVERGES|error' "$t.out")" >>"$out.replay"
	fi
done
if [ -e "$out.traces/dump.trace" ]; then
	t=$out.traces/dump.trace
	read -r dev kind majmin label <"$out.traces/dump.what"
	if "$QUIESCE" replay "$here/../model/specs/15-filter-module.toml" "$t" --kind "$kind" $(devargs "$majmin") --partial >"$t.out" 2>&1; then
		echo "replay: $label: $(head -n1 "$t.out" | sed 's/^[^ ]* //')"
	else
		sed "s|^|replay: $label: |" "$t.out"
		echo "caught: replay: $label: $(grep -m1 -E 'DIVERGES|error' "$t.out")" >>"$out.replay"
	fi
fi
# Every kernel check that fired, anywhere in the log: one line per check.
awk -f "$here/scripts/scan.awk" "$out.txt" >"$out.caught"
[ ! -e "$out.replay" ] || cat "$out.replay" >>"$out.caught"
cat "$out.caught"
line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$out.txt" | tail -n1 || true)
if [ -z "$line" ]; then
	tail -n 40 "$out.txt" >&2
	echo "caught: did_not_finish: the boot test did not reach its end (qemu exit $rc$([ "$rc" = 124 ] && echo ": stuck for ${limit}s"))"
	line="0 passed, 1 failed"
fi
passed=${line%% passed*}
failed=$(echo "$line" | sed 's/.*passed, \([0-9]*\) failed.*/\1/')
failed=$((failed + $(grep -vc "^caught: test: " "$out.caught" || true)))
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
