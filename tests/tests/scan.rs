//! The boot test's serial-log scan (`kmod/scripts/scan.awk`) names each kernel
//! check that fired, once, in the order it first fired, and stays silent on a
//! clean log: the mutation gate's verdicts rest on it.

use std::io::Write;
use std::process::{Command, Stdio};

fn scan(log: &str) -> Vec<String> {
    let awk = concat!(env!("CARGO_MANIFEST_DIR"), "/../kmod/scripts/scan.awk");
    let mut child = Command::new("awk")
        .args(["-f", awk])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("awk runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(log.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let l = l.strip_prefix("caught: ").expect("every line is a catch");
            l[..l.find(':').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn a_clean_log_catches_nothing() {
    let log = "[    1.000000] quiesce: loaded; protocol converged\nPASS: insmod quiesce.ko\n\
               [    2.000000] quiesce: attached to /dev/nb1 (blk-mq)\n65 passed, 0 failed\n";
    assert!(scan(log).is_empty());
}

#[test]
fn each_check_is_named_once_in_order() {
    let log = "\
[   10.1] blk-interposer: no_bypass: a bio (op 1) completed on nb1 without passing its interposer
[   10.2] WARNING: CPU: 1 PID: 7 at block/blk-core.c:640 blk_interposer_check_endio+0x1/0x2
[   11.0] BUG: KASAN: slab-use-after-free in clone_endio+0x10/0x20
[   11.1] BUG: KASAN: slab-use-after-free in clone_endio+0x10/0x20
[   12.0] blk-interposer: set on nb1 with its queue not frozen
[   12.1] WARNING: CPU: 0 PID: 1 at block/blk-core.c:653 blk_interposer_set+0xdd/0x110
[   13.0] quiesce: ASSERT: no_recursion: a clone re-entered its interposer
[   14.0] INFO: task init:1 blocked for more than 10 seconds.
[   14.5] WARNING: bad unlock balance detected!
[   15.0] ODEBUG: free active (active state 0) object: 0000 object type: timer_list
[   15.5] BUG: KFENCE: use-after-free read in ip_submit
FAIL: null_blk (blk-mq): fio verify failed
[   16.0] Kernel panic - not syncing: hung_task: blocked tasks
";
    assert_eq!(
        scan(log),
        [
            "no_bypass",
            "warning",
            "kasan",
            "interposer_assert_frozen",
            "interposer_assert",
            "module_assert",
            "hung_task",
            "lockdep",
            "debug_objects",
            "kfence",
            "test",
            "oops"
        ]
    );
}

/// A trace printed for replay is base64 (gzip): a line of it that spells
/// "Oops" by chance (seen in a boot: `...KQkOopskbUK...`) is not a
/// catch, but a kernel message printed amid the trace is.
#[test]
fn a_trace_that_spells_oops_is_not_a_catch() {
    let trace = "quiesce-trace-begin: /dev/nb1 request 254:1 null_blk: flushes\n\
                 JYEhnB6TRcmDOUFJUPl9zWM5YUlgCKfHhFGqpskTYUPtT2sey4lKQkOopskbUKqmyRcCan9a81hO\n";
    let end = "quiesce-trace-end: /dev/nb1\n";
    assert!(scan(&format!("{trace}{end}")).is_empty());
    let amid = "[   12.0] BUG: KASAN: slab-use-after-free in bio_endio+0x1/0x2\n";
    assert_eq!(scan(&format!("{trace}{amid}{end}")), ["kasan"]);
    // Outside a trace the same text is a catch: the skip is the trace's only.
    assert_eq!(scan("kOopsk\n"), ["oops"]);
}
