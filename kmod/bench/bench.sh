#!/bin/sh
# The boot bench (busybox): run by /init when the command line says quiesce.mode=bench.
# Prints "bench: ..." lines; kmod/scripts/bench.sh turns them into a table.
DEV=/dev/ram1
SECS=${BENCH_SECS:-3}
run() { # config
	for m in "randwrite 4096" "randread 4096" "seqwrite 1048576" "seqread 1048576"; do
		d=$DEV
		[ "$1" = dm-linear ] && d=/dev/dm-1
		echo "bench: $1 $(/iobench $d $m $SECS)"
	done
}
run not-loaded
insmod /quiesce.ko
run loaded-detached
echo "attach $DEV" >/dev/quiesce
run attached
echo detach >/dev/quiesce
run dm-linear
# The stall each attach and detach causes, under 4 concurrent writers.
echo reset-stats >/dev/quiesce
for w in 1 2 3 4; do /iobench $DEV randwrite 4096 1000 >/dev/null & done
c=0
while [ $c -lt "${BENCH_CYCLES:-100}" ]; do
	echo "attach $DEV" >/dev/quiesce
	echo detach >/dev/quiesce
	c=$((c + 1))
done
kill $(jobs -p) 2>/dev/null
wait
echo "bench: stall attach $(awk '$1 == "stall_attach_us:" { $1 = ""; print }' /dev/quiesce)"
echo "bench: stall detach $(awk '$1 == "stall_detach_us:" { $1 = ""; print }' /dev/quiesce)"
echo "bench: cycles $c"
