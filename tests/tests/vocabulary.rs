//! New vocabulary step by step in the model: a split (spec 28: the front goes
//! into O holding its own queue reference, the rest passes the hook again, and
//! the bio completes once, when the last of its parts does) and a refcounted
//! filter (spec 29: freed by its last reference).

use quiesce_model::model::{fx, held, rcu, Action, Loc, Quiesce, State};
use quiesce_model::spec::{HotOp, Kind, Spec};
use stateright::Model;
use std::path::PathBuf;

/// A shipped spec and its model of one kind.
fn load(file: &str, kind: Kind) -> (Spec, Quiesce) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../model/specs")
        .join(file);
    let spec = Spec::load(&path).unwrap();
    let m = Quiesce::new(spec.protocol.clone(), kind, spec.bounds);
    (spec, m)
}

fn model(kind: Kind) -> Quiesce {
    load("28-split.toml", kind).1
}

/// Take the enabled action whose description contains `what`.
fn take(m: &Quiesce, s: &State, what: &str) -> State {
    let mut acts = Vec::new();
    m.actions(s, &mut acts);
    let a: Action = acts
        .iter()
        .copied()
        .find(|a| m.describe(a).contains(what))
        .unwrap_or_else(|| {
            let all: Vec<_> = acts.iter().map(|a| m.describe(a)).collect();
            panic!("no enabled action `{what}` among {all:?}")
        });
    m.next_state(s, a).unwrap()
}

fn enabled(m: &Quiesce, s: &State, what: &str) -> bool {
    let mut acts = Vec::new();
    m.actions(s, &mut acts);
    acts.iter().any(|a| m.describe(a).contains(what))
}

#[test]
fn a_split_bio_completes_once_when_its_last_part_does() {
    // After the split, one queue reference: blk-mq's front request took the
    // pass's; a bio-based O's pass still holds its own until blk_queue_exit.
    for (kind, front_qref) in [(Kind::Request, fx::FRONT_QREF), (Kind::Bio, 0)] {
        let m = model(kind);
        let mut s = m.init_states().remove(0);
        s = take(&m, &s, "submitter 1: submit_bio(bio1.1)");
        s = take(&m, &s, "bio_queue_enter(O) [bio1.1]");
        s = take(&m, &s, "bio_flagged(bio1.1");
        s = take(&m, &s, "READ_ONCE(O->bd_interposer) [bio1.1]");
        s = take(&m, &s, "splits it");
        let b = s.bios[0];
        assert_eq!(b.fr & fx::FRONT_IN_O, fx::FRONT_IN_O, "{kind}: front in O");
        assert_eq!(b.fr & fx::FRONT_I, 0, "{kind}: the front skipped I");
        assert_eq!(b.fr & fx::FRONT_QREF, front_qref, "{kind}");
        assert_eq!(m.qrefs(&s), 1, "{kind}");
        assert!(!enabled(&m, &s, "splits it"), "{kind}: once per bio");
        // The pass drops its reference (a bio-based O) and returns; the rest
        // is the same bio on current->bio_list and passes the hook again.
        s = take(&m, &s, "blk_queue_exit(O) [bio1.1]");
        assert_eq!(s.bios[0].loc, Loc::Carried, "{kind}: the rest is carried");
        assert_eq!(s.bios[0].pc, 0, "{kind}: from the hook's first step");
        s = take(&m, &s, "bio_queue_enter(O) [bio1.1]");
        s = take(&m, &s, "bio_flagged(bio1.1");
        s = take(&m, &s, "READ_ONCE(O->bd_interposer) [bio1.1]");
        s = take(&m, &s, "submit_bio(bio1.1)");
        s = take(&m, &s, "blk_queue_exit(O) [bio1.1]");
        // O completes the rest first: chained, not done.
        s = take(&m, &s, "O: bio_endio(bio1.1)");
        assert_eq!(s.bios[0].loc, Loc::Chained, "{kind}");
        assert_eq!(s.bios[0].done, 0, "{kind}: not completed before its front");
        s = take(&m, &s, "front of bio1.1");
        assert_eq!(s.bios[0].loc, Loc::Done, "{kind}");
        assert_eq!(s.bios[0].done, 1, "{kind}: completed exactly once");
        assert_eq!(m.qrefs(&s), 0, "{kind}: every reference dropped");
    }
}

/// Every state of spec 29 (a refcounted filter), breadth-first.
fn all_states(m: &Quiesce) -> Vec<State> {
    let mut seen = std::collections::HashSet::new();
    let mut todo = m.init_states();
    let mut out = Vec::new();
    while let Some(s) = todo.pop() {
        if !seen.insert(s.clone()) {
            continue;
        }
        let mut acts = Vec::new();
        m.actions(&s, &mut acts);
        todo.extend(acts.into_iter().filter_map(|a| m.next_state(&s, a)));
        out.push(s);
    }
    out
}

/// The filter of spec 29 outlives its detach while a clone holds a
/// reference, and is freed by the clone's completion, the last reference.
#[test]
fn a_refcounted_filter_is_freed_by_its_last_reference() {
    let (_, m) = load("29-filter-refcount.toml", Kind::Request);
    let ip = quiesce_model::model::Ip { c: 0, gen: 0 };
    let mut outlived = 0;
    let mut freed_by_completion = 0;
    for s in all_states(&m) {
        let held = s
            .bios
            .iter()
            .any(|b| b.fr & fx::IREF != 0 && b.via == Some(ip));
        let detached = s.ctls[0].igen == 0 && s.ctls[0].ilife == quiesce_model::model::ILife::Freed;
        if held && detached {
            outlived += 1;
            assert!(!m.freed(&s, ip), "a reference keeps the filter alive");
            let mut acts = Vec::new();
            m.actions(&s, &mut acts);
            for a in acts {
                if matches!(a, Action::Complete { .. }) {
                    let t = m.next_state(&s, a).unwrap();
                    if !t.bios.iter().any(|b| b.fr & fx::IREF != 0) {
                        assert!(m.freed(&t, ip), "the last reference frees it");
                        freed_by_completion += 1;
                    }
                }
            }
        }
    }
    assert!(outlived > 0, "no run had a clone outlive detach");
    assert!(
        freed_by_completion > 0,
        "no completion dropped the last reference"
    );
}

/// Spec 30's module reference belongs to the filter: after detach, a clone
/// holding the filter keeps the module loaded (no `rmmod` is offered), and
/// the completion that drops the last reference makes `rmmod` possible.
#[test]
fn a_filter_owning_the_module_reference_pins_it_to_its_last_reference() {
    let (_, m) = load("30-filter-refcount-rmmod.toml", Kind::Request);
    let mut pinned_by_clone = 0;
    let mut released_by_completion = 0;
    for s in all_states(&m) {
        if s.module_gone {
            continue;
        }
        let nothing_else = s.ctls.iter().all(|c| c.held == 0 || c.held == held::MUTEX);
        let clone_holds = s.bios.iter().any(|b| b.fr & fx::IMOD != 0);
        let mut acts = Vec::new();
        m.actions(&s, &mut acts);
        let rmmod = acts.iter().any(|a| matches!(a, Action::Rmmod));
        if clone_holds {
            assert!(
                !rmmod,
                "rmmod offered while a clone holds the filter: {s:?}"
            );
            if nothing_else {
                pinned_by_clone += 1;
                for a in acts {
                    if matches!(a, Action::Complete { .. }) {
                        let t = m.next_state(&s, a).unwrap();
                        if !t.bios.iter().any(|b| b.fr & fx::IMOD != 0) {
                            let mut after = Vec::new();
                            m.actions(&t, &mut after);
                            assert!(after.iter().any(|a| matches!(a, Action::Rmmod)));
                            released_by_completion += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(
        pinned_by_clone > 0,
        "no run had a clone pin the module after detach"
    );
    assert!(
        released_by_completion > 0,
        "no completion dropped the filter's module reference"
    );
}

/// Spec 31: a filter released with kfree_rcu keeps its memory while a
/// reader that began before the release is inside its section (no RCU
/// callback is offered then); such a reader's `refcount_inc_not_zero` finds
/// the count at zero and goes on to O, and the callback frees the memory
/// once the readers have left.
#[test]
fn kfree_rcu_keeps_a_released_filter_for_the_readers_before_it() {
    let (spec, m) = load("31-filter-tryget-kfree-rcu.toml", Kind::Request);
    let tryget = spec
        .protocol
        .hot_path
        .iter()
        .position(|op| matches!(op, HotOp::FilterTryGet { .. }))
        .unwrap();
    let HotOp::FilterTryGet { zero } = spec.protocol.hot_path[tryget] else {
        unreachable!()
    };
    let mut zero_seen = 0;
    let mut freed_by_callback = 0;
    for s in all_states(&m) {
        let mut acts = Vec::new();
        m.actions(&s, &mut acts);
        for a in &acts {
            if let Action::RcuFree { i } = *a {
                assert!(
                    !s.bios.iter().any(|b| b.rcu & rcu::cb(i as usize) != 0),
                    "the callback ran under a reader that began before the release: {s:?}"
                );
                let t = m.next_state(&s, *a).unwrap();
                assert_eq!(t.rcu_cb & (1 << i), 0);
                freed_by_callback += 1;
            }
        }
        for (b, bio) in s.bios.iter().enumerate() {
            let Some(ip) = bio.ip else { continue };
            let protected = bio.rcu & rcu::cb(m.inst(ip)) != 0;
            if bio.loc != Loc::Carried || bio.pc as usize != tryget || !m.freed(&s, ip) {
                continue;
            }
            if protected {
                assert!(!m.memory_gone(&s, ip), "{s:?}");
            }
            for a in &acts {
                if matches!(*a, Action::Hot { b: bb, .. } if bb as usize == b) {
                    let t = m.next_state(&s, *a).unwrap();
                    if protected {
                        assert!(!t.uaf, "a protected reader read freed memory");
                        assert_eq!(t.bios[b].pc, zero, "the count is zero: on to O");
                        zero_seen += 1;
                    }
                }
            }
        }
    }
    assert!(
        zero_seen > 0,
        "no reader found a released filter's count at zero"
    );
    assert!(freed_by_callback > 0, "no RCU callback freed a filter");
}

/// Spec 32: once a new disk has O's dev_t, a controller whose call opened the
/// removed O detaches from that dead disk (-ENODEV) and leaves the new disk's
/// interposer alone, while another controller's attachment to the new disk
/// stands; with spec 32b's dev_t lookup the same detach clears it.
#[test]
fn a_new_disk_with_the_dev_t_is_not_the_removed_one() {
    let mut seen = [0usize; 2];
    for (i, file) in [
        "32-remove-then-reuse.toml",
        "32b-remove-then-reuse-by-dev-t.toml",
    ]
    .iter()
    .enumerate()
    {
        let (_, m) = load(file, Kind::Request);
        for s in all_states(&m) {
            // Controller 1 attached to the removed O; controller 2 to the new disk.
            let old = s.ctls[0].held & held::OLD_O != 0;
            if !(s.o_reused
                && old
                && s.ctls[0].phase == quiesce_model::model::Phase::Attached
                && s.ptr.is_some_and(|p| p.c == 1)
                && m.qrefs(&s) == 0
                && s.ctls[1].held & held::MUTEX == 0)
            {
                continue;
            }
            // Controller 1's whole detach, alone.
            let mut t = s.clone();
            t = m.next_state(&t, Action::BeginDetach { c: 0 }).unwrap();
            loop {
                let mut acts = Vec::new();
                m.actions(&t, &mut acts);
                let Some(a) = acts
                    .into_iter()
                    .find(|a| matches!(*a, Action::Ctl { c: 0, .. } | Action::Return { c: 0, .. }))
                else {
                    break;
                };
                let done = matches!(a, Action::Return { c: 0, .. });
                if let (Action::Return { ok, .. }, 0) = (a, i) {
                    assert!(!ok, "{file}: detach on the removed O returns -ENODEV");
                }
                t = m.next_state(&t, a).unwrap();
                if done {
                    break;
                }
            }
            let kept = t.ptr.is_some_and(|p| p.c == 1);
            assert_eq!(kept, i == 0, "{file}: the new disk's interposer");
            seen[i] += 1;
        }
    }
    assert!(seen[0] > 0 && seen[1] > 0, "no such state: {seen:?}");
}
