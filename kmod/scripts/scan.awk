# Scan a serial log for every kernel check that fired; prints one
# "caught: CHECK: first report" line per check, in the order they first fired.
function hit(check, line) {
	if (!(check in seen)) {
		seen[check] = 1
		sub(/^\[ *[0-9.]+\] /, "", line)
		print "caught: " check ": " substr(line, 1, 160)
	}
}
# The traces test/init prints are base64 (gzip): a line of it may spell
# "Oops" by chance. A kernel message amid one still counts.
/^quiesce-trace-begin: / { trace = 1; next }
/^quiesce-trace-end: / { trace = 0; next }
trace && /^[A-Za-z0-9+\/=]+$/ { next }
/BUG: KASAN:/ { hit("kasan", $0); next }
/BUG: KFENCE:/ { hit("kfence", $0); next }
/^\[ *[0-9.]+\] BUG [^ ]+ \(.*\): / || /Poison overwritten|Object already free|Redzone overwritten|Freepointer corrupt/ { hit("slub_debug", $0); next }
/ODEBUG:/ { hit("debug_objects", $0); next }
/blk-interposer: no_bypass:/ { hit("no_bypass", $0); next }
/blk-interposer: (set|clear) on .* not frozen/ { hit("interposer_assert_frozen", $0); next }
/WARNING: .* (blk_interposer_assert_quiesced|blk_interposer_set|blk_interposer_clear)/ { hit("interposer_assert", $0); next }
/quiesce: ASSERT: / { hit("module_assert", $0); next }
/MONITOR VIOLATION/ { hit("monitor", $0); next }
/INFO: task .* blocked for more than/ { hit("hung_task", $0); next }
/possible circular locking|possible recursive locking|bad unlock balance|lock held when returning|DEBUG_LOCKS_WARN_ON|inconsistent lock state|suspicious RCU usage|held lock freed/ { hit("lockdep", $0); next }
/BUG: sleeping function|BUG: scheduling while atomic/ { hit("atomic_sleep", $0); next }
/WARNING: CPU:/ { hit("warning", $0); next }
/BUG:|Oops|general protection fault|Kernel panic/ { hit("oops", $0); next }
/^FAIL: / { hit("test", substr($0, 7)); next }
