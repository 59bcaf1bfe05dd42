//! The C hook in kmod/patches is the hot path that was checked: its route is
//! rendered from the kernel spec (`quiesce gen`), a reordered spec renders reordered
//! C, a hot path with no C meaning is refused, and the hook sits where the spec puts
//! it, right after `bio_queue_enter()` on both submission paths.

use quiesce_codegen::chook;
use quiesce_generated as g;
use quiesce_model::spec::Spec;
use std::path::PathBuf;

fn patch() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kmod/patches");
    let mut text = String::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        text.push_str(&std::fs::read_to_string(p).unwrap());
    }
    text
}

fn spec(name: &str) -> Spec {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../model/specs")
        .join(name);
    Spec::load(&p).expect("spec parses")
}

/// The converged spec with its hot path's first two tests swapped (read the pointer,
/// then test the marker): still a valid protocol, a different C hook.
fn reordered() -> Spec {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs/04-converged.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let a = "  { step = \"test_marker\", marked = \"submit\" },\n";
    let b = "  { step = \"read_interposer\", null = \"submit\" },\n";
    let swapped = text.replacen(&format!("{a}{b}"), &format!("{b}{a}"), 1);
    assert_ne!(swapped, text, "the converged hot path moved");
    Spec::parse(&p, &swapped).expect("the reordered spec parses")
}

fn pos(hay: &str, needle: &str) -> usize {
    hay.find(needle)
        .unwrap_or_else(|| panic!("the patch lacks `{needle}`"))
}

fn at(lines: &[String], c: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(c))
        .unwrap_or_else(|| panic!("the rendered hook lacks `{c}`:\n{}", lines.join("\n")))
}

/// No hand-written C decides where a bio goes: the hook calls the route rendered from
/// the kernel spec, and the rendered patch in the series is what the spec renders.
#[test]
fn the_c_route_is_rendered_from_the_kernel_spec() {
    let kernel = spec("15-filter-module.toml");
    let report = chook_report(&kernel);
    let rendered = chook::render_patch(&kernel, &report).expect("renders");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kmod/patches");
    let shipped = std::fs::read_to_string(dir.join(chook::PATCH_NAME)).expect("shipped");
    assert_eq!(
        shipped, rendered,
        "run `quiesce gen model/specs/15-filter-module.toml`"
    );
    let text = patch();
    assert!(text.contains(
        "+bool __blk_interposer_submit_bio(struct bio *bio)\n+{\n+\treturn blk_interposer_route(bio);\n+}"
    ));
    assert!(text.contains("+#include \"blk-interposer-route.h\"\n"));
    // Outside the rendered patch, no C reads the pointer or enters the interposer.
    for (name, body) in text.split("\nFrom ").map(|p| {
        (
            p.lines().find(|l| l.starts_with("Subject:")).unwrap_or(""),
            p,
        )
    }) {
        if name.contains("rendered from a spec") {
            continue;
        }
        for c in [
            "READ_ONCE(bio->bi_bdev->bd_interposer)",
            "ip->submit_bio(ip, bio)",
        ] {
            assert!(!body.contains(c), "hand-written `{c}` in {name}");
        }
    }
    // The marker is copied to clones for the same device, as the checked spec's
    // `clone_inherits` says, and dropped when a bio moves to another device.
    assert!(text.contains(
        "+\t\tif (bio->bi_bdev == bio_src->bi_bdev &&\n+\t\t    bio_flagged(bio_src, BIO_INTERPOSED))\n+\t\t\tbio_set_flag(bio, BIO_INTERPOSED);"
    ));
    assert!(text.contains("+\t\tbio_clear_flag(bio, BIO_INTERPOSED);"));
}

/// The rendered C follows the spec's order: swap two steps and the C swaps too.
#[test]
fn a_reordered_hot_path_renders_reordered_c() {
    let marker = "if (bio_flagged(bio, BIO_INTERPOSED))";
    let read = "ip = READ_ONCE(bio->bi_bdev->bd_interposer);";
    let c = chook::route_lines(&spec("04-converged.toml")).unwrap();
    assert!(at(&c, marker) < at(&c, read));
    assert!(at(&c, read) < at(&c, "bio_set_flag(bio, BIO_INTERPOSED);"));
    assert!(at(&c, "ip->submit_bio(ip, bio);") < at(&c, "return true;"));
    let r = chook::route_lines(&reordered()).unwrap();
    assert!(at(&r, read) < at(&r, marker), "{}", r.join("\n"));
    assert_eq!(c.len(), r.len());
}

/// Hot paths with no C meaning in the hook are refused with the step and the reason.
#[test]
fn hot_paths_without_a_c_meaning_are_refused() {
    let err = chook::route_lines(&spec("02b-freeze-inside-v7-hook.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hot path step 1 `test_marker` cannot be rendered")
            && err.contains("must start with `bio_queue_enter`"),
        "{err}"
    );
    let err = chook::route_lines(&spec("08b-task-marker.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("only the `bio_flag` marker"), "{err}");
}

fn chook_report(s: &Spec) -> quiesce_model::check::SpecReport {
    quiesce_codegen::check(s).expect("the kernel spec passes")
}

#[test]
fn hook_runs_under_the_queue_reference_on_both_paths() {
    let text = patch();
    // The checked path starts with bio_queue_enter and ends with blk_queue_exit.
    let steps = g::route_steps(false, true);
    assert_eq!(steps.first(), Some(&"bio_queue_enter"));
    assert!(steps.contains(&"blk_queue_exit"));
    // bio-based: __submit_bio() takes the reference, then the hook is the first branch,
    // ahead of the branches that end in the device's own ->submit_bio (the unchanged
    // code after them drops the reference).
    let core = &text[pos(&text, "diff --git a/block/blk-core.c")..];
    let enter = pos(core, "bio_queue_enter(bio) == 0");
    let hook = pos(core, "+\t\tif (blk_interposer_submit_bio(bio)) {");
    let driver = pos(core, "+\t\t} else if ((bio->bi_opf & REQ_POLLED) &&");
    assert!(enter < hook && hook < driver, "__submit_bio order");
    // blk-mq: right after the block that takes bio_queue_enter() (or uses a cached
    // request's reference), a taken bio leaves through queue_exit, which drops it.
    let mq = &text[pos(&text, "diff --git a/block/blk-mq.c")..];
    let enter = pos(mq, "return;\n \t}\n");
    let hook = pos(
        mq,
        "+\tif (blk_interposer_submit_bio(bio))\n+\t\tgoto queue_exit;",
    );
    assert!(enter < hook, "blk_mq_submit_bio order");
}
