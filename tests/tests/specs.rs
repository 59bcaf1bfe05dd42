//! The shipped specs: pinned state counts (a regression gate on the model's
//! semantics), the violations each must show, and the counterexamples'
//! soundness: every trace replays through the model and ends in a state
//! that breaks the property it names.

use quiesce_model::check::{check_kind, shortest_counterexamples, CheckOptions};
use quiesce_model::spec::{Kind, Spec, SAFETY};
use quiesce_model::Quiesce;
use stateright::Model;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn spec(file: &str) -> Spec {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../model/specs")
        .join(file);
    Spec::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn kind(k: &str) -> Kind {
    Kind::by_name(k).unwrap_or_else(|| panic!("unknown kind {k}"))
}

/// (spec file, kind, unique states with symmetry, violated safety properties)
const PINNED: &[(&str, &str, usize, &[&str])] = &[
    // dm_suspend(I) waits for I's clones deferred in a suspended O (10,105 states and
    // a false use-after-free before that fix).
    ("14-drain-outside-mutex.toml", "bio", 9329, &[]),
    (
        "01-v7-as-posted.toml",
        "request",
        581,
        &[
            "no_use_after_free",
            "no_bypass",
            "exactly_once",
            "clean_exit",
        ],
    ),
    (
        "01-v7-as-posted.toml",
        "bio",
        581,
        &[
            "no_use_after_free",
            "no_bypass",
            "exactly_once",
            "clean_exit",
        ],
    ),
    (
        "01b-v7-detach-during-submit.toml",
        "request",
        640,
        &[
            "no_use_after_free",
            "no_bypass",
            "exactly_once",
            "clean_exit",
        ],
    ),
    ("02-freeze-inside.toml", "request", 1454, &[]),
    ("02-freeze-inside.toml", "bio", 1454, &["no_bypass"]),
    ("02-freeze-inside.toml", "bio_sync", 948, &[]),
    (
        "02b-freeze-inside-v7-hook.toml",
        "request",
        263,
        &["no_bypass"],
    ),
    ("03-freeze-bdev-raw.toml", "bio", 1958, &["no_bypass"]),
    ("03b-freeze-bdev-fs.toml", "bio", 1287, &[]),
    ("04-converged.toml", "request", 265866, &[]),
    ("04-converged.toml", "bio", 793484, &[]),
    ("04b-converged-remove.toml", "request", 6450, &[]),
    ("04b-converged-remove.toml", "bio", 13294, &[]),
    (
        "05-freeze-order-deadlock.toml",
        "request",
        203,
        &["no_deadlock"],
    ),
    (
        "05-freeze-order-deadlock.toml",
        "bio",
        206,
        &["no_deadlock"],
    ),
    (
        "06-no-marker.toml",
        "request",
        196,
        &["exactly_once", "no_recursion"],
    ),
    (
        "07-clone-drops-flag.toml",
        "request",
        224,
        &["exactly_once", "no_recursion"],
    ),
    ("08-suspend-i-first.toml", "request", 1832, &[]),
    ("08-suspend-i-first.toml", "bio", 1721, &["no_bypass"]),
    (
        "08b-task-marker.toml",
        "request",
        2812,
        &["exactly_once", "no_recursion"],
    ),
    (
        "09-suspend-i-then-free.toml",
        "request",
        1487,
        &["exactly_once"],
    ),
    (
        "10-store-two-controllers.toml",
        "request",
        6448,
        &["no_bypass", "clean_exit", "single_owner"],
    ),
    (
        "11-hand-error-path.toml",
        "request",
        2527,
        &["no_deadlock", "clean_exit"],
    ),
    (
        "12-detach-interruptible.toml",
        "request",
        2330,
        &["clean_exit"],
    ),
    ("12-detach-interruptible.toml", "bio", 6052, &["clean_exit"]),
    (
        "13-detach-checks-alive.toml",
        "request",
        6432,
        &["clean_exit"],
    ),
    ("13-detach-checks-alive.toml", "bio", 13937, &["clean_exit"]),
    // Removal detaches through the callback (issue 11, item 1).
    ("20-remove-detaches.toml", "request", 85699, &[]),
    ("20-remove-detaches.toml", "bio", 198455, &[]),
    ("20-remove-detaches.toml", "bio_sync", 54578, &[]),
    (
        "20b-remove-frees-unblocked.toml",
        "request",
        94825,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "20b-remove-frees-unblocked.toml",
        "bio",
        219995,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "20c-detach-after-remove-unchecked.toml",
        "request",
        87589,
        &["no_use_after_free", "clean_exit", "point_of_no_return"],
    ),
    (
        "20c-detach-after-remove-unchecked.toml",
        "bio",
        195651,
        &["no_use_after_free", "clean_exit", "point_of_no_return"],
    ),
    (
        "20d-attach-after-remove-unchecked.toml",
        "request",
        105238,
        &["clean_exit"],
    ),
    (
        "20d-attach-after-remove-unchecked.toml",
        "bio",
        220382,
        &["clean_exit"],
    ),
    ("15-filter-module.toml", "request", 1085546, &[]),
    ("15-filter-module.toml", "bio", 1218374, &[]),
    ("15-filter-module.toml", "bio_sync", 764698, &[]),
    (
        "15b-filter-free-unblocked.toml",
        "request",
        2148,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "15b-filter-free-unblocked.toml",
        "bio",
        5569,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "15b-filter-free-unblocked.toml",
        "bio_sync",
        1395,
        &["no_use_after_free", "exactly_once"],
    ),
    // A check-then-set in two steps (test_interposer, then store_interposer).
    ("16-test-then-store.toml", "request", 3292, &[]),
    ("16-test-then-store.toml", "bio", 5557, &[]),
    (
        "16b-test-then-store-unlocked.toml",
        "request",
        5556,
        &["no_bypass", "clean_exit", "single_owner"],
    ),
    (
        "16b-test-then-store-unlocked.toml",
        "bio",
        9978,
        &["no_bypass", "clean_exit", "single_owner"],
    ),
    // `only` on an entry of a hand-written error path.
    ("17-hand-error-path-per-kind.toml", "request", 2709, &[]),
    ("17-hand-error-path-per-kind.toml", "bio", 5133, &[]),
    ("17b-hand-error-path-no-resume.toml", "request", 2709, &[]),
    (
        "17b-hand-error-path-no-resume.toml",
        "bio",
        5405,
        &["exactly_once", "no_deadlock", "clean_exit"],
    ),
    // The pointer read under RCU; detach with and without a grace period.
    ("18-rcu-read-side.toml", "request", 8946, &[]),
    ("18-rcu-read-side.toml", "bio", 25841, &[]),
    (
        "18b-rcu-no-grace-period.toml",
        "request",
        12946,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "18b-rcu-no-grace-period.toml",
        "bio",
        38977,
        &["no_use_after_free", "exactly_once"],
    ),
    // A point of no return in attach and detach, kept and broken.
    ("19-point-of-no-return.toml", "request", 4750, &[]),
    ("19-point-of-no-return.toml", "bio", 8433, &[]),
    (
        "19b-fails-after-no-return.toml",
        "request",
        5637,
        &["no_use_after_free", "exactly_once", "point_of_no_return"],
    ),
    (
        "19b-fails-after-no-return.toml",
        "bio",
        10284,
        &["no_use_after_free", "exactly_once", "point_of_no_return"],
    ),
    // A call that restarts when it meets a held mutex: liveness under weak fairness.
    ("21-trylock-restart.toml", "request", 5575, &[]),
    (
        "21b-freeze-then-trylock-livelock.toml",
        "request",
        8074,
        &["bios_complete", "calls_return"],
    ),
    // I's workers set the task marker: 08b's recursion is gone.
    ("08c-task-marker-worker-marks.toml", "request", 2394, &[]),
    // A copy-on-write filter parks bios for a worker: counted in flight, the
    // drain waits for them; uncounted, the worker runs in the freed filter.
    ("22-filter-parks.toml", "request", 10593, &[]),
    ("22-filter-parks.toml", "bio", 20070, &[]),
    (
        "22b-filter-parks-uncounted.toml",
        "request",
        17533,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "22b-filter-parks-uncounted.toml",
        "bio",
        31235,
        &["no_use_after_free", "exactly_once"],
    ),
    // REQ_NOWAIT bios fail with EAGAIN at the hook's bio_queue_enter; a hook
    // entering with blk_queue_enter(q, 0) sleeps on a frozen O.
    ("23-nowait.toml", "request", 7083, &[]),
    ("23-nowait.toml", "bio", 24878, &[]),
    (
        "23b-nowait-blk-queue-enter.toml",
        "request",
        7083,
        &["nowait_never_blocks"],
    ),
    (
        "23b-nowait-blk-queue-enter.toml",
        "bio",
        24878,
        &["nowait_never_blocks"],
    ),
    // A task marker whose lifetime the hook owns (clear_marker): cleared after
    // the redirect, the queued clone recurses; cleared by the returning clone,
    // the task stays marked when I defers the bio.
    (
        "24-task-marker-clear-after-redirect.toml",
        "request",
        3224,
        &["no_recursion", "exactly_once"],
    ),
    (
        "24b-task-marker-clear-in-clone.toml",
        "request",
        3459,
        &["clean_exit"],
    ),
    // Device-mapper's phases: everything that can fail before the publish; the
    // load and preresume after it fail past the point of no return.
    ("25-dm-phases.toml", "request", 9741, &[]),
    ("25-dm-phases.toml", "bio", 20951, &[]),
    (
        "25b-dm-phases-load-after-publish.toml",
        "request",
        14014,
        &["no_use_after_free", "exactly_once", "point_of_no_return"],
    ),
    (
        "25b-dm-phases-load-after-publish.toml",
        "bio",
        33562,
        &["no_use_after_free", "exactly_once", "point_of_no_return"],
    ),
    // rmmod of the filter's owner module whenever it is unpinned: pinned until
    // the filter is drained and freed, it is safe; unpinned before the drain,
    // a clone's end_io runs in the unloaded module.
    ("26-filter-rmmod.toml", "request", 4643, &[]),
    ("26-filter-rmmod.toml", "bio", 12414, &[]),
    (
        "26b-filter-rmmod-put-early.toml",
        "request",
        6009,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "26b-filter-rmmod-put-early.toml",
        "bio",
        16116,
        &["no_use_after_free", "exactly_once"],
    ),
    // Passthrough requests skip the bio hook: refused with -EBUSY under the
    // allocation's queue reference, they never reach O behind I; unchecked, or
    // checked before the allocation, they do.
    ("27-passthrough-refused.toml", "request", 2778, &[]),
    (
        "27b-passthrough-skips-interposer.toml",
        "request",
        2511,
        &["no_bypass"],
    ),
    (
        "27c-passthrough-check-before-enter.toml",
        "request",
        3721,
        &["no_bypass"],
    ),
    // O splits bios and resubmits the rest through the hook: BIO_INTERPOSED
    // stays on the rest of I's clone; a hook that tells clones by
    // current->bio_list lets an original's rest bypass I, and on a bio-based
    // O sends I's clone that dm's worker resubmits to I again.
    ("28-split.toml", "request", 26538, &[]),
    ("28-split.toml", "bio", 85037, &[]),
    (
        "28b-split-bio-list-test.toml",
        "request",
        23227,
        &["no_bypass"],
    ),
    (
        "28b-split-bio-list-test.toml",
        "bio",
        113407,
        &["no_bypass", "exactly_once", "no_recursion"],
    ),
    // The same hook with a device stacked on O instead of splits: S's clones
    // pass O's hook from inside S->submit_bio and skip I.
    (
        "28c-stacked-bio-list-test.toml",
        "request",
        3880,
        &["no_bypass"],
    ),
    (
        "28c-stacked-bio-list-test.toml",
        "bio",
        27841,
        &["no_bypass", "exactly_once", "no_recursion"],
    ),
    // A refcounted filter: a reference per bio taken under RCU, the last one
    // frees it; without the reference, or without the grace period, the
    // filter is freed under a bio.
    ("29-filter-refcount.toml", "request", 13704, &[]),
    ("29-filter-refcount.toml", "bio", 43375, &[]),
    (
        "29b-filter-refcount-no-get.toml",
        "request",
        17268,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "29b-filter-refcount-no-get.toml",
        "bio",
        53527,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "29c-filter-refcount-no-grace-period.toml",
        "request",
        15254,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "29c-filter-refcount-no-grace-period.toml",
        "bio",
        49550,
        &["no_use_after_free", "exactly_once"],
    ),
    // The module reference owned by the refcounted filter, dropped by its
    // release at the last reference; dropped by detach instead, rmmod unloads
    // the code a clone still runs.
    // refcount_inc_not_zero on a filter freed with kfree_rcu: no grace period
    // in detach; with refcount_inc, with kfree, or outside the read-side
    // section, a reader uses a released or freed filter.
    ("31-filter-tryget-kfree-rcu.toml", "request", 22320, &[]),
    ("31-filter-tryget-kfree-rcu.toml", "bio", 71431, &[]),
    (
        "31b-filter-get-kfree-rcu.toml",
        "request",
        24704,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "31b-filter-get-kfree-rcu.toml",
        "bio",
        80151,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "31c-filter-tryget-kfree.toml",
        "request",
        15254,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "31c-filter-tryget-kfree.toml",
        "bio",
        49550,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "31d-filter-tryget-outside-rcu.toml",
        "request",
        25560,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "31d-filter-tryget-outside-rcu.toml",
        "bio",
        82002,
        &["no_use_after_free", "exactly_once"],
    ),
    // A new disk takes O's dev_t after del_gendisk(O): detach on the block
    // device attach opened is safe; looked up by dev_t, it works on the new
    // disk.
    ("32-remove-then-reuse.toml", "request", 185657, &[]),
    ("32-remove-then-reuse.toml", "bio", 436977, &[]),
    ("32-remove-then-reuse.toml", "bio_sync", 118753, &[]),
    (
        "32b-remove-then-reuse-by-dev-t.toml",
        "request",
        220337,
        &[
            "no_use_after_free",
            "no_bypass",
            "clean_exit",
            "point_of_no_return",
        ],
    ),
    (
        "32b-remove-then-reuse-by-dev-t.toml",
        "bio",
        505177,
        &[
            "no_use_after_free",
            "no_bypass",
            "clean_exit",
            "point_of_no_return",
        ],
    ),
    (
        "32b-remove-then-reuse-by-dev-t.toml",
        "bio_sync",
        139659,
        &["no_use_after_free", "clean_exit", "point_of_no_return"],
    ),
    ("30-filter-refcount-rmmod.toml", "request", 15293, &[]),
    ("30-filter-refcount-rmmod.toml", "bio", 46160, &[]),
    (
        "30b-filter-refcount-rmmod-put-in-detach.toml",
        "request",
        21168,
        &["no_use_after_free", "exactly_once"],
    ),
    (
        "30b-filter-refcount-rmmod-put-in-detach.toml",
        "bio",
        64372,
        &["no_use_after_free", "exactly_once"],
    ),
];

#[test]
fn every_shipped_spec_is_pinned() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".toml") {
            let s = spec(&name);
            for k in &s.kinds {
                assert!(
                    PINNED
                        .iter()
                        .any(|(f, kk, _, _)| *f == name && kind(kk) == *k),
                    "{name} [{k}] has no pinned state count"
                );
            }
        }
    }
}

#[test]
fn shipped_specs_meet_expectations_with_pinned_state_counts() {
    for &(file, k, states, violated) in PINNED {
        let s = spec(file);
        let r = check_kind(&s, kind(k), &CheckOptions::default()).unwrap();
        assert_eq!(
            r.unique_states, states,
            "{file} [{k}]: unique states changed"
        );
        let got: BTreeSet<_> = r.violated().into_iter().collect();
        let want: BTreeSet<_> = violated.iter().copied().collect();
        assert_eq!(got, want, "{file} [{k}]: violated properties");
        assert!(r.met, "{file} [{k}]: {:?}", r.mismatch);
        for p in &r.properties {
            if p.verdict == "violated" {
                let t = p.trace.as_ref().expect("a violation has a trace");
                assert!(!t.is_empty(), "{file} [{k}] {}: empty trace", p.name);
                assert!(p.explorer_path.as_ref().unwrap().starts_with("0/"));
            }
        }
    }
}

/// Each review race is found by a shipped spec, with this many steps (the shortest).
#[test]
fn review_races_are_found_with_shortest_counterexamples() {
    // (spec, kind, property, steps, what the last step does)
    let cases: &[(&str, &str, &str, usize, &str)] = &[
        // detach frees I while a bio is about to enter I->submit_bio
        (
            "01b-v7-detach-during-submit.toml",
            "request",
            "no_use_after_free",
            22,
            "I->submit_bio(bio1.1)",
        ),
        // a queue freeze does not quiesce a bio-based original: split-brain dual completion
        (
            "02-freeze-inside.toml",
            "bio",
            "no_bypass",
            13,
            "attach() returns 0",
        ),
        (
            "03-freeze-bdev-raw.toml",
            "bio",
            "no_bypass",
            15,
            "attach() returns 0",
        ),
        // resubmitted bios recurse without a marker
        (
            "06-no-marker.toml",
            "request",
            "no_recursion",
            15,
            "I->submit_bio(clone of bio1.1)",
        ),
    ];
    for &(file, k, prop, len, last) in cases {
        let s = spec(file);
        let m = Quiesce::new(s.protocol.clone(), kind(k), s.bounds);
        let found = shortest_counterexamples(&m, &BTreeSet::from([prop]));
        let (init, steps) = found
            .get(prop)
            .unwrap_or_else(|| panic!("{file}: {prop} not found"));
        assert_eq!(
            steps.len(),
            len,
            "{file} [{k}] {prop}: counterexample length"
        );
        let said = m.describe(&steps.last().unwrap().0);
        assert!(
            said.ends_with(last),
            "{file}: the race ends with `{said}`, not `{last}`"
        );
        // Replay: every action is enabled where it is taken and leads to the recorded state.
        let mut state = init.clone();
        assert_eq!(&state, &m.init_states()[0]);
        for (a, next) in steps {
            let mut acts = Vec::new();
            m.actions(&state, &mut acts);
            assert!(acts.contains(a), "{file}: {} is not enabled", m.describe(a));
            let n = m.next_state(&state, *a).unwrap();
            assert_eq!(&n, next);
            state = n;
        }
        let p = m.properties().into_iter().find(|p| p.name == prop).unwrap();
        assert!(
            !(p.condition)(&m, &state),
            "{file}: last state does not violate {prop}"
        );
        // And no strict prefix violates it (the path is minimal along itself).
        let mut st = init.clone();
        assert!((p.condition)(&m, &st));
        for (_, next) in &steps[..steps.len() - 1] {
            st = next.clone();
            assert!(
                (p.condition)(&m, &st),
                "{file}: {prop} violated before the end"
            );
        }
    }
}

/// Symmetry reduction must not change any verdict.
#[test]
fn symmetry_preserves_verdicts() {
    for file in [
        "02-freeze-inside.toml",
        "08b-task-marker.toml",
        "04b-converged-remove.toml",
        "03b-freeze-bdev-fs.toml",
    ] {
        let s = spec(file);
        for &k in &s.kinds {
            let with = check_kind(&s, k, &CheckOptions::default()).unwrap();
            let without = check_kind(
                &s,
                k,
                &CheckOptions {
                    symmetry: false,
                    ..CheckOptions::default()
                },
            )
            .unwrap();
            assert_eq!(with.violated(), without.violated(), "{file} [{k}]");
            assert!(
                with.unique_states < without.unique_states,
                "{file} [{k}]: symmetry reduced nothing"
            );
        }
    }
}

/// Larger bounds than the default still prove the converged protocol (one kind, kept small).
#[test]
fn converged_holds_with_more_bios() {
    let s = spec("04-converged.toml");
    let opts = CheckOptions {
        overrides: quiesce_model::spec::Overrides {
            bios: Some(2),
            controllers: Some(1),
            cycles: Some(1),
            ..Default::default()
        },
        ..CheckOptions::default()
    };
    for k in [Kind::Request, Kind::Bio] {
        let r = check_kind(&s, k, &opts).unwrap();
        assert!(r.violated().is_empty(), "{k}: {:?}", r.violated());
        assert!(r.unique_states > 1000);
    }
    assert_eq!(SAFETY.len(), 9);
}

/// The same breadth-first search gives each sanity property a shortest example (the
/// Explorer links them): it replays, ends in a state where the property holds, and no
/// earlier state on it already reaches the property.
#[test]
fn sanity_properties_get_shortest_examples() {
    let s = spec("04-converged.toml");
    let model = Quiesce::new(s.protocol.clone(), Kind::Bio, s.bounds);
    let names: BTreeSet<&'static str> = ["bio_redirected", "attach_under_io"].into();
    let found = shortest_counterexamples(&model, &names);
    let props = model.properties();
    let mut lens = Vec::new();
    for name in &names {
        let (init, steps) = found.get(name).unwrap_or_else(|| panic!("{name} reached"));
        let p = props.iter().find(|p| p.name == *name).unwrap();
        let mut cur = init.clone();
        assert!(!(p.condition)(&model, &cur), "{name} at the initial state");
        for (i, (a, next)) in steps.iter().enumerate() {
            let n = model.next_state(&cur, *a).expect("replays");
            assert_eq!(&n, next, "{name} step {}", i + 1);
            let last = i + 1 == steps.len();
            assert_eq!((p.condition)(&model, &n), last, "{name} step {}", i + 1);
            cur = n;
        }
        lens.push((*name, steps.len()));
    }
    // Pinned: attach_under_io needs a whole attach (mutex, create, open, O suspend,
    // freeze, set, unfreeze, resume, unlock, return) with a bio submitted; a bio
    // redirected needs the attach and the bio's way through the hook to I.
    assert_eq!(lens, [("attach_under_io", 13), ("bio_redirected", 15)]);
}

/// `no_bypass` holds from attach's return until detach clears the pointer: a bio
/// inside O that skipped I breaks it in detach's head too (the pointer still set),
/// and no longer once detach has cleared the pointer.
#[test]
fn no_bypass_covers_detach_until_the_pointer_is_cleared() {
    use quiesce_model::model::{Ip, Loc, Phase};
    let s = spec("15-filter-module.toml");
    let m = Quiesce::new(s.protocol.clone(), Kind::Request, s.bounds);
    let prop = m
        .properties()
        .into_iter()
        .find(|p| p.name == "no_bypass")
        .unwrap();
    let mut st = m.init_states().remove(0);
    st.bios[0].loc = Loc::InO;
    st.bios[0].via = None;
    let holds = |st: &quiesce_model::model::State| (prop.condition)(&m, st);
    assert!(holds(&st), "nothing attached: no promise yet");
    st.ctls[0].phase = Phase::Attached;
    st.ptr = Some(Ip { c: 0, gen: 0 });
    assert!(!holds(&st), "attached, a bio inside O that skipped I");
    st.ctls[0].phase = Phase::Detach;
    st.ctls[0].pc = 1;
    assert!(!holds(&st), "detach's head: the pointer is still set");
    st.ptr = None;
    assert!(holds(&st), "the pointer is cleared: the promise has ended");
}

/// The kernel spec freezes O's filesystem (`filesystem = true`); on a raw device
/// `bdev_freeze` only syncs (and takes the freeze count), which the model's
/// `filesystem = false` has it do. The
/// module runs the same procedures on both, so both must pass.
#[test]
fn the_kernel_spec_passes_without_a_filesystem_too() {
    let mut s = spec("15-filter-module.toml");
    assert!(
        s.protocol.filesystem,
        "the kernel spec declares a filesystem"
    );
    s.protocol.filesystem = false;
    // bdev_freeze takes O's freeze count even with no filesystem: an attach
    // that fails after it thaws O on its way out (1,142,554, 2,679,516 and
    // 727,100 states while the model had it take nothing).
    let pinned = [
        (Kind::Request, 1563498),
        (Kind::Bio, 3562872),
        (Kind::BioSync, 989220),
    ];
    for &k in &s.kinds {
        let r = check_kind(&s, k, &CheckOptions::default()).unwrap();
        let want = pinned
            .iter()
            .find(|p| p.0 == k)
            .expect("every kind pinned")
            .1;
        assert_eq!(
            r.unique_states, want,
            "15-filter-module [{k}] without a filesystem: unique states"
        );
        assert!(
            r.incomplete.is_none(),
            "15-filter-module [{k}] without a filesystem: incomplete"
        );
        assert!(
            r.violated().is_empty(),
            "15-filter-module [{k}] without a filesystem: {:?}",
            r.violated()
        );
    }
}

/// A point of no return on a step that runs for one kind only holds for that kind:
/// on the others the step never runs, and a later failure breaks nothing.
#[test]
fn a_point_of_no_return_of_another_kind_is_no_point_of_no_return() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs/19-point-of-no-return.toml"),
    )
    .unwrap()
    .replacen(
        "{ call = \"dm_internal_suspend_fast(O)\", only = \"bio\" },",
        "{ call = \"dm_internal_suspend_fast(O)\", only = \"bio\", no_return = true },",
        1,
    )
    .replacen(
        "{ call = \"cmpxchg_interposer(O, I)\", no_return = true },",
        "\"cmpxchg_interposer(O, I)\",",
        1,
    );
    let s = Spec::parse(std::path::Path::new("19-ponr-on-suspend.toml"), &text).unwrap();
    let opts = CheckOptions::default();
    // bio: cmpxchg_interposer's EBUSY (two controllers) comes after the suspend.
    let bio = check_kind(&s, Kind::Bio, &opts).unwrap();
    assert!(
        bio.violated().contains(&"point_of_no_return"),
        "{:?}",
        bio.violated()
    );
    let req = check_kind(&s, Kind::Request, &opts).unwrap();
    assert!(
        !req.violated().contains(&"point_of_no_return"),
        "{:?}",
        req.violated()
    );
}
