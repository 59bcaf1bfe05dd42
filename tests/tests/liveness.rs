//! Liveness under weak fairness (`quiesce_model::live`): the fair-cycle search
//! finds the restart livelock of spec 21b with a lasso that really loops, it
//! does not report the restart cycles of spec 21 (none of them is fair), and
//! a spec without a restarting step has no cycle at all.

use quiesce_model::check::{check_kind, CheckOptions};
use quiesce_model::live;
use quiesce_model::model::Quiesce;
use quiesce_model::spec::{Kind, Spec};
use stateright::Model;
use std::path::PathBuf;

fn spec(file: &str) -> Spec {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../model/specs")
        .join(file);
    Spec::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn model(file: &str) -> Quiesce {
    let s = spec(file);
    Quiesce::new(s.protocol.clone(), Kind::Request, s.bounds)
}

#[test]
fn the_freeze_then_trylock_livelock_is_a_lasso_that_loops() {
    let m = model("21b-freeze-then-trylock-livelock.toml");
    let out = live::check(&m, usize::MAX);
    assert!(out.incomplete.is_none());
    assert_eq!(out.states, 8074);
    assert!(out.cyclic_components > 0);
    for prop in live::LIVENESS {
        let v = out.violated(prop).unwrap_or_else(|| panic!("{prop} holds"));
        let l = &v.lasso;
        assert!(!l.cycle.is_empty(), "{prop}: an empty cycle");
        // Replay: every step is an action the model allows where it is taken,
        // and the cycle ends in the state where it began.
        let mut at = l.init.clone();
        let mut acts = Vec::new();
        for (a, after) in l.prefix.iter().chain(&l.cycle) {
            acts.clear();
            m.actions(&at, &mut acts);
            assert!(acts.contains(a), "{prop}: {a:?} is not enabled");
            assert_eq!(m.next_state(&at, *a).as_ref(), Some(after));
            at = after.clone();
        }
        let begin = l.prefix.last().map_or(&l.init, |(_, s)| s);
        assert_eq!(&at, begin, "{prop}: the cycle does not return to its start");
        // The detaching controller is the one starved: it can run after each
        // unfreeze, and attach freezes again first.
        assert_eq!(v.starved, ["controller 1"], "{prop}: {:?}", v.starved);
    }
    assert_eq!(
        out.violated("calls_return").unwrap().what,
        "controller 1's detach() never returns"
    );
    assert_eq!(
        out.violated("bios_complete").unwrap().what,
        "sb1 never completes"
    );
}

#[test]
fn the_report_marks_where_the_loop_begins_and_says_why() {
    let s = spec("21b-freeze-then-trylock-livelock.toml");
    let r = check_kind(&s, Kind::Request, &CheckOptions::default()).unwrap();
    assert!(r.met, "{:?}", r.mismatch);
    let p = r
        .properties
        .iter()
        .find(|p| p.name == "calls_return")
        .unwrap();
    assert_eq!(p.expectation, "eventually");
    assert_eq!(p.verdict, "violated");
    let t = p.trace.as_ref().unwrap();
    let from = p.loop_start.unwrap();
    assert!(
        from >= 2 && from <= t.len(),
        "loop_start {from} of {}",
        t.len()
    );
    assert!(
        t[from - 1..]
            .iter()
            .any(|s| s.action.contains("returns -ERESTARTSYS; the call restarts")),
        "the loop restarts attach"
    );
    let why = p.reason.as_ref().unwrap();
    assert!(
        why.starts_with(&format!(
            "controller 1's detach() never returns: steps {from}-{} repeat forever",
            t.len()
        )),
        "{why}"
    );
    assert!(why.contains("controller 1 can run at times"), "{why}");
    let l = r.liveness.as_ref().unwrap();
    assert_eq!(l.states, 8074);
}

#[test]
fn restart_cycles_that_are_not_fair_are_no_livelock() {
    let m = model("21-trylock-restart.toml");
    let out = live::check(&m, usize::MAX);
    assert!(out.incomplete.is_none());
    // The restarts do make cycles: the search has something to refute.
    assert!(out.cyclic_components > 100, "{}", out.cyclic_components);
    assert!(out.violations.is_empty(), "{:?}", out.violations[0].what);
}

#[test]
fn without_a_restarting_step_every_run_is_finite() {
    // The liveness search is on by default only for specs that restart: the
    // others have no cycle, so their liveness is no_deadlock's.
    for file in ["04b-converged-remove.toml", "20-remove-detaches.toml"] {
        let s = spec(file);
        assert!(!s.protocol.may_loop());
        let r = check_kind(&s, s.kinds[0], &CheckOptions::default()).unwrap();
        assert!(r.liveness.is_none(), "{file}: ran without being asked");
        let r = check_kind(
            &s,
            s.kinds[0],
            &CheckOptions {
                liveness: Some(true),
                ..CheckOptions::default()
            },
        )
        .unwrap();
        let l = r.liveness.as_ref().unwrap();
        assert_eq!(l.cyclic_components, 0, "{file}");
        assert!(l.states >= r.unique_states, "{file}");
    }
}

#[test]
fn a_hot_path_that_restarts_its_pass_is_searched_by_default() {
    // v7's hook resubmits a bio it bounced (`restart`): runs may loop, so the
    // fair-cycle search runs without being asked. Its passes all end.
    let s = spec("01-v7-as-posted.toml");
    assert!(!s.protocol.restarts() && s.protocol.may_loop());
    let r = check_kind(&s, Kind::Request, &CheckOptions::default()).unwrap();
    assert!(r.liveness.is_some());
    for p in r
        .properties
        .iter()
        .filter(|p| p.expectation == "eventually")
    {
        assert_eq!(p.verdict, "holds", "{}", p.name);
    }
}

#[test]
fn a_restart_on_a_step_that_cannot_fail_is_refused() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs/21-trylock-restart.toml"),
    )
    .unwrap();
    let text = text.replace(
        "\"mutex_unlock(open_mutex)\",\n]",
        "{ call = \"mutex_unlock(open_mutex)\", restart = true },\n]",
    );
    let e = Spec::parse(std::path::Path::new("bad.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`restart = true` on `mutex_unlock(open_mutex)`, which cannot fail"),
        "{e}"
    );
    assert!(e.contains("bad.toml:"), "{e}");
}
