//! Trace validation: stretches of the boot test's kernel traces (the
//! blk_interposer trace events of attach/detach cycles under fio, cut between
//! two quiet points) replay in the model of the kernel spec; the same traces,
//! hand-edited the way a broken kernel would have written them, are refused at
//! the edited event, for the right reason.

use quiesce_model::replay::{replay, Dev, ReplayOptions, ReplayReport, Trace};
use quiesce_model::spec::{Kind, Spec};
use std::path::PathBuf;

fn spec() -> Spec {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs/15-filter-module.toml");
    Spec::load(&p).expect("the kernel spec parses")
}

/// A recorded trace: (its text, the kind of its original, which its name starts with).
fn fixture(name: &str) -> (String, Kind) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("traces")
        .join(format!("{name}.trace"));
    let kind = Kind::by_name(name.split('-').next().unwrap()).expect("fixtures are named by kind");
    (std::fs::read_to_string(&p).expect("fixture exists"), kind)
}

fn edit_line(text: &str, line: usize, f: impl Fn(&str) -> String) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                format!("{}\n", f(l))
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

fn run(text: &str, kind: Kind, window: usize) -> ReplayReport {
    let trace = Trace::parse(text.to_string()).expect("the trace parses");
    replay(
        &spec(),
        kind,
        &trace,
        &ReplayOptions {
            dev: None,
            disk: None,
            window,
            partial: false,
        },
    )
    .expect("the replay runs")
}

/// The line numbers (1-based) of the lines containing `pat`.
fn lines_with(text: &str, pat: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(pat))
        .map(|(i, _)| i + 1)
        .collect()
}

fn without_lines(text: &str, drop: &[usize]) -> String {
    text.lines()
        .enumerate()
        .filter(|(i, _)| !drop.contains(&(i + 1)))
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

fn move_line(text: &str, from: usize, before: usize) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let l = lines.remove(from - 1);
    let at = if before > from {
        before - 2
    } else {
        before - 1
    };
    lines.insert(at, l);
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn recorded_traces_replay_clean() {
    for name in ["request", "bio", "bio_sync"] {
        let (text, kind) = fixture(name);
        let r = run(&text, kind, 24);
        assert!(r.ok, "{name}: {:#?}", r.divergence);
        assert!(r.redirected >= 3, "{name}: the stretch redirects bios");
        assert!(r.attached >= 1 && r.detached >= 1, "{name}: a whole cycle");
        assert!(r.bios > 20, "{name}: bios in flight around it");
    }
}

/// Attach with each injected failure, its unwinding and attach()'s error;
/// two tasks attaching at once, the loser's `-EBUSY` from the pointer and its
/// unwinding, and detach by a third task.
#[test]
fn failures_and_races_replay_clean() {
    let (text, kind) = fixture("request-injected");
    let r = run(&text, kind, 24);
    assert!(r.ok, "{:#?}", r.divergence);
    assert!(
        text.contains("filter_alloc(I) ret=-12")
            && text.contains("try_module_get(I->owner) ret=-19")
    );
    let (text, kind) = fixture("bio-racing-attach");
    let r = run(&text, kind, 24);
    assert!(r.ok, "{:#?}", r.divergence);
    assert!(text.contains("ptr_set val=-16"));
}

#[test]
fn a_missing_unwind_step_is_refused() {
    let (text, kind) = fixture("request-injected");
    let failed = lines_with(&text, "filter_alloc(I) ret=-12")[0];
    let put = lines_with(&text, "module_put(I->owner)")
        .into_iter()
        .find(|&l| l > failed)
        .unwrap();
    assert_eq!(put, failed + 1, "module_put unwinds try_module_get first");
    let d = run(&without_lines(&text, &[put]), kind, 24)
        .divergence
        .expect("refused");
    assert_eq!(d.line, put, "{d:#?}");
    assert!(d.event.contains(" unlock "), "{d:#?}");
    assert!(d.why.contains("module_put(I->owner)"), "{d:#?}");
}

#[test]
fn a_pointer_set_twice_is_refused() {
    let (text, kind) = fixture("bio-racing-attach");
    let lost = lines_with(&text, "ptr_set val=-16")[0];
    let d = run(
        &edit_line(&text, lost, |l| l.replace("val=-16", "val=0")),
        kind,
        24,
    )
    .divergence
    .expect("refused");
    assert_eq!(d.line, lost, "{d:#?}");
    assert!(
        d.why
            .contains("the kernel's step succeeded; the model's failed"),
        "{d:#?}"
    );
}

#[test]
fn dropping_the_freeze_is_refused_at_the_pointer() {
    let (text, kind) = fixture("request");
    let set = lines_with(&text, " ptr_set ")[0];
    let freeze: Vec<usize> = lines_with(&text, " freeze_")
        .into_iter()
        .filter(|&l| l < set)
        .collect();
    assert_eq!(freeze.len(), 2, "attach freezes O: start and wait");
    let edited = without_lines(&text, &freeze);
    let r = run(&edited, kind, 24);
    let d = r.divergence.expect("refused");
    assert!(!r.ok);
    // Line numbers are of the edited text: two lines earlier.
    assert_eq!(d.line, set - 2, "{d:#?}");
    assert!(d.event.contains("ptr_set"), "{d:#?}");
    assert!(d.why.contains("blk_freeze_queue_start(O)"), "{d:#?}");
    assert!(d.thread.contains("controller 1"), "{d:#?}");
    assert!(!d.state.is_empty());
}

#[test]
fn reading_the_pointer_before_queue_entry_is_refused() {
    let (text, kind) = fixture("request");
    let read = lines_with(&text, " read_interposer ")[0];
    let bio = text
        .lines()
        .nth(read - 1)
        .unwrap()
        .split("bio=")
        .nth(1)
        .unwrap()[..16]
        .to_string();
    let enter = lines_with(&text, &format!("enter bio={bio}"))[0];
    assert!(enter < read);
    let edited = move_line(&text, read, enter);
    let r = run(&edited, kind, 24);
    let d = r.divergence.expect("refused");
    assert_eq!(d.line, enter, "{d:#?}");
    assert!(d.event.contains("read_interposer"), "{d:#?}");
    assert!(d.why.contains("never showed entering O's queue"), "{d:#?}");
}

#[test]
fn an_unmarked_clone_is_refused() {
    let (text, kind) = fixture("request");
    let clone_test = lines_with(&text, " test_marker ")
        .into_iter()
        .find(|&l| text.lines().nth(l - 1).unwrap().contains("val=1"))
        .expect("a clone's marker test");
    let edited = edit_line(&text, clone_test, |l| l.replace("val=1", "val=0"));
    let d = run(&edited, kind, 24).divergence.expect("refused");
    assert_eq!(d.line, clone_test, "{d:#?}");
    assert!(d.why.contains("found the bio unmarked"), "{d:#?}");
    assert!(d.why.contains("is marked"), "{d:#?}");
}

#[test]
fn a_second_completion_is_refused() {
    let (text, kind) = fixture("request");
    let endio = lines_with(&text, " endio ")[0];
    let mut lines: Vec<&str> = text.lines().collect();
    let dup = lines[endio - 1];
    lines.insert(endio, dup);
    let edited: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let d = run(&edited, kind, 24).divergence.expect("refused");
    assert_eq!(d.line, endio + 1, "{d:#?}");
    assert!(d.why.contains("completed already"), "{d:#?}");
}

/// An event emitted late (after a racing task's event) is taken in the order
/// in which it happened, within the window; with no window it is refused.
#[test]
fn a_late_completion_is_reordered_within_the_window() {
    let (text, kind) = fixture("request");
    // A request that completes while the freeze waits for it: as if its
    // completion had reached the ring buffer after the wait's end.
    let line = |l: usize| text.lines().nth(l - 1).unwrap();
    let (endio, wait) = lines_with(&text, " freeze_wait ")
        .into_iter()
        .find_map(|wait| {
            let endio = (1..wait)
                .rev()
                .take_while(|&l| !line(l).contains(" freeze_start "))
                .find(|&l| line(l).contains(" endio "))?;
            Some((endio, wait))
        })
        .expect("a request completes while a freeze waits");
    let edited = move_line(&text, endio, wait + 1);
    let r = run(&edited, kind, 24);
    assert!(r.ok, "{:#?}", r.divergence);
    assert!(r.reordered >= 1);
    let r = run(&edited, kind, 0);
    let d = r.divergence.expect("refused without a window");
    assert_eq!(d.line, wait - 1, "{d:#?}");
    assert!(
        d.why.contains("cannot wait for O's frozen queue to drain"),
        "{d:#?}"
    );
}

#[test]
fn a_primitive_the_spec_does_not_have_is_refused() {
    let (text, kind) = fixture("request");
    let l = lines_with(&text, "try_module_get(I->owner)")[0];
    let edited = edit_line(&text, l, |x| {
        x.replace("try_module_get(I->owner)", "kmalloc(I)")
    });
    let d = run(&edited, kind, 24).divergence.expect("refused");
    assert_eq!(d.line, l);
    assert!(d.why.contains("`kmalloc(I)` is not a primitive"), "{d:#?}");
}

#[test]
fn a_malformed_line_names_its_line() {
    let text = "# tracer: nop\n  fio-1 [000] ..... 5: blk_interposer_bio: 254,1 enter bio=zz val=0 arg=(null)\n";
    let e = match Trace::parse(text.into()) {
        Err(e) => e,
        Ok(_) => panic!("accepted a bad pointer"),
    };
    assert_eq!(e.line, 2);
    assert!(e.why.contains("`bio=` is not a pointer"), "{e}");
    let text = "  fio-1 [000] ..... 5: blk_interposer_bio: 254,1 teleport bio=1 val=0 arg=(null)\n";
    let e = Trace::parse(text.into()).expect_err("refused");
    assert!(e.why.contains("unknown step"), "{e}");
}

#[test]
fn a_trace_of_two_devices_needs_the_device() {
    let (a, _) = fixture("request");
    let (b, _) = fixture("bio_sync");
    let trace = Trace::parse(format!("{a}{b}")).unwrap();
    let e = replay(&spec(), Kind::Request, &trace, &ReplayOptions::default()).expect_err("refused");
    assert!(e.0.contains("name the original with --dev"), "{e}");
    let dev = trace.devices()[0].0;
    let r = replay(
        &spec(),
        Kind::Request,
        &trace,
        &ReplayOptions {
            dev: Some(dev),
            disk: None,
            window: 24,
            partial: false,
        },
    )
    .unwrap();
    assert!(r.ok, "{:#?}", r.divergence);
    let e = replay(
        &spec(),
        Kind::Request,
        &trace,
        &ReplayOptions {
            dev: Some(Dev::new(7, 7)),
            disk: None,
            window: 24,
            partial: false,
        },
    )
    .expect_err("no events of 7:7");
    assert!(e.0.contains("no events of device 7:7"), "{e}");
}

#[test]
fn a_pointer_read_that_no_attach_set_is_refused() {
    let (text, kind) = fixture("request");
    let read = lines_with(&text, " read_interposer ")
        .into_iter()
        .find(|&l| {
            !text
                .lines()
                .nth(l - 1)
                .unwrap()
                .contains("arg=0000000000000000")
        })
        .expect("a read of a set pointer");
    let edited = edit_line(&text, read, |l| {
        let at = l.find("arg=").unwrap() + 4;
        format!("{}ffff888000000040", &l[..at])
    });
    let d = run(&edited, kind, 24).divergence.expect("refused");
    assert_eq!(d.line, read, "{d:#?}");
    assert!(d.why.contains("which no attach set"), "{d:#?}");
}

/// A mutant's run that panicked (the queue freeze left out of attach: the
/// detach's freeze then hangs) dumped the trace buffer to the console
/// (`ftrace_dump_on_oops`); replayed up to the panic, it is refused where the
/// freeze is missing.
#[test]
fn a_panic_dump_replays_up_to_the_panic() {
    let (text, kind) = fixture("request-panic-dump");
    let trace = Trace::parse(text.clone()).expect("the console's dump parses");
    assert_eq!(trace.events.len(), 18);
    let opts = ReplayOptions {
        dev: None,
        disk: None,
        window: 24,
        partial: true,
    };
    let d = replay(&spec(), kind, &trace, &opts)
        .unwrap()
        .divergence
        .expect("refused");
    assert_eq!(d.line, lines_with(&text, " ptr_set ")[0], "{d:#?}");
    assert!(d.why.contains("blk_freeze_queue_start(O)"), "{d:#?}");
    // Cut before the pointer is set, the dump replays: a partial trace may end
    // with the controller inside attach.
    let cut: String = text
        .lines()
        .take(lines_with(&text, " ptr_set ")[0] - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let r = replay(&spec(), kind, &Trace::parse(cut).unwrap(), &opts).unwrap();
    assert!(r.ok, "{:#?}", r.divergence);
}

/// brd under fsync and O_DSYNC writes: an empty flush for a device without a
/// write cache completes on O's own path at once (the block layer reports it
/// as `driver_submit`); without that event the completion is refused.
#[test]
fn flushes_replay_clean_and_a_completion_outside_o_is_refused() {
    let (text, kind) = fixture("bio_sync-flushes");
    let r = run(&text, kind, 24);
    assert!(r.ok, "{:#?}", r.divergence);
    assert!(r.redirected >= 32, "the flushes went through I");
    let submit = lines_with(&text, "driver_submit")[0];
    let d = run(&without_lines(&text, &[submit]), kind, 24)
        .divergence
        .expect("refused");
    assert_eq!(d.line, submit, "{d:#?}");
    assert!(d.event.contains(" endio "), "{d:#?}");
    assert!(d.why.contains("not inside O"), "{d:#?}");
}

/// An interposer on a partition: its bios and pointer carry the partition's
/// number, its queue's freeze events the disk's (`--disk`). Without the disk's
/// events, the pointer is set on an unfrozen queue in the model's eyes.
#[test]
fn a_partition_replays_with_its_disk_queue() {
    let (text, kind) = fixture("bio_sync-partition");
    let trace = Trace::parse(text.clone()).unwrap();
    let opts = |disk| ReplayOptions {
        dev: Some(Dev::new(1, 9)),
        disk,
        window: 24,
        partial: false,
    };
    let r = replay(&spec(), kind, &trace, &opts(Some(Dev::new(1, 8)))).unwrap();
    assert!(r.ok, "{:#?}", r.divergence);
    assert_eq!(
        (r.bios, r.redirected),
        (3, 3),
        "three writes to the partition"
    );
    let r = replay(&spec(), kind, &trace, &opts(None)).unwrap();
    let d = r.divergence.expect("refused without the disk's freeze");
    assert!(d.event.contains("ptr_set"), "{d:#?}");
    assert!(d.why.contains("blk_freeze_queue_start(O)"), "{d:#?}");
}

/// null_blk removed while attached and written to: `del_gendisk()` marks it
/// dead and calls the removal callback, which freezes, clears the pointer,
/// unfreezes, blocks and frees the filter and drops the module reference; the
/// controller's detach then finds O dead (`-ENODEV`) and waits for the
/// callback by taking open_mutex once. And an attach that waited while O was
/// removed finds it dead. Edited: the callback without its clear, or freeing
/// the filter before blocking it, is refused at that step.
#[test]
fn removal_replays_clean_and_a_broken_callback_is_refused() {
    let (text, kind) = fixture("request-removal");
    let r = run(&text, kind, 24);
    assert!(r.ok, "{:#?}", r.divergence);
    assert!(text.contains("remove ret=1") && text.contains("bdev_check_alive(O) ret=-19"));
    // Clones I sent to the dead O failed in submit_bio_noacct() (BLK_STS_IOERR)
    // before their originals' passes returned.
    assert!(text.contains("endio") && text.contains("val=10"));
    let (waiting, kind) = fixture("request-removal-waiting-attach");
    let r = run(&waiting, kind, 24);
    assert!(r.ok, "{:#?}", r.divergence);
    assert!(waiting.contains("attach ret=-19"));

    let clear = lines_with(&text, "ptr_clear").pop().unwrap();
    let d = run(&without_lines(&text, &[clear]), kind, 24)
        .divergence
        .expect("a callback without its clear is refused");
    assert_eq!(d.line, clear, "{d:#?}");
    assert!(
        d.why
            .contains("removal's next step is on_remove: WRITE_ONCE(O->bd_interposer, NULL)"),
        "{d:#?}"
    );
    let free = lines_with(&text, "filter_free(I)").pop().unwrap();
    let block = lines_with(&text, "filter_block(I) ret=1").pop().unwrap();
    let d = run(&move_line(&text, free, block), kind, 24)
        .divergence
        .expect("freeing before blocking is refused");
    assert!(d.event.contains("filter_free(I)"), "{d:#?}");
    assert!(d.why.contains("filter_block(I)"), "{d:#?}");
}

/// A bio that completes with an error and never entered O's queue: its entry
/// failed because O is dead. Before del_gendisk() marked O dead the model's
/// entry succeeds, and the completion is refused.
#[test]
fn a_failed_queue_entry_is_a_step_only_once_o_is_dead() {
    let (text, kind) = fixture("request-removal");
    let dead = lines_with(&text, "freeze_start val=1").pop().unwrap();
    let failed = "             fio-999     [000] ...1.         5693: blk_interposer_bio: 254,2 endio bio=ffff8880000ab000 val=10 arg=0000000000000000";
    let after = edit_line(&text, dead, |l| format!("{l}\n{failed}"));
    let r = run(&after, kind, 0);
    assert!(r.ok, "{:#?}", r.divergence);
    let attach = lines_with(&text, "attach ret=0")[0];
    let before = edit_line(&text, attach, |l| format!("{l}\n{failed}"));
    let d = run(&before, kind, 0).divergence.expect("O is alive there");
    assert_eq!(d.line, attach + 1, "{d:#?}");
    assert!(
        d.why.contains("cannot complete") || d.why.contains("not inside O"),
        "{d:#?}"
    );
}

/// The bio of the `split` event at `line`, and the front it names.
fn split_parts(text: &str, line: usize) -> (String, String) {
    let l = text.lines().nth(line - 1).unwrap();
    let field = |k: &str| l.split(k).nth(1).unwrap()[..16].to_string();
    (field("bio="), field("arg="))
}

/// mkfs.ext4, the mount and an attach/detach cycle on a null_blk O: O splits
/// mkfs's large bios (the front goes on into O, the rest passes the hook
/// again), and more bios are in flight at once than the model's 17.
#[test]
fn an_ext4_stretch_with_splits_replays_clean() {
    let (text, kind) = fixture("request-ext4");
    let splits = lines_with(&text, " split ");
    assert!(splits.len() >= 10, "the stretch splits bios");
    let r = run(&text, kind, 24);
    assert!(r.ok, "{:#?}", r.divergence);
    assert!(r.attached >= 1 && r.detached >= 1 && r.redirected >= 3);
    assert!(
        r.slots > 40,
        "writeback keeps many bios in flight: {}",
        r.slots
    );
    // Each split's rest enters the hook again, and its front completes.
    let (bio, front) = split_parts(&text, splits[0]);
    assert!(lines_with(&text, &format!("enter bio={bio}"))
        .iter()
        .any(|&l| l > splits[0]));
    assert!(!lines_with(&text, &format!("endio bio={front}")).is_empty());
}

/// Without its `split` event, the rest's second entry into the hook is a
/// bio entering O's queue while it is inside O.
#[test]
fn a_split_left_out_is_refused_at_the_second_entry() {
    let (text, kind) = fixture("request-ext4");
    let split = lines_with(&text, " split ")[0];
    let (bio, _) = split_parts(&text, split);
    let again = *lines_with(&text, &format!("enter bio={bio}"))
        .iter()
        .find(|&&l| l > split)
        .expect("the rest enters again");
    let d = run(&without_lines(&text, &[split]), kind, 24)
        .divergence
        .expect("refused");
    assert_eq!(d.line, again - 1, "{d:#?}");
    assert!(d.event.contains("enter"), "{d:#?}");
    assert!(d.why.contains("cannot enter O's queue"), "{d:#?}");
}

/// A front that completes twice is refused at its second completion.
#[test]
fn a_front_completed_twice_is_refused() {
    let (text, kind) = fixture("request-ext4");
    let split = lines_with(&text, " split ")[0];
    let (_, front) = split_parts(&text, split);
    let endio = lines_with(&text, &format!("endio bio={front}"))[0];
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(endio, lines[endio - 1]);
    let edited: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let d = run(&edited, kind, 24).divergence.expect("refused");
    assert_eq!(d.line, endio + 1, "{d:#?}");
    assert!(d.why.contains("completed already"), "{d:#?}");
}
