# Turn "bench: CONFIG RW BS QD IOPS MB/s" lines into a table with ratios.
# The baseline is the unpatched kernel when its lines are there, else key-off.
function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
$2 == "stall" { s = $0; sub(/^bench: stall [a-z]+ */, "", s); stall[$3] = s; next }
$2 == "cycles" { cycles = $3; next }
$2 == "done" || $2 == "insmod" { next }
{
	w = $3 " " $4 " qd" $5
	iops[$2, w] = $6; mbs[$2, w] = $7
	if (!(w in seen)) { seen[w] = 1; ws[++n] = w }
	have[$2] = 1
}
END {
	base = ("unpatched" in have) ? "unpatched" : "key-off"
	printf "%-20s %10s %10s %10s %10s %9s %9s %9s\n", "workload (IOPS)", "unpatched", "key-off", "attached", "dm-linear",
		"off/unp", "att/off", "dm/off"
	for (i = 1; i <= n; i++) {
		w = ws[i]
		printf "%-20s %10s %10s %10s %10s %9s %9s %9s\n", w,
			("unpatched" in have) ? iops["unpatched", w] : "-", iops["key-off", w], iops["attached", w], iops["dm-linear", w],
			ratio(iops["key-off", w], iops["unpatched", w]), ratio(iops["attached", w], iops["key-off", w]),
			ratio(iops["dm-linear", w], iops["key-off", w])
	}
	printf "I/O stall per attach (us): %s\n", stall["attach"]
	printf "I/O stall per detach (us): %s\n", stall["detach"]
	printf "attach/detach cycles under 4 writers: %s\n", cycles
	printf "(TCG: no KVM here; the kernel has KASAN and lockdep, so the ratios, not the figures, carry.)\n"
}
