//! Malformed specs are rejected with the file, line, column and a plain reason.

use quiesce_model::spec::Spec;
use std::path::Path;

const GOOD: &str = include_str!("../../model/specs/02-freeze-inside.toml");

fn err(text: &str) -> (usize, usize, String) {
    let e = Spec::parse(Path::new("bad.toml"), text).expect_err("must be rejected");
    assert_eq!(e.file, "bad.toml");
    assert!(e
        .to_string()
        .starts_with(&format!("bad.toml:{}:{}: ", e.line, e.col)));
    (e.line, e.col, e.msg)
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
    assert!(msg.contains("impossible bound: submitters = 0"), "{msg}");
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
