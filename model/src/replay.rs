//! Trace validation: what the kernel did, replayed in the model.
//!
//! The patched kernel reports every step of every bio sent to an original
//! device, every freeze of its queue, every change to its interposer pointer
//! and every primitive the module runs (the `blk_interposer` trace events).
//! [`replay`] maps each event of one device to the model's actions and takes
//! them: each must be enabled in the model state reached so far, and every
//! property must hold in every state reached. A kernel bio takes one of the
//! model's bios while it lives and gives it back when it completes, so a trace
//! of any length replays with a handful of them; a kernel task running attach
//! or detach takes one of the model's controllers.
//!
//! An event is emitted just after the step it reports takes something, and
//! just before a step that gives something back, so the trace's order is
//! almost an order in which the steps happened. Where two tasks race (a
//! bio's `bio_queue_enter()` and another task's freeze), the event of the step
//! that happened first may still be emitted second. Replay therefore accepts a
//! trace if the model can take its events in an order that keeps each task's
//! own order and moves an event at most `window` places earlier (never one
//! that reports a release). Where it cannot, it reports the first event it
//! cannot take, the model state there and the actions the model would have
//! allowed.

mod parse;
mod remove;
mod step;

pub use parse::{Dev, Ev, Event, ParseError, Trace};
use step::{BadBio, Mt, RState, Refusal, Stepper, Thread, Threads};

use crate::model::{Quiesce, State};
use crate::spec::{Kind, Spec};
use serde::Serialize;
use stateright::Property;
use std::collections::{HashSet, VecDeque};
use std::time::Instant;
pub use step::CAP;

/// How a replay is run.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The original device whose events are replayed; needed when the trace
    /// has events of more than one device.
    pub dev: Option<Dev>,
    /// The disk of a partition `dev`: the queue is the disk's, and its freeze
    /// events carry the disk's number; they are replayed as `dev`'s.
    pub disk: Option<Dev>,
    /// How many places an event may move earlier than the trace has it.
    pub window: usize,
    /// The trace stops where the run died (the kernel's dump of its buffer at
    /// a panic): bios in flight at its end are not a divergence.
    pub partial: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            dev: None,
            disk: None,
            window: 24,
            partial: false,
        }
    }
}

/// Bios in flight at once that the replay's model holds at least; a trace
/// with more in flight at once gets as many (up to [`CAP`] less the
/// controllers' superblock bios).
pub const SLOTS: u8 = 17;
/// Controllers (tasks in attach or detach at once) the replay's model holds.
pub const CONTROLLERS: u8 = 2;

/// The model a trace of `kind` replays in: the spec's protocol, with as many
/// bios and controllers as a kernel run needs at once, cycles without end (a
/// controller's count starts again once nothing refers to its old
/// interposers), and any number of failures. The trace's original has no
/// filesystem mounted (`bdev_freeze` only syncs it). `slots`: the bios it
/// holds in flight at once.
pub fn replay_model(spec: &Spec, kind: Kind, slots: u8) -> Quiesce<CAP> {
    let mut protocol = spec.protocol.clone();
    protocol.filesystem = false;
    let mut bounds = spec.bounds;
    bounds.submitters = slots;
    bounds.bios = 1;
    bounds.controllers = CONTROLLERS;
    bounds.cycles = u8::MAX;
    bounds.failures = u8::MAX;
    bounds.freezers = 0;
    // The removal of O (del_gendisk() and the spec's removal callback), if the
    // spec has one.
    bounds.remover = !protocol.on_remove.is_empty();
    bounds.rmmod = false;
    assert!(slots as usize + CONTROLLERS as usize <= CAP);
    // O splits a bio larger than its limits, as often as it takes.
    protocol.split = true;
    let mut m = Quiesce::new(protocol, kind, bounds);
    m.resplit = true;
    m
}

/// The first event the model cannot take, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Divergence {
    /// The event's line in the trace file.
    pub line: usize,
    pub event: String,
    /// The kernel bio or task, and the model's bio or controller it is.
    pub thread: String,
    /// Why the model refuses it, in its own words.
    pub why: String,
    /// The property that fails there, if that is why.
    pub property: Option<&'static str>,
    /// The model state before the event.
    pub state: String,
    /// What the model would have allowed that thread to do there.
    pub allowed: Vec<String>,
}

/// The result of one replay (see README: "Replay report").
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub spec: String,
    pub kind: &'static str,
    pub dev: String,
    /// `blk_interposer` events in the trace, of all devices.
    pub trace_events: usize,
    /// Events of this device, replayed.
    pub events: usize,
    /// Kernel bios (with their clones) seen.
    pub bios: usize,
    /// Bios the replay's model held in flight at once: the most the trace
    /// has in flight at once, and two more, but at least [`SLOTS`].
    pub slots: usize,
    /// Interposer pointers set and cleared.
    pub attached: usize,
    pub detached: usize,
    /// Bios the hook redirected to an interposer.
    pub redirected: usize,
    /// Places where the model took events in another order than the trace
    /// has them (within the window).
    pub reordered: usize,
    /// Events taken before the replay ended (all of them when `ok`).
    pub replayed: usize,
    pub ok: bool,
    pub divergence: Option<Divergence>,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// A replay that cannot start: no device chosen, or one with no events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError(pub String);

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

enum Fail {
    Refused(Refusal),
    Violated(&'static str),
}

struct Run<'a> {
    st: Stepper<'a>,
    props: Vec<Property<Quiesce<CAP>>>,
    window: usize,
    budget: usize,
}

impl Run<'_> {
    fn props_hold(&self, s: &State<CAP>) -> Result<(), &'static str> {
        for p in &self.props {
            if !(p.condition)(self.st.m, s) {
                return Err(p.name);
            }
        }
        Ok(())
    }

    fn step(&self, rs: &RState, i: usize) -> Result<RState, Fail> {
        let mut next = rs.clone();
        self.st.step(&mut next, i).map_err(Fail::Refused)?;
        self.props_hold(&next.s).map_err(Fail::Violated)?;
        Ok(next)
    }

    /// May event `j` be taken before event `p` (`p < j`), given `mask` (bit
    /// `k` set: event `p + k` already taken)?
    fn may_move(&self, p: usize, j: usize, mask: u64) -> bool {
        let e = &self.st.events[j];
        if e.ev.is_release() || self.st.releases(e) {
            return false;
        }
        let t = self.st.threads.of[j];
        // Its own thread's earlier events are all taken.
        (p..j).all(|k| self.st.threads.of[k] != t || mask & (1 << (k - p)) != 0)
    }

    /// Find an order of the events from `from` that the model takes, up to
    /// an event after `bad` with nothing taken ahead, moving at most `moves`
    /// events earlier; the position and state there.
    fn search(
        &self,
        from: usize,
        rs: &RState,
        bad: usize,
        moves: u32,
        spent: &mut usize,
    ) -> Option<(usize, RState)> {
        let n = self.st.events.len();
        let mut seen: HashSet<(usize, u64, u32, RState)> = HashSet::new();
        let mut stack: Vec<(usize, u64, u32, RState)> = vec![(from, 0, 0, rs.clone())];
        while let Some((mut p, mut mask, used, rs)) = stack.pop() {
            while mask & 1 != 0 {
                p += 1;
                mask >>= 1;
            }
            if mask == 0 && (p > bad || p == n) {
                return Some((p, rs));
            }
            if p == n || !seen.insert((p, mask, used, rs.clone())) {
                continue;
            }
            *spent += 1;
            if *spent > self.budget {
                return None;
            }
            // Moving an event earlier (pushed first: tried after the trace's order).
            if used < moves {
                for j in (p + 1..n.min(p + self.window.min(63) + 1)).rev() {
                    let bit = 1u64 << (j - p);
                    if mask & bit == 0 && self.may_move(p, j, mask) {
                        if let Ok(next) = self.step(&rs, j) {
                            stack.push((p, mask | bit, used + 1, next));
                        }
                    }
                }
            }
            if let Ok(next) = self.step(&rs, p) {
                stack.push((p + 1, mask >> 1, used, next));
            }
        }
        None
    }

    /// The trace with event `j` moved to just before event `p` (`p < j`),
    /// replayed greedily from `rs` (the state before `p`) until the events
    /// up to `until` (at least `j`) are taken: the position and state there.
    fn try_move(&self, rs: &RState, p: usize, j: usize, until: usize) -> Option<(usize, RState)> {
        if !self.may_move(p, j, 0) {
            return None;
        }
        let mut rs = self.step(rs, j).ok()?;
        let end = until.max(j) + 1;
        for k in p..end.min(self.st.events.len()) {
            if k != j {
                rs = self.step(&rs, k).ok()?;
            }
        }
        Some((end, rs))
    }

    /// The trace with event `j` moved to just after event `q` (`j < q`),
    /// replayed from `rs` (the state before `j`) until the events up to
    /// `until` are taken. Only for an event emitted before the step it
    /// reports (the step may come later than the event).
    fn try_postpone(
        &self,
        rs: &RState,
        j: usize,
        q: usize,
        until: usize,
    ) -> Option<(usize, RState)> {
        let t = self.st.threads.of[j];
        if (j + 1..=q).any(|k| self.st.threads.of[k] == t) {
            return None;
        }
        let mut rs = rs.clone();
        for k in j + 1..=q {
            rs = self.step(&rs, k).ok()?;
        }
        rs = self.step(&rs, j).ok()?;
        let end = until.max(q) + 1;
        for k in q + 1..end.min(self.st.events.len()) {
            rs = self.step(&rs, k).ok()?;
        }
        Some((end, rs))
    }

    /// One event moved, within the window, so that the model takes the
    /// refused event `i` and those before it. Earlier: the refused thread's
    /// own earlier events first (a step it was reported to take later than it
    /// did), then the events after `i` (one that happened before it), then
    /// the others, nearest first; then later: an event emitted before its
    /// step.
    fn one_move(
        &self,
        snaps: &VecDeque<RState>,
        first: usize,
        i: usize,
    ) -> Option<(usize, RState)> {
        let n = self.st.events.len();
        let w = self.window.min(63);
        let t = self.st.threads.of[i];
        let lo = first.max(i.saturating_sub(2 * w));
        let mut js: Vec<usize> = (lo..i)
            .rev()
            .filter(|&j| self.st.threads.of[j] == t)
            .collect();
        js.extend((i..n.min(i + w + 1)).filter(|&j| self.st.threads.of[j] != t || j == i));
        js.extend((lo..i).rev().filter(|&j| self.st.threads.of[j] != t));
        for j in js {
            for p in (j.saturating_sub(w).max(first)..j.min(i + 1)).rev() {
                if let Some(found) = self.try_move(&snaps[p - first], p, j, i) {
                    return Some(found);
                }
            }
        }
        // An event emitted before its step (a bio sent down O's own path,
        // whose driver decides after the event), moved later, nearest first,
        // as far back as the snapshots go (a bio's whole life may lie between
        // the event and the refusal).
        for j in (first..i).rev() {
            if !self.st.postponable(&self.st.events[j]) {
                continue;
            }
            for q in j + 1..=(j + w).min(i) {
                if let Some(found) = self.try_postpone(&snaps[j - first], j, q, i) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// Where a search for the refusal at event `i` starts: `window` events
    /// before the refused thread's previous event (a step it took too early,
    /// or one another task's event must precede), as far back as the
    /// snapshots go.
    fn search_from(&self, i: usize, oldest: usize) -> usize {
        let t = self.st.threads.of[i];
        let prev = (oldest..i)
            .rev()
            .find(|&k| self.st.threads.of[k] == t)
            .unwrap_or(i);
        prev.min(i).saturating_sub(self.window).max(oldest)
    }
}

/// Replay `trace`'s events of one device in the model of `spec` for `kind`.
pub fn replay(
    spec: &Spec,
    kind: Kind,
    trace: &Trace,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let devs = trace.devices();
    let dev = match opts.dev {
        Some(d) => d,
        None => match devs[..] {
            [(d, _)] => d,
            [] => return Err(ReplayError("the trace has no blk_interposer events".into())),
            _ => {
                return Err(ReplayError(format!(
                    "the trace has events of {} devices ({}): name the original with --dev",
                    devs.len(),
                    devs.iter()
                        .map(|(d, n)| format!("{d}: {n} events"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        },
    };
    let (events, index): (Vec<Event>, Vec<usize>) = trace
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.dev == dev.0
                || opts.disk.is_some_and(|d| {
                    e.dev == d.0 && matches!(e.ev, Ev::FreezeStart | Ev::FreezeWait | Ev::Unfreeze)
                })
        })
        .map(|(i, e)| (*e, i))
        .unzip();
    if events.is_empty() {
        return Err(ReplayError(format!(
            "the trace has no events of device {dev} (it has {})",
            devs.iter()
                .map(|(d, _)| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut report = ReplayReport {
        spec: spec.name.clone(),
        kind: kind.name(),
        dev: dev.to_string(),
        trace_events: trace.events.len(),
        events: events.len(),
        bios: 0,
        slots: 0,
        attached: events
            .iter()
            .filter(|e| e.ev == Ev::PtrSet && e.val == 0)
            .count(),
        detached: events.iter().filter(|e| e.ev == Ev::PtrClear).count(),
        redirected: events.iter().filter(|e| e.ev == Ev::Redirect).count(),
        reordered: 0,
        replayed: 0,
        ok: false,
        divergence: None,
        seconds: 0.0,
        events_per_second: 0.0,
    };
    let finish = |mut r: ReplayReport| {
        r.seconds = started.elapsed().as_secs_f64();
        r.events_per_second = r.replayed as f64 / r.seconds.max(1e-9);
        Ok(r)
    };
    let threads = match Threads::of(&events) {
        Ok(t) => t,
        Err(BadBio { event, why }) => {
            let e = &events[event];
            report.divergence = Some(Divergence {
                line: e.line as usize,
                event: trace.line_text(index[event]).to_string(),
                thread: format!("bio {:#x}", e.bio),
                why,
                property: None,
                state: String::new(),
                allowed: Vec::new(),
            });
            return finish(report);
        }
    };
    report.bios = threads.end.len();
    let slots = (threads.peak() + 2).clamp(SLOTS as usize, CAP - CONTROLLERS as usize);
    report.slots = slots;
    let m = replay_model(spec, kind, slots as u8);
    let run = Run {
        st: Stepper::new(&m, trace, &events, &threads),
        props: m.state_properties(),
        window: opts.window,
        budget: 50_000,
    };
    let mut rs = run.st.initial();
    // The states before the last HORIZON events, for the searches.
    const HORIZON: usize = 256;
    let mut snaps: VecDeque<RState> = VecDeque::with_capacity(HORIZON + 1);
    let mut first = 0; // the event before which snaps[0] is
    let mut i = 0;
    while i < events.len() {
        if snaps.len() > HORIZON {
            snaps.pop_front();
            first += 1;
        }
        snaps.push_back(rs.clone());
        match run.step(&rs, i) {
            Ok(next) => {
                rs = next;
                i += 1;
            }
            Err(fail) => {
                // One event moved (tried directly), then up to three (searched).
                let found = run.one_move(&snaps, first, i).or_else(|| {
                    let from = run.search_from(i, first);
                    let mut spent = 0;
                    run.search(from, &snaps[from - first], i, 3, &mut spent)
                });
                match found {
                    Some((p, next)) => {
                        report.reordered += 1;
                        snaps.clear();
                        first = p;
                        rs = next;
                        i = p;
                    }
                    None => {
                        report.replayed = i;
                        report.divergence = Some(diverge(&run, trace, &index, &rs, i, fail));
                        return finish(report);
                    }
                }
            }
        }
    }
    report.replayed = events.len();
    if opts.partial {
        report.ok = true;
        return finish(report);
    }
    // The end: every bio completed, every controller returned.
    for b in 0..m.nsub() {
        run.st.settle(&mut rs, Mt::Bio(b));
    }
    for c in 0..rs.s.ctls.len() {
        run.st.settle(&mut rs, Mt::Ctl(c));
    }
    let open_bio = (0..m.nsub()).find(|&b| {
        use crate::model::Loc;
        !matches!(rs.s.bios[b].loc, Loc::Done | Loc::Unsubmitted)
    });
    if let Some(b) = open_bio {
        let last = events.len() - 1;
        report.divergence = Some(Divergence {
            line: events[last].line as usize,
            event: trace.line_text(index[last]).to_string(),
            thread: format!("the model's {}", m.bio_name(b)),
            why: format!(
                "the trace ends with {} still {:?} in the model: the kernel never completed it, or the trace lost its completion",
                m.bio_name(b),
                rs.s.bios[b].loc
            ),
            property: None,
            state: m.summary(&rs.s),
            allowed: Vec::new(),
        });
        return finish(report);
    }
    report.ok = true;
    finish(report)
}

fn diverge(
    run: &Run,
    trace: &Trace,
    index: &[usize],
    rs: &RState,
    i: usize,
    fail: Fail,
) -> Divergence {
    let m = run.st.m;
    let e = &run.st.events[i];
    let thread = match run.st.threads.of[i] {
        Thread::Lineage(l) => match rs.slot.iter().position(|&x| x == l) {
            Some(b) => format!("bio {:#x} (the model's {})", e.bio, m.bio_name(b)),
            None => format!("bio {:#x} (new)", e.bio),
        },
        Thread::Task(pid) => match rs.task.iter().position(|&x| x == pid) {
            Some(c) => format!("task {pid} (controller {})", c + 1),
            None => format!("task {pid}"),
        },
    };
    let (why, property, allowed) = match fail {
        Fail::Refused(r) => (
            r.why,
            None,
            r.allowed.iter().map(|a| m.describe(a)).collect(),
        ),
        Fail::Violated(p) => {
            let mut next = rs.clone();
            let _ = run.st.step(&mut next, i);
            (
                format!("after it, `{p}` fails: {}", m.summary(&next.s)),
                Some(p),
                Vec::new(),
            )
        }
    };
    Divergence {
        line: e.line as usize,
        event: trace.line_text(index[i]).to_string(),
        thread,
        why,
        property,
        state: m.summary(&rs.s),
        allowed,
    }
}
