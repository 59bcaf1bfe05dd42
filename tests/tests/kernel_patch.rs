//! The C hook in kmod/patches follows the hot path that was checked: the order of
//! its operations is the order of `generated::route_steps`, and it sits where the
//! spec puts it, right after `bio_queue_enter()` on both submission paths.

use quiesce_generated as g;
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

/// The C that implements each hot-path step inside the hook.
fn c_of(step: &str) -> Option<&'static str> {
    Some(match step {
        "test_marker" => "if (bio_flagged(bio, BIO_INTERPOSED))",
        "read_interposer" => "ip = READ_ONCE(bio->bi_bdev->bd_interposer);",
        "set_marker" => "bio_set_flag(bio, BIO_INTERPOSED);",
        "redirect" => "ip->submit_bio(ip, bio);",
        _ => return None,
    })
}

fn pos(hay: &str, needle: &str) -> usize {
    hay.find(needle)
        .unwrap_or_else(|| panic!("the patch lacks `{needle}`"))
}

#[test]
fn hook_follows_the_checked_hot_path() {
    let text = patch();
    let start = pos(
        &text,
        "+bool blk_interposer_submit_bio(struct bio *bio)\n+{",
    );
    let body = &text[start..start + pos(&text[start..], "\n+}\n")];
    // Taking over a bio: the steps the checked path runs, in its order.
    assert_eq!(g::route(false, true), g::Route::ToInterposer);
    let mut at = 0;
    for step in g::route_steps(false, true) {
        if let Some(c) = c_of(step) {
            let p = pos(&body[at..], c) + at;
            assert!(p >= at, "`{c}` ({step}) is out of order in the hook");
            at = p;
        }
    }
    // A marked bio and a device without an interposer go down the device's own path.
    assert_eq!(g::route(true, true), g::Route::ToOriginal);
    assert_eq!(g::route(false, false), g::Route::ToOriginal);
    assert!(body.find(c_of("test_marker").unwrap()) < body.find(c_of("read_interposer").unwrap()));
    // The marker is copied to clones, as the checked spec's `clone_inherits` says.
    assert!(text.contains(
        "+\tif (bio_flagged(bio_src, BIO_INTERPOSED))\n+\t\tbio_set_flag(bio, BIO_INTERPOSED);"
    ));
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
