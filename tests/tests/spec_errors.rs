//! Malformed specs are rejected with the file, line, column and a plain reason.

use quiesce_model::spec::Spec;
use std::path::Path;

const GOOD: &str = include_str!("../../model/specs/02-freeze-inside.toml");

fn err(text: &str) -> (usize, usize, String) {
    let all = Spec::parse(Path::new("bad.toml"), text).expect_err("must be rejected");
    let e = all.first();
    assert_eq!(e.file, "bad.toml");
    assert!(e
        .to_string()
        .starts_with(&format!("bad.toml:{}:{}: ", e.line, e.col)));
    (e.line, e.col, e.msg.clone())
}

/// Every error of a text, rendered.
fn all_errors(text: &str) -> Vec<String> {
    Spec::parse(Path::new("bad.toml"), text)
        .expect_err("must be rejected")
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

#[test]
fn the_good_spec_parses() {
    let s = Spec::parse(Path::new("good.toml"), GOOD).unwrap();
    assert_eq!(s.name, "freeze-inside");
    assert_eq!(s.protocol.hot_path.len(), 9);
    assert_eq!(s.sha256.len(), 64);
}

#[test]
fn bad_toml_names_line_and_column() {
    let text = GOOD.replace("submitters = 2", "submitters = = 2");
    let (line, col, msg) = err(&text);
    assert_eq!(line, line_of(&text, "submitters = = 2"));
    assert!(col > 1, "{msg}");
}

#[test]
fn unknown_control_step() {
    let text = GOOD.replacen(
        "\"blk_mq_freeze_queue(O)\",",
        "\"blk_mq_freez_queue(O)\",",
        1,
    );
    let (line, col, msg) = err(&text);
    assert_eq!(line, line_of(&text, "blk_mq_freez_queue"));
    assert_eq!(col, 3);
    assert!(msg.contains("unknown step `blk_mq_freez_queue`"), "{msg}");
}

#[test]
fn wrong_arguments() {
    let text = GOOD.replacen("\"dm_create(I)\"", "\"dm_create(O)\"", 1);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "dm_create(O)"));
    assert!(msg.contains("`dm_create` takes (I), not (O)"), "{msg}");
}

#[test]
fn unknown_hot_path_step() {
    let text = GOOD.replacen("\"set_marker\"", "\"set_markr\"", 1);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "set_markr"));
    assert!(msg.contains("unknown hot-path step `set_markr`"), "{msg}");
}

#[test]
fn unknown_label() {
    let text = GOOD.replacen("marked = \"submit\"", "marked = \"nowhere\"", 1);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "nowhere"));
    assert!(msg.contains("unknown label `nowhere`"), "{msg}");
}

#[test]
fn unknown_property() {
    let text = GOOD.replace("bio = [\"no_bypass\"]", "bio = [\"no_bypas\"]");
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "no_bypas\""));
    assert!(msg.contains("unknown property `no_bypas`"), "{msg}");
}

#[test]
fn impossible_bounds() {
    let text = GOOD.replace("submitters = 2", "submitters = 0");
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "submitters = 0"));
    assert_eq!(msg, "submitters must be between 1 and 4, not 0");
    let text = GOOD.replace("cycles = 1", "cycles = 300");
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "cycles = 300"));
    assert!(msg.contains("300"), "{msg}");
}

#[test]
fn driver_submit_without_queue_reference() {
    let text = GOOD.replacen("  \"bio_queue_enter\",\n", "", 1);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "label = \"submit\""));
    assert!(
        msg.contains("`driver_submit` may run without O's queue reference"),
        "{msg}"
    );
}

#[test]
fn redirect_without_pointer() {
    let text = GOOD.replacen(
        "  { step = \"read_interposer\", null = \"submit\" },\n",
        "",
        1,
    );
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "\"redirect\""));
    assert!(
        msg.contains("`redirect` may run without a non-NULL interposer pointer"),
        "{msg}"
    );
}

#[test]
fn failure_of_a_primitive_that_cannot_fail() {
    let text = GOOD.replace(
        "[protocol]",
        "[failures]\ninject = [\"mutex_unlock\"]\nmax = 1\n\n[protocol]",
    );
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "inject = "));
    assert!(
        msg.contains("`mutex_unlock` cannot fail in the kernel"),
        "{msg}"
    );
}

#[test]
fn unknown_field() {
    let text = GOOD.replace("[bounds]", "[bounds]\nthreads = 3");
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "threads = 3"));
    assert!(msg.contains("unknown field `threads`"), "{msg}");
}

#[test]
fn missing_verdict_for_a_kind() {
    let text = GOOD.replace("bio = [\"no_bypass\"]\n", "");
    let (_, _, msg) = err(&text);
    assert!(msg.contains("no verdict for kind `bio`"), "{msg}");
}

#[test]
fn out_of_range_bounds_say_the_same_thing_whatever_their_sign_or_source() {
    for v in ["-1", "9"] {
        let text = GOOD.replace("submitters = 2", &format!("submitters = {v}"));
        let (line, _, msg) = err(&text);
        assert_eq!(line, line_of(&text, "submitters = "));
        assert_eq!(msg, format!("submitters must be between 1 and 4, not {v}"));
    }
    let spec = Spec::parse(Path::new("good.toml"), GOOD).unwrap();
    let o = quiesce_model::spec::Overrides {
        submitters: Some(99),
        ..Default::default()
    };
    assert_eq!(
        spec.bounds.with(&o).unwrap_err(),
        "--submitters 99: submitters must be between 1 and 4, not 99"
    );
}

#[test]
fn every_error_at_once_in_source_order_with_caret() {
    let text = GOOD
        .replace("submitters = 2", "submitters = 9")
        .replacen("\"set_marker\"", "\"set_markr\"", 1)
        .replacen(
            "\"blk_mq_freeze_queue(O)\",",
            "\"blk_mq_freez_queue(O)\",",
            1,
        )
        .replace("bio = [\"no_bypass\"]", "bio = [\"no_bypas\"]");
    let errs = all_errors(&text);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    let lines: Vec<usize> = errs
        .iter()
        .map(|e| e.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "source order");
    // Each error shows its source line and a caret under the place.
    let e = &errs[0];
    let shown: Vec<&str> = e.lines().collect();
    assert_eq!(shown.len(), 3, "{e}");
    assert!(shown[1].ends_with("| submitters = 9"), "{e}");
    let bar = shown[1].find('|').unwrap();
    let caret = shown[2].find('^').unwrap();
    assert_eq!(&shown[1][caret..caret + 1], "9", "{e}");
    assert_eq!(shown[2].find('|'), Some(bar), "{e}");
}

#[test]
fn misspelt_names_get_a_suggestion() {
    for (from, to, want) in [
        (
            "\"set_marker\"",
            "\"set_markr\"",
            "did you mean `set_marker`?",
        ),
        (
            "\"blk_mq_freeze_queue(O)\",",
            "\"blk_mq_freez_queue(O)\",",
            "did you mean `blk_mq_freeze_queue`?",
        ),
        (
            "bio = [\"no_bypass\"]",
            "bio = [\"no_bypas\"]",
            "did you mean `no_bypass`?",
        ),
        (
            "marked = \"submit\"",
            "marked = \"submt\"",
            "did you mean `submit`?",
        ),
        (
            "[bounds]",
            "[bounds]\nsubmiters = 3",
            "did you mean `submitters`?",
        ),
        (
            "request = \"pass\"",
            "requst = \"pass\"",
            "did you mean `request`?",
        ),
    ] {
        let text = GOOD.replacen(from, to, 1);
        let errs = all_errors(&text);
        assert!(errs.iter().any(|e| e.contains(want)), "{to}: {errs:#?}");
    }
}

#[test]
fn whole_file_errors_have_no_zero_position() {
    let text = GOOD.replace("bio = [\"no_bypass\"]\n", "");
    let errs = all_errors(&text);
    assert!(!errs[0].contains(":0:0"), "{errs:?}");
    assert!(
        errs[0].starts_with(&format!("bad.toml:{}:1: ", line_of(&text, "[expect]"))),
        "{errs:?}"
    );
    let e = Spec::load(Path::new("/nonexistent/spec.toml")).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with("/nonexistent/spec.toml: cannot read spec"),
        "{shown}"
    );
    assert!(!shown.contains(":0"), "{shown}");
}

#[test]
fn contradictory_expectations_are_refused() {
    let text = GOOD.replace("request = \"pass\"", "all = \"pass\"");
    let (line, _, msg) = err(&text);
    assert!(msg.contains("contradictory expectations"), "{msg}");
    assert!(msg.contains("`all`") && msg.contains("`bio`"), "{msg}");
    assert!(line == line_of(&text, "all = ") || line == line_of(&text, "bio = "));
}

#[test]
fn installing_an_interposer_that_was_never_created_is_refused() {
    let text = GOOD.replacen("  \"dm_create(I)\",\n", "", 1);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "cmpxchg_interposer(O, I)"));
    assert!(
        msg.contains("uses I before it is created") && msg.contains("put `dm_create(I)`"),
        "{msg}"
    );
}

/// A filter interposer is created, held and drained with the filter's primitives:
/// a device-mapper primitive in its detach is refused at that step, by name.
#[test]
fn a_dm_primitive_in_a_filter_spec_is_refused_at_its_step() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../model/specs/15-filter-module.toml"),
    )
    .unwrap();
    let bad = text.replacen("  \"filter_block(I)\",\n", "  \"dm_suspend(I)\",\n", 1);
    assert_ne!(bad, text);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"dm_suspend(I)\""));
    assert!(
        msg.contains("`dm_suspend(I)` is a primitive of a `dm` interposer")
            && msg.contains("[interposer] kind = \"filter\"")
            && msg.contains("filter_block"),
        "{msg}"
    );
    // And an unknown interposer kind is refused where it is written.
    let unknown = text.replacen("kind = \"filter\"", "kind = \"bpf\"", 1);
    let (line, _, msg) = err(&unknown);
    assert_eq!(line, line_of(&unknown, "kind = \"bpf\""));
    assert!(msg.contains("bpf") && msg.contains("filter"), "{msg}");
}

/// An [expect] key that names no kind is refused where it stands, and the
/// message lists every kind a spec may name.
#[test]
fn an_unknown_expect_key_names_every_kind() {
    let text = GOOD.replacen("bio_sync = \"pass\"", "bio_synk = \"pass\"", 1);
    assert_ne!(text, GOOD);
    let all = Spec::parse(Path::new("bad.toml"), &text).expect_err("must be rejected");
    let e = all
        .0
        .iter()
        .find(|e| e.msg.contains("unknown key `bio_synk`"))
        .unwrap_or_else(|| panic!("no unknown-key error in: {all}"));
    assert_eq!(e.line, line_of(&text, "bio_synk = "));
    assert!(e.msg.contains("\"bio_sync\""), "{}", e.msg);
}

const PER_KIND: &str = include_str!("../../model/specs/17-hand-error-path-per-kind.toml");

#[test]
fn unknown_kind_in_only_names_the_step_and_the_kinds() {
    // On a step, and on an entry of a hand-written error path.
    let text = PER_KIND.replacen("only = \"bio\" },", "only = \"bo\" },", 1);
    let (line, col, msg) = err(&text);
    assert_eq!(line, line_of(&text, "only = \"bo\""));
    assert_eq!(col, 3);
    assert!(
        msg.contains("`only = \"bo\"`: unknown kind of original (did you mean `bio`?)"),
        "{msg}"
    );
    assert!(msg.contains("kinds: request, bio, bio_sync"), "{msg}");
    let text = PER_KIND.replace(
        "    { call = \"dm_internal_resume_fast(O)\", only = \"bio\" },\n    \"blkdev_put(I)\",",
        "    { call = \"dm_internal_resume_fast(O)\", only = \"bip\" },\n    \"blkdev_put(I)\",",
    );
    assert_ne!(text, PER_KIND);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "on_error = ["));
    assert!(msg.contains("`only = \"bip\"`"), "{msg}");
}

#[test]
fn unknown_call_in_an_error_path_is_named() {
    let text = PER_KIND.replace(
        "    \"blkdev_put(I)\",\n    \"dm_destroy(I)\",",
        "    \"blkdev_putt(I)\",\n    \"dm_destroy(I)\",",
    );
    assert_ne!(text, PER_KIND);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "on_error = ["));
    assert!(
        msg.contains("unknown step `blkdev_putt` (did you mean `blkdev_put`?)"),
        "{msg}"
    );
}

const RCU: &str = include_str!("../../model/specs/18-rcu-read-side.toml");

#[test]
fn an_rcu_section_that_may_sleep_or_leak_is_refused() {
    // bio_queue_enter inside the section: it may sleep on a frozen queue.
    let text = RCU.replacen(
        "  \"bio_queue_enter\",\n  { step = \"test_marker\", marked = \"submit\" },\n  \"rcu_read_lock\",",
        "  \"rcu_read_lock\",\n  \"bio_queue_enter\",\n  { step = \"test_marker\", marked = \"submit\" },",
        1,
    );
    assert_ne!(text, RCU);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "  \"bio_queue_enter\","));
    assert!(msg.contains("may sleep"), "{msg}");
    // The null path forgets its unlock: driver_submit may then run inside the section.
    let text = RCU.replace(
        "{ label = \"unlock\", step = \"rcu_read_unlock\" },",
        "{ label = \"unlock\", step = \"set_marker\" },",
    );
    let (line, _, msg) = err(&text);
    assert_eq!(
        line,
        line_of(&text, "{ label = \"submit\", step = \"driver_submit\" }")
    );
    assert!(msg.contains("`driver_submit` may sleep"), "{msg}");
    // An unlock on a path that took no lock (the marked path jumps past the lock).
    let text = RCU.replace(
        "{ step = \"test_marker\", marked = \"submit\" },",
        "{ step = \"test_marker\", marked = \"unlock\" },",
    );
    let (line, _, msg) = err(&text);
    assert_eq!(
        line,
        line_of(&text, "{ label = \"unlock\", step = \"rcu_read_unlock\" }")
    );
    assert!(msg.contains("may not have taken `rcu_read_lock`"), "{msg}");
    // Returning from the hook inside the section.
    let text = RCU.replace(
        "  \"redirect\",\n  \"rcu_read_unlock\",\n",
        "  \"redirect\",\n",
    );
    assert_ne!(text, RCU);
    let (_, _, msg) = err(&text);
    assert!(msg.contains("inside an RCU read-side section"), "{msg}");
}

#[test]
fn a_second_point_of_no_return_is_refused() {
    let text = include_str!("../../model/specs/19-point-of-no-return.toml").replace(
        "  \"blk_mq_unfreeze_queue(O)\",\n  { call = \"dm_internal_resume_fast(O)\", only = \"bio\" },",
        "  { call = \"blk_mq_unfreeze_queue(O)\", no_return = true },\n  { call = \"dm_internal_resume_fast(O)\", only = \"bio\" },",
    );
    let (line, col, msg) = err(&text);
    assert_eq!(
        line,
        line_of(
            &text,
            "{ call = \"blk_mq_unfreeze_queue(O)\", no_return = true }"
        )
    );
    assert_eq!(col, 3);
    let first = line_of(
        &text,
        "{ call = \"cmpxchg_interposer(O, I)\", no_return = true }",
    );
    assert!(
        msg.contains(&format!(
            "`attach` has a second point of no return (the first is on line {first})"
        )),
        "{msg}"
    );
}

const REMOVE: &str = include_str!("../../model/specs/20-remove-detaches.toml");

#[test]
fn a_removal_callback_is_checked_only_with_a_remover() {
    let text = REMOVE.replacen("remover = true", "remover = false", 1);
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "on_remove = ["));
    assert!(
        msg.contains("`on_remove` is never checked without a remover"),
        "{msg}"
    );
}

#[test]
fn a_removal_callback_may_not_lock_fail_or_unwind() {
    // open_mutex is the core's: the callback runs under it.
    let text = REMOVE.replacen(
        "on_remove = [\n  \"blk_mq_freeze_queue(O)\",",
        "on_remove = [\n  \"mutex_lock(open_mutex)\",",
        1,
    );
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "on_remove = [") + 1);
    assert!(
        msg.contains("`mutex_lock(open_mutex)` cannot run in `on_remove`")
            && msg.contains("allowed: blk_mq_freeze_queue"),
        "{msg}"
    );
    let text = REMOVE.replacen(
        "on_remove = [\n  \"blk_mq_freeze_queue(O)\",",
        "on_remove = [\n  { call = \"blk_mq_freeze_queue(O)\", only = \"bio\" },",
        1,
    );
    let (_, _, msg) = err(&text);
    assert!(
        msg.contains("take no `on_error`, `no_return`, `restart` or `only`"),
        "{msg}"
    );
}

/// A misspelt key in a step table is an error at that step, never ignored: a
/// `restrat = true` that passed silently would check a different protocol.
#[test]
fn an_unknown_key_in_a_step_is_refused_at_the_step() {
    const RESTART: &str = include_str!("../../model/specs/21-trylock-restart.toml");
    let old = "{ call = \"mutex_trylock(open_mutex)\", restart = true }";
    assert!(RESTART.contains(old));
    let text = RESTART.replace(
        old,
        "{ call = \"mutex_trylock(open_mutex)\", restrat = true }",
    );
    let (line, col, msg) = err(&text);
    assert_eq!(line, line_of(&text, "restrat"));
    assert_eq!(col, 3);
    assert!(
        msg.contains("unknown key `restrat` in this step (did you mean `restart`?)"),
        "{msg}"
    );
    let old = "{ step = \"test_marker\", marked = \"submit\" }";
    let text = RESTART.replace(
        old,
        "{ step = \"test_marker\", marked = \"submit\", lable = \"x\" }",
    );
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "lable"));
    assert!(msg.contains("unknown key `lable`"), "{msg}");
    let text = REMOVE.replacen(
        "\"mutex_unlock(open_mutex)\",",
        "{ call = \"mutex_unlock(open_mutex)\", on_error = [{ call = \"blk_mq_unfreeze_queue(O)\", onyl = \"bio\" }] },",
        1,
    );
    let (_, _, msg) = err(&text);
    assert!(msg.contains("unknown key `onyl`"), "{msg}");
}

const PARKS: &str = include_str!("../../model/specs/22-filter-parks.toml");
const WORKER_MARKS: &str = include_str!("../../model/specs/08c-task-marker-worker-marks.toml");

/// A parking interposer names how the parked bio is counted; anything else is
/// refused where it is written, with the choices.
#[test]
fn an_unknown_park_mode_is_refused_with_the_choices() {
    let bad = PARKS.replacen("park = \"counted\"", "park = \"sometimes\"", 1);
    assert_ne!(bad, PARKS);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "park = \"sometimes\""));
    assert!(
        msg.contains("sometimes") && msg.contains("counted") && msg.contains("uncounted"),
        "{msg}"
    );
}

/// `worker_marks` sets a task marker: with a bio flag it means nothing, and
/// the spec is refused at the key rather than checked as if it did.
#[test]
fn worker_marks_without_a_task_marker_is_refused_at_the_key() {
    let bad = WORKER_MARKS.replacen("kind = \"task\"", "kind = \"bio_flag\"", 1);
    assert_ne!(bad, WORKER_MARKS);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "worker_marks = true"));
    assert!(
        msg.contains("worker_marks") && msg.contains("marker.kind = \"task\""),
        "{msg}"
    );
}

const NOWAIT: &str = include_str!("../../model/specs/23-nowait.toml");

/// A submitter path the model does not know is refused where it is written,
/// with the known ones; an empty list is refused too (no submitter could send).
#[test]
fn an_unknown_or_empty_submitter_path_is_refused() {
    let bad = NOWAIT.replacen("\"nowait\"]", "\"sg_io\"]", 1);
    assert_ne!(bad, NOWAIT);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"sg_io\""));
    assert!(
        msg.contains("sg_io") && msg.contains("submit_bio") && msg.contains("nowait"),
        "{msg}"
    );
    let empty = NOWAIT.replacen("paths = [\"submit_bio\", \"nowait\"]", "paths = []", 1);
    assert_ne!(empty, NOWAIT);
    let (line, _, msg) = err(&empty);
    assert_eq!(line, line_of(&empty, "paths = []"));
    assert!(msg.contains("`paths` is empty"), "{msg}");
}

/// `blk_queue_enter` is a queue enter for the static checks too: a second one
/// inside the reference is refused by name.
#[test]
fn a_nested_blk_queue_enter_is_refused_by_name() {
    let bad = NOWAIT.replacen(
        "  \"bio_queue_enter\",\n",
        "  \"bio_queue_enter\",\n  \"blk_queue_enter\",\n",
        1,
    );
    assert_ne!(bad, NOWAIT);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"blk_queue_enter\""));
    assert!(
        msg.contains("`blk_queue_enter` while this pass may already hold O's queue reference"),
        "{msg}"
    );
}

/// `clear_marker` clears a task marker; with a bio flag it is refused rather
/// than read as a no-op.
#[test]
fn clear_marker_without_a_task_marker_is_refused() {
    let text = include_str!("../../model/specs/24-task-marker-clear-after-redirect.toml")
        .replacen("kind = \"task\"", "kind = \"bio_flag\"", 1)
        .replacen("worker_marks = true\n", "", 1);
    let all = all_errors(&text);
    assert!(
        all.iter()
            .any(|e| e.contains("`clear_marker` clears a task marker")
                && e.contains("marker.kind = \"task\"")),
        "{all:?}"
    );
}

const PHASES: &str = include_str!("../../model/specs/25-dm-phases.toml");

/// Device-mapper's phases come in order: a resume before preresume, or a
/// preresume before the table is loaded, is refused at the step with the
/// order it needs.
#[test]
fn dm_phases_out_of_order_are_refused_at_the_step() {
    let bad = PHASES.replacen(
        "  \"dm_table_load(I)\",\n  \"dm_preresume(I)\",\n",
        "  \"dm_preresume(I)\",\n  \"dm_table_load(I)\",\n",
        1,
    );
    assert_ne!(bad, PHASES);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"dm_preresume(I)\""));
    assert!(
        msg.contains("`dm_preresume(I)`")
            && msg.contains("needs `dm_table_load(I)` before it")
            && msg.contains("create, load, preresume, resume"),
        "{msg}"
    );
    let no_preresume = PHASES.replacen("  \"dm_preresume(I)\",\n", "", 1);
    let (line, _, msg) = err(&no_preresume);
    assert_eq!(line, line_of(&no_preresume, "\"dm_resume(I)\""));
    assert!(msg.contains("needs `dm_preresume(I)` before it"), "{msg}");
}

/// `rmmod` unloads a filter's owner module; a device-mapper interposer's
/// modules are pinned by device-mapper, so the bound is refused at the key.
#[test]
fn rmmod_with_a_dm_interposer_is_refused_at_the_key() {
    let text = include_str!("../../model/specs/25-dm-phases.toml").replacen(
        "cycles = 2\n",
        "cycles = 2\nrmmod = true\n",
        1,
    );
    let (line, _, msg) = err(&text);
    assert_eq!(line, line_of(&text, "rmmod = true"));
    assert!(
        msg.contains("`rmmod` unloads a filter's owner module")
            && msg.contains("[interposer] kind = \"filter\""),
        "{msg}"
    );
}

const PASSTHROUGH: &str = include_str!("../../model/specs/27-passthrough-refused.toml");

/// A passthrough submitter needs the list its requests run, and a list needs
/// a submitter: either alone is refused where it is written, not ignored.
#[test]
fn passthrough_path_and_list_come_together() {
    let start = PASSTHROUGH.find("passthrough = [").unwrap();
    let end = start + PASSTHROUGH[start..].find("]\n").unwrap() + 2;
    let no_list = format!("{}{}", &PASSTHROUGH[..start], &PASSTHROUGH[end..]);
    let (line, _, msg) = err(&no_list);
    assert_eq!(line, line_of(&no_list, "paths = "));
    assert!(
        msg.contains("no `passthrough` list") && msg.contains("blk_queue_enter"),
        "{msg}"
    );
    let no_path = PASSTHROUGH.replacen(
        "paths = [\"submit_bio\", \"passthrough\"]",
        "paths = [\"submit_bio\"]",
        1,
    );
    assert_ne!(no_path, PASSTHROUGH);
    let (line, _, msg) = err(&no_path);
    assert_eq!(line, line_of(&no_path, "passthrough = ["));
    assert!(
        msg.contains("no submitter's path is `passthrough`"),
        "{msg}"
    );
}

/// Only a request-based (blk-mq) O has passthrough requests.
#[test]
fn passthrough_on_a_bio_based_original_is_refused_at_kinds() {
    let bad = PASSTHROUGH.replacen("kinds = [\"request\"]", "kinds = [\"request\", \"bio\"]", 1);
    assert_ne!(bad, PASSTHROUGH);
    let all = all_errors(&bad);
    assert!(
        all.iter()
            .any(|e| e.contains("needs a request-based original")
                && e.contains("a bio O has no passthrough requests")),
        "{all:?}"
    );
}

/// A passthrough list takes only what a request can do: it cannot be marked or
/// handed to I, it enters with blk_queue_enter (blk_mq_alloc_request); and
/// `fail_busy` belongs to requests, not to a bio's pass.
#[test]
fn steps_of_the_wrong_list_are_refused_by_name() {
    let bad = PASSTHROUGH.replacen("  \"fail_busy\",\n", "  \"redirect\",\n", 1);
    assert_ne!(bad, PASSTHROUGH);
    let (line, _, msg) = err(&bad);
    let lines: Vec<_> = bad.lines().collect();
    let last = lines
        .iter()
        .rposition(|l| l.contains("\"redirect\""))
        .unwrap()
        + 1;
    assert_eq!(line, last);
    assert!(
        msg.contains("`redirect` is not a passthrough step") && msg.contains("fail_busy"),
        "{msg}"
    );
    let bad = PASSTHROUGH.replacen(
        "passthrough = [\n  \"blk_queue_enter\"",
        "passthrough = [\n  \"bio_queue_enter\"",
        1,
    );
    assert_ne!(bad, PASSTHROUGH);
    let (_, _, msg) = err(&bad);
    assert!(
        msg.contains("`bio_queue_enter` is not a passthrough step"),
        "{msg}"
    );
    let bad = PASSTHROUGH.replacen(
        "  \"blk_queue_exit\",\n  \"return\",",
        "  \"fail_busy\",\n  \"return\",",
        1,
    );
    assert_ne!(bad, PASSTHROUGH);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"fail_busy\""));
    assert!(msg.contains("`fail_busy` is a passthrough step"), "{msg}");
    let bad = PASSTHROUGH.replacen("  \"fail_busy\",\n", "  \"fail_bsy\",\n", 1);
    let (_, _, msg) = err(&bad);
    assert!(
        msg.contains("unknown passthrough step `fail_bsy`")
            && msg.contains("did you mean `fail_busy`"),
        "{msg}"
    );
}

/// A passthrough request issued without the allocation's queue reference is
/// refused by the same flow check as a bio, naming the request's enter.
#[test]
fn passthrough_driver_submit_without_the_allocation_is_refused() {
    let bad = PASSTHROUGH.replacen(
        "passthrough = [\n  \"blk_queue_enter\",\n",
        "passthrough = [\n",
        1,
    );
    assert_ne!(bad, PASSTHROUGH);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "{ label = \"issue\""));
    assert!(
        msg.contains("`driver_submit` may run without O's queue reference; put `blk_queue_enter`"),
        "{msg}"
    );
}

const SPLIT_BIO_LIST: &str = include_str!("../../model/specs/28b-split-bio-list-test.toml");

/// `test_bio_list` jumps where `set` says; without it, or with `set` on
/// another step, the spec is refused at the step.
#[test]
fn test_bio_list_needs_its_target_and_owns_it() {
    let bad = SPLIT_BIO_LIST.replacen(
        "{ step = \"test_bio_list\", set = \"submit\" }",
        "\"test_bio_list\"",
        1,
    );
    assert_ne!(bad, SPLIT_BIO_LIST);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"test_bio_list\""));
    assert!(
        msg.contains("`test_bio_list` needs a jump target") && msg.contains("set = \"submit\""),
        "{msg}"
    );
    let bad = SPLIT_BIO_LIST.replacen(
        "{ step = \"read_interposer\", null = \"submit\" }",
        "{ step = \"read_interposer\", set = \"submit\" }",
        1,
    );
    assert_ne!(bad, SPLIT_BIO_LIST);
    let all = all_errors(&bad);
    assert!(
        all.iter()
            .any(|e| e.contains("`read_interposer` takes no jump target")
                || e.contains("`read_interposer` needs a jump target")),
        "{all:?}"
    );
}

const REFCOUNT: &str = include_str!("../../model/specs/29-filter-refcount.toml");

/// A filter that bios hold references on is freed by its last reference:
/// `filter_free` would free it under them, and a device-mapper I has no such
/// reference; both are refused where they are written.
#[test]
fn a_refcounted_filter_is_put_not_freed() {
    let bad = REFCOUNT.replacen("  \"filter_put(I)\",\n", "  \"filter_free(I)\",\n", 1);
    assert_ne!(bad, REFCOUNT);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"filter_free(I)\""));
    assert!(
        msg.contains("`filter_free(I)` frees a filter that bios hold references on")
            && msg.contains("filter_put(I)"),
        "{msg}"
    );
    let bad = REFCOUNT.replacen("kind = \"filter\"", "kind = \"dm\"", 1);
    assert_ne!(bad, REFCOUNT);
    let all = all_errors(&bad);
    assert!(
        all.iter()
            .any(|e| e.contains("`filter_get` takes a reference on a filter")),
        "{all:?}"
    );
    let bad = REFCOUNT.replacen(
        "  \"rcu_read_lock\",\n  { step = \"read_interposer\", null = \"unlock\" },\n  \"filter_get\",",
        "  \"rcu_read_lock\",\n  \"filter_get\",\n  { step = \"read_interposer\", null = \"unlock\" },",
        1,
    );
    assert_ne!(bad, REFCOUNT);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"filter_get\""));
    assert!(
        msg.contains("`filter_get` may run without a non-NULL interposer pointer"),
        "{msg}"
    );
}

/// A split of a passthrough request or a REQ_NOWAIT bio is not modelled: the
/// spec is refused at its paths, not checked with a split the kernel does not
/// make.
#[test]
fn split_beside_nowait_or_passthrough_is_refused() {
    let text = include_str!("../../model/specs/28-split.toml");
    let bad = text.replacen(
        "[bounds]",
        "[submitters]\npaths = [\"submit_bio\", \"nowait\"]\n\n[bounds]",
        1,
    );
    assert_ne!(bad, text);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "paths = "));
    assert!(
        msg.contains("split = true with a `nowait` submitter is not modelled"),
        "{msg}"
    );
}

const TRYGET: &str = include_str!("../../model/specs/31-filter-tryget-kfree-rcu.toml");

/// How a filter is freed is a filter's key with two values, for bounds the
/// model's kfree_rcu bits cover; each mistake is named where it is written.
#[test]
fn a_filter_release_is_kfree_or_kfree_rcu() {
    let bad = TRYGET.replacen("release = \"kfree_rcu\"", "release = \"vfree\"", 1);
    assert_ne!(bad, TRYGET);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "release = \"vfree\""));
    assert!(
        msg.contains("unknown release `vfree`; known: kfree, kfree_rcu"),
        "{msg}"
    );
    let bad = TRYGET.replacen(
        "controllers = 1\ncycles = 2",
        "controllers = 2\ncycles = 2",
        1,
    );
    assert_ne!(bad, TRYGET);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "release = \"kfree_rcu\""));
    assert!(
        msg.contains("modelled for at most 3 filters") && msg.contains("make 4"),
        "{msg}"
    );
    let bad = TRYGET.replacen("kind = \"filter\"", "kind = \"dm\"", 1);
    assert_ne!(bad, TRYGET);
    let all = all_errors(&bad);
    assert!(
        all.iter()
            .any(|e| e.contains("`release` says how a filter is freed")),
        "{all:?}"
    );
}

/// `filter_tryget` jumps when the count is zero, so it needs a target, and
/// it reads the filter the pointer names, so it needs the pointer loaded.
#[test]
fn filter_tryget_needs_its_target_and_a_loaded_pointer() {
    let bad = TRYGET.replacen(
        "{ step = \"filter_tryget\", zero = \"unlock\" }",
        "\"filter_tryget\"",
        1,
    );
    assert_ne!(bad, TRYGET);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"filter_tryget\""));
    assert!(
        msg.contains("`filter_tryget` needs a jump target, e.g. { step = \"filter_tryget\", zero = \"submit\" }"),
        "{msg}"
    );
    let bad = TRYGET.replacen(
        "  { step = \"read_interposer\", null = \"unlock\" },\n  { step = \"filter_tryget\", zero = \"unlock\" },",
        "  { step = \"filter_tryget\", zero = \"unlock\" },\n  { step = \"read_interposer\", null = \"unlock\" },",
        1,
    );
    assert_ne!(bad, TRYGET);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "\"filter_tryget\""));
    assert!(
        msg.contains("`filter_tryget` may run without a non-NULL interposer pointer"),
        "{msg}"
    );
    let bad = TRYGET.replacen("zero = \"unlock\"", "zero = \"unlok\"", 1);
    let (_, _, msg) = err(&bad);
    assert!(msg.contains("jump to unknown label `unlok`"), "{msg}");
}

const REUSE: &str = include_str!("../../model/specs/32-remove-then-reuse.toml");

/// A disk reusing O's dev_t needs the removal it follows, and a call finds O
/// by its opened file or by dev_t; each mistake is named where it is written.
#[test]
fn reuse_needs_a_remover_and_lookup_is_file_or_dev_t() {
    let bad = REUSE.replacen("remover = true\n", "", 1);
    assert_ne!(bad, REUSE);
    let all = all_errors(&bad);
    assert!(
        all.iter()
            .any(|e| e.contains("`reuse` lets a new disk take O's dev_t")
                && e.contains("needs `remover = true`")),
        "{all:?}"
    );
    let bad = REUSE.replacen("[protocol]\n", "[protocol]\nlookup = \"path\"\n", 1);
    assert_ne!(bad, REUSE);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "lookup = \"path\""));
    assert!(msg.contains("unknown lookup `path`; known: file"), "{msg}");
    let bad = REUSE.replacen(
        "detach = [\n  \"mutex_lock(open_mutex)\",",
        "detach = [\n  { call = \"mutex_trylock(open_mutex)\", restart = true },",
        1,
    );
    assert_ne!(bad, REUSE);
    let (line, _, msg) = err(&bad);
    assert_eq!(line, line_of(&bad, "reuse = true"));
    assert!(
        msg.contains("`reuse` beside a call that restarts is not modelled"),
        "{msg}"
    );
    let bad = REUSE.replacen("filesystem = false", "filesystem = true", 1);
    assert_ne!(bad, REUSE);
    let all = all_errors(&bad);
    assert!(
        all.iter()
            .any(|e| e.contains("`reuse` with a filesystem on O is not modelled")),
        "{all:?}"
    );
}
