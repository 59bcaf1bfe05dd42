#!/bin/sh
# The boot bench (busybox and Debian's fio): run by /init when the command line
# says quiesce.mode=bench. Prints "bench: CONFIG RW BS QD IOPS MB/s" lines, and
# on the patched kernel the stall each attach and detach causes;
# kmod/scripts/bench.sh turns them into a table.
DEV=/dev/ram1
SECS=${BENCH_SECS:-3}
# IOPS and MB/s of one fio job (terse format 3: read IOPS is field 8, write 49;
# bandwidth in KiB/s is field 7 and 48).
one() { # dev rw bs qd
	fio --thread --name=b --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" --ioengine=libaio \
		--direct=1 --size=48m --time_based --runtime="$SECS" --minimal 2>/dev/null |
		awk -F';' -v rw="$2" '{ if (rw ~ /read/) { i = $8; b = $7 } else { i = $49; b = $48 }; printf "%d %.1f\n", i, b / 1024 }'
}
run() { # config dev
	for w in "randwrite 4k" "randread 4k" "write 1m" "read 1m"; do
		for qd in 1 32; do
			# shellcheck disable=SC2086
			r=$(one "$2" $w $qd)
			echo "bench: $1 $w $qd ${r:-0 0}"
		done
	done
}
if grep -q quiesce.kernel=plain /proc/cmdline; then
	run unpatched "$DEV"
	echo "bench: done"
	return 0 2>/dev/null || exit 0
fi
insmod /quiesce.ko || echo "bench: insmod failed"
# Nothing attached: the static key is off.
run key-off "$DEV"
echo "attach $DEV" >/dev/quiesce
run attached "$DEV"
echo "detach $DEV" >/dev/quiesce
run dm-linear /dev/dm-1
# The stall each attach and detach causes, under 4 concurrent writers.
echo reset-stats >/dev/quiesce
fio --thread --name=w --filename="$DEV" --rw=randwrite --bs=4k --direct=1 --numjobs=4 \
	--time_based --runtime=3600 >/dev/null 2>&1 &
fpid=$!
c=0
while [ $c -lt "${BENCH_CYCLES:-100}" ]; do
	echo "attach $DEV" >/dev/quiesce
	echo "detach $DEV" >/dev/quiesce
	c=$((c + 1))
done
kill $fpid
wait $fpid
echo "bench: stall attach $(awk '$1 == "stall_attach_us:" { $1 = ""; print }' /dev/quiesce)"
echo "bench: stall detach $(awk '$1 == "stall_detach_us:" { $1 = ""; print }' /dev/quiesce)"
echo "bench: cycles $c"
echo "bench: done"
