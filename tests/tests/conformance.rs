//! The generated code conforms to the model.
//!
//! 1. The generated attach/detach, driven by a recording `Primitives` that fails at
//!    random points, only ever performs paths of the model: every recorded call
//!    sequence replays through the model's transition function, every state on the
//!    way satisfies every safety property, and the generated monitor accepts it.
//! 2. Random event sequences are accepted by the generated monitor exactly as far as
//!    the model's own controller behaviour (its reachable graph, projected on the
//!    controller) accepts them.

use proptest::prelude::*;
use quiesce_codegen::{derive_automaton, Automaton, Event as MEvent};
use quiesce_generated as g;
use quiesce_model::model::{Action, Phase, Quiesce, State};
use quiesce_model::spec::{Bounds, Kind, Prim, Spec, PRIMS};
use stateright::{Expectation, Model};
use std::path::PathBuf;
use std::sync::OnceLock;

fn spec() -> &'static Spec {
    static S: OnceLock<Spec> = OnceLock::new();
    S.get_or_init(|| {
        let p =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs/15-filter-module.toml");
        let s = Spec::load(&p).unwrap();
        assert_eq!(s.sha256, g::SPEC_SHA256, "generated/ is not from this spec");
        s
    })
}

fn model_prim(p: g::Prim) -> Prim {
    PRIMS
        .iter()
        .find(|i| i.prim.call() == p.call())
        .map(|i| i.prim)
        .expect("same primitives")
}

fn gen_prim(p: Prim) -> Option<g::Prim> {
    g::Prim::ALL.iter().copied().find(|g| g.call() == p.call())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rec {
    Call(g::Prim, bool),
    AttachReturned(bool),
    DetachBegin,
    DetachReturned(bool),
}

/// Records every call; fails the fallible calls whose ordinal is in `fail_at`, but only
/// for primitives the spec lets fail.
struct Recorder {
    log: Vec<Rec>,
    fail_at: Vec<usize>,
    calls: usize,
    failures_left: u8,
}

impl Recorder {
    fn plain(&mut self, p: g::Prim) {
        self.calls += 1;
        self.log.push(Rec::Call(p, true));
    }
    fn fallible(&mut self, p: g::Prim, e: g::Errno) -> Result<(), g::Errno> {
        let n = self.calls;
        self.calls += 1;
        let fail = self.failures_left > 0
            && self.fail_at.contains(&n)
            && spec().protocol.inject.contains(&model_prim(p));
        self.log.push(Rec::Call(p, !fail));
        if fail {
            self.failures_left -= 1;
            Err(e)
        } else {
            Ok(())
        }
    }
}

impl g::Primitives for Recorder {
    fn mutex_lock(&mut self) {
        self.plain(g::Prim::MutexLock)
    }
    fn mutex_unlock(&mut self) {
        self.plain(g::Prim::MutexUnlock)
    }
    fn bdev_freeze(&mut self) -> Result<(), g::Errno> {
        self.fallible(g::Prim::BdevFreeze, g::Errno::EBUSY)
    }
    fn bdev_thaw(&mut self) {
        self.plain(g::Prim::BdevThaw)
    }
    fn try_module_get(&mut self) -> Result<(), g::Errno> {
        self.fallible(g::Prim::TryModuleGet, g::Errno::ENODEV)
    }
    fn module_put(&mut self) {
        self.plain(g::Prim::ModulePut)
    }
    fn filter_alloc(&mut self) -> Result<(), g::Errno> {
        self.fallible(g::Prim::FilterAlloc, g::Errno::ENOMEM)
    }
    fn filter_free(&mut self) {
        self.plain(g::Prim::FilterFree)
    }
    fn blk_mq_freeze_queue(&mut self) {
        self.plain(g::Prim::BlkMqFreezeQueue)
    }
    fn blk_mq_unfreeze_queue(&mut self) {
        self.plain(g::Prim::BlkMqUnfreezeQueue)
    }
    fn dm_internal_suspend_fast(&mut self) -> Result<(), g::Errno> {
        self.fallible(g::Prim::DmInternalSuspendFast, g::Errno::EINVAL)
    }
    fn dm_internal_resume_fast(&mut self) {
        self.plain(g::Prim::DmInternalResumeFast)
    }
    fn filter_block(&mut self) {
        self.plain(g::Prim::FilterBlock)
    }
    fn filter_unblock(&mut self) {
        self.plain(g::Prim::FilterUnblock)
    }
    fn cmpxchg_interposer(&mut self) -> Result<(), g::Errno> {
        self.fallible(g::Prim::CmpxchgInterposer, g::Errno::EBUSY)
    }
    fn clear_interposer(&mut self) {
        self.plain(g::Prim::ClearInterposer)
    }
    // O is never removed in these runs: alive at every check.
    fn bdev_check_alive(&mut self) -> Result<(), g::Errno> {
        self.plain(g::Prim::BdevCheckAlive);
        Ok(())
    }
}

fn gkind(k: Kind) -> g::Kind {
    match k {
        Kind::Request => g::Kind::Request,
        Kind::Bio => g::Kind::Bio,
        Kind::BioSync => g::Kind::BioSync,
    }
}

/// Run `cycles` attach/detach cycles of the generated code.
fn drive(kind: Kind, cycles: u8, fail_at: Vec<usize>) -> Vec<Rec> {
    let mut r = Recorder {
        log: Vec::new(),
        fail_at,
        calls: 0,
        failures_left: spec().bounds.failures,
    };
    for _ in 0..cycles {
        let ok = g::attach(&mut r, gkind(kind)).is_ok();
        r.log.push(Rec::AttachReturned(ok));
        if ok {
            r.log.push(Rec::DetachBegin);
            let ok = g::detach(&mut r, gkind(kind)).is_ok();
            r.log.push(Rec::DetachReturned(ok));
        }
    }
    r.log
}

fn check_safety(m: &Quiesce, s: &State, what: &str) {
    for p in m.properties() {
        if p.expectation == Expectation::Always {
            assert!(
                (p.condition)(m, s),
                "{what}: {} fails in {}",
                p.name,
                m.summary(s)
            );
        }
    }
}

/// Replay a recorded run through the model (one controller, no bios moving).
fn replay(kind: Kind, cycles: u8, log: &[Rec]) {
    let b = spec().bounds;
    let bounds = Bounds {
        controllers: 1,
        cycles,
        ..b
    };
    let m = Quiesce::new(spec().protocol.clone(), kind, bounds);
    let mut s = m.init_states().remove(0);
    let mut acts = Vec::new();
    // The controller's superblock bio (bdev_freeze(O) writes it through the normal
    // I/O path, with a filesystem) is the one bio that moves: it moves until the
    // recorded step is enabled.
    let nsub = bounds.submitters * bounds.bios;
    let sb =
        move |a: &Action| matches!(*a, Action::Hot { b, .. } | Action::Complete { b } if b >= nsub);
    let mut take = |s: &mut State, want: &dyn Fn(&Action) -> bool, what: &str| {
        loop {
            acts.clear();
            m.actions(s, &mut acts);
            if acts.iter().any(want) {
                break;
            }
            let Some(&a) = acts.iter().find(|a| sb(a)) else {
                break;
            };
            *s = m.next_state(s, a).unwrap();
            check_safety(&m, s, "the superblock bio");
        }
        let a = *acts.iter().find(|a| want(a)).unwrap_or_else(|| {
            panic!(
                "{what} is not a step of the model at {} (enabled: {:?})",
                m.summary(s),
                acts.iter().map(|a| m.describe(a)).collect::<Vec<_>>()
            )
        });
        *s = m.next_state(s, a).unwrap();
        check_safety(&m, s, what);
    };
    for r in log {
        match *r {
            Rec::Call(p, ok) => {
                let mp = model_prim(p);
                if ok {
                    // Run every sub-step of the primitive.
                    let before = (s.ctls[0].phase, s.ctls[0].pc, s.ctls[0].cycle);
                    loop {
                        take(
                            &mut s,
                            &|a| matches!(a, Action::Ctl { c: 0, prim, .. } if *prim == mp),
                            p.call(),
                        );
                        let c = &s.ctls[0];
                        if (c.phase, c.pc, c.cycle) != before || c.sub == 0 {
                            break;
                        }
                    }
                } else {
                    take(
                        &mut s,
                        &|a| matches!(a, Action::Fail { c: 0, prim } if *prim == mp),
                        p.call(),
                    );
                }
            }
            Rec::AttachReturned(ok) => take(
                &mut s,
                &|a| matches!(a, Action::Return { c: 0, detach: false, ok: o, .. } if *o == ok),
                "attach returns",
            ),
            Rec::DetachBegin => take(
                &mut s,
                &|a| matches!(a, Action::BeginDetach { c: 0 }),
                "detach",
            ),
            Rec::DetachReturned(ok) => take(
                &mut s,
                &|a| matches!(a, Action::Return { c: 0, detach: true, ok: o, .. } if *o == ok),
                "detach returns",
            ),
        }
    }
    assert_eq!(
        s.ctls[0].phase,
        Phase::Done,
        "the controller finished its cycles"
    );
    check_safety(&m, &s, "end");
}

/// The event the module reports for a recorded call or return.
fn event_of(r: Rec) -> g::Event {
    match r {
        Rec::Call(p, true) => g::Event::Ok(p),
        Rec::Call(p, false) => g::Event::Err(p),
        Rec::AttachReturned(ok) => g::Event::AttachReturned(ok),
        Rec::DetachBegin => g::Event::DetachBegin,
        Rec::DetachReturned(ok) => g::Event::DetachReturned(ok),
    }
}

/// The generated monitor accepts the recorded run.
fn monitor_accepts(kind: Kind, log: &[Rec]) {
    let mut mon = g::Monitor::new(gkind(kind));
    for r in log {
        mon.step(event_of(*r))
            .unwrap_or_else(|v| panic!("monitor refused {:?} in {}", v.event, v.state));
    }
}

fn automaton(kind: Kind) -> &'static Automaton {
    static A: OnceLock<Vec<Automaton>> = OnceLock::new();
    let all = A.get_or_init(|| {
        spec()
            .kinds
            .iter()
            .map(|&k| {
                derive_automaton(&Quiesce::new(spec().protocol.clone(), k, spec().bounds)).unwrap()
            })
            .collect()
    });
    all.iter().find(|a| a.kind == kind).unwrap()
}

/// How many events of `seq` the model's projected controller accepts.
fn model_accepts(kind: Kind, seq: &[MEvent]) -> usize {
    let a = automaton(kind);
    let mut pos = a.init;
    for (i, e) in seq.iter().enumerate() {
        match a.edges.get(&(pos, *e)) {
            Some(n) => pos = *n,
            None => return i,
        }
    }
    seq.len()
}

fn monitor_accepts_prefix(kind: Kind, seq: &[MEvent]) -> usize {
    let mut mon = g::Monitor::new(gkind(kind));
    for (i, e) in seq.iter().enumerate() {
        let ev = match *e {
            MEvent::Ok(p) => g::Event::Ok(gen_prim(p).unwrap()),
            MEvent::Err(p) => g::Event::Err(gen_prim(p).unwrap()),
            MEvent::AttachReturned(b) => g::Event::AttachReturned(b),
            MEvent::DetachBegin => g::Event::DetachBegin,
            MEvent::DetachReturned(b) => g::Event::DetachReturned(b),
        };
        let before = mon.state();
        if mon.step(ev).is_err() {
            assert_eq!(
                mon.state(),
                before,
                "a refused event must not move the monitor"
            );
            return i;
        }
    }
    seq.len()
}

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Request), Just(Kind::Bio)]
}

/// Events biased toward the legal ones, so that sequences get deep.
fn event_seq(kind: Kind) -> impl Strategy<Value = Vec<MEvent>> {
    let a = automaton(kind);
    let alphabet: Vec<MEvent> = {
        let mut v: Vec<MEvent> = a.edges.keys().map(|(_, e)| *e).collect();
        for &p in g::Prim::ALL {
            v.push(MEvent::Ok(model_prim(p)));
            v.push(MEvent::Err(model_prim(p)));
        }
        v.extend([
            MEvent::AttachReturned(true),
            MEvent::AttachReturned(false),
            MEvent::DetachBegin,
            MEvent::DetachReturned(true),
            MEvent::DetachReturned(false),
        ]);
        v.sort();
        v.dedup();
        v
    };
    // Each element: either "the i-th legal event from here" or any event of the alphabet.
    proptest::collection::vec(
        (
            any::<bool>(),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
        ),
        0..60,
    )
    .prop_map(move |picks| {
        let a = automaton(kind);
        let mut pos = a.init;
        let mut out = Vec::new();
        for (legal, i, j) in picks {
            let here: Vec<(MEvent, _)> = a
                .edges
                .iter()
                .filter(|((f, _), _)| *f == pos)
                .map(|((_, e), t)| (*e, *t))
                .collect();
            let e = if legal && !here.is_empty() {
                here[i.index(here.len())].0
            } else {
                alphabet[j.index(alphabet.len())]
            };
            if let Some(n) = a.edges.get(&(pos, e)) {
                pos = *n;
            }
            out.push(e);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_procedures_are_paths_of_the_model(
        kind in kinds(),
        cycles in 1u8..=3,
        fail_at in proptest::collection::vec(0usize..40, 0..3),
    ) {
        let log = drive(kind, cycles, fail_at);
        replay(kind, cycles, &log);
        monitor_accepts(kind, &log);
    }

    #[test]
    fn monitor_accepts_exactly_what_the_model_accepts(
        (kind, seq) in kinds().prop_flat_map(|k| (Just(k), event_seq(k)))
    ) {
        let m = model_accepts(kind, &seq);
        let g = monitor_accepts_prefix(kind, &seq);
        prop_assert_eq!(m, g, "kind {:?}, events {:?}", kind, &seq);
    }
}

/// A skipped primitive is caught: attach without its queue freeze is refused by the monitor.
#[test]
fn monitor_catches_a_skipped_freeze() {
    let log = drive(Kind::Request, 1, vec![]);
    let skipped: Vec<Rec> = log
        .iter()
        .copied()
        .filter(|r| *r != Rec::Call(g::Prim::BlkMqFreezeQueue, true))
        .collect();
    assert!(skipped.len() < log.len());
    let mut mon = g::Monitor::new(g::Kind::Request);
    let mut refused = None;
    for r in &skipped {
        if let Err(v) = mon.step(event_of(*r)) {
            refused = Some(v);
            break;
        }
    }
    let v = refused.expect("the monitor must refuse");
    assert_eq!(v.event, g::Event::Ok(g::Prim::CmpxchgInterposer));
    assert!(
        v.state.contains("before blk_mq_freeze_queue(O)"),
        "{}",
        v.state
    );
}
