# Turn "bench: CONFIG MODE BS MB/s IOPS OPS" lines into a table with ratios.
function val(c, m) { return (m ~ /^rand/) ? iops[c, m] : mbs[c, m] }
function ratio(a, b) { return b > 0 ? a / b : 0 }
$2 == "stall" { s = $0; sub(/^bench: stall [a-z]+ */, "", s); stall[$3] = s; next }
$2 == "cycles" { cycles = $3; next }
{ mbs[$2, $3] = $5; iops[$2, $3] = $6; if (!($3 in seen)) { seen[$3] = 1; modes[++n] = $3 } }
END {
	printf "%-15s %11s %11s %11s %11s %8s %8s %8s\n", "mode", "not-loaded", "loaded-det", "attached", "dm-linear", "att/det", "dm/det", "det/none"
	for (i = 1; i <= n; i++) {
		m = modes[i]
		printf "%-15s %11s %11s %11s %11s %8.2f %8.2f %8.2f\n", m ((m ~ /^rand/) ? " IOPS" : " MB/s"),
			val("not-loaded", m), val("loaded-detached", m), val("attached", m), val("dm-linear", m),
			ratio(val("attached", m), val("loaded-detached", m)), ratio(val("dm-linear", m), val("loaded-detached", m)),
			ratio(val("loaded-detached", m), val("not-loaded", m))
	}
	printf "I/O stall per attach (us): %s\n", stall["attach"]
	printf "I/O stall per detach (us): %s\n", stall["detach"]
	printf "attach/detach cycles under 4 writers: %s\n", cycles
}
