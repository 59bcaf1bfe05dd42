//! One kernel event as the model's actions: the replay's state (the model's
//! state, and which kernel bio and task each of the model's bios and
//! controllers stands for), and the step that takes an event.

use super::parse::{Ev, Event, Trace};
use crate::model::{bf, fx, Action, Ip, Loc, Phase, Quiesce, State, MAX_CTLS};
use crate::spec::{HotOp, Kind, Prim};
use stateright::Model;

/// The replay model's capacity for bios: a kernel run's bios in flight at
/// once, and the controllers' superblock bios.
pub const CAP: usize = 128;

/// No kernel bio or task.
pub const NONE: u32 = u32::MAX;

/// Who an event belongs to: a kernel bio's lineage (the bio and its clones),
/// or a kernel task running attach or detach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Thread {
    Lineage(u32),
    Task(u32),
}

/// The trace, read once for replay: each event's thread, and where each
/// lineage ends.
pub struct Threads {
    pub of: Vec<Thread>,
    /// The event that completes each lineage's original bio (`NONE` if the
    /// trace never shows it).
    pub end: Vec<u32>,
    /// For `endio` events: the bio that completes is the original of a
    /// lineage whose clone travelled (it completes from the clone's end_io).
    pub held: Vec<bool>,
    /// Lineages that never reach O's queue: an empty flush for an O without a
    /// write cache, completed by `submit_bio_noacct()` while the hook is
    /// patched out (its `key_off` comes first).
    pub early: Vec<bool>,
    /// For `driver_submit` events: O splits the bio there (its `split`
    /// event follows).
    pub splits: Vec<bool>,
    /// For `endio` events: the bio is a split front, and how many fronts of
    /// its lineage are still inside O after it (0: the last one).
    pub front: Vec<Option<u32>>,
}

/// Where a bio event goes wrong before the model is asked: a bio the trace
/// never showed entering its queue, or one completing twice.
pub struct BadBio {
    pub event: usize,
    pub why: String,
}

impl Threads {
    /// The most lineages alive at once: from a lineage's first event to the
    /// completion of its original (to the trace's end if it never completes).
    pub fn peak(&self) -> usize {
        let mut seen = vec![false; self.end.len()];
        let mut delta = vec![0i32; self.of.len() + 1];
        for (i, t) in self.of.iter().enumerate() {
            if let Thread::Lineage(l) = *t {
                let l = l as usize;
                if !seen[l] && !self.early[l] {
                    seen[l] = true;
                    delta[i] += 1;
                    let end = match self.end[l] {
                        NONE => self.of.len(),
                        e => e as usize + 1,
                    };
                    delta[end] -= 1;
                }
            }
        }
        let (mut now, mut most) = (0i32, 0i32);
        for d in delta {
            now += d;
            most = most.max(now);
        }
        most as usize
    }

    /// Assign each bio event its lineage: a bio is new at its first `enter`
    /// (or at an `enter` after its completion: the memory was reused), and a
    /// clone joins the lineage of the bio it was cloned from.
    pub fn of(events: &[Event]) -> Result<Threads, BadBio> {
        use std::collections::{HashMap, HashSet};
        // bio -> (lineage, completed)
        let mut live: HashMap<u64, (u32, bool)> = HashMap::new();
        let mut orig: Vec<u64> = Vec::new();
        let mut has_clone: Vec<bool> = Vec::new();
        let mut end = Vec::new();
        let mut of = Vec::with_capacity(events.len());
        let mut held = vec![false; events.len()];
        let mut early = Vec::new();
        let mut splits = vec![false; events.len()];
        let mut front = vec![None; events.len()];
        // Per lineage: its last `driver_submit` event, its fronts inside O.
        let mut submit: Vec<u32> = Vec::new();
        let mut fronts: Vec<u32> = Vec::new();
        let mut is_front: HashSet<u64> = HashSet::new();
        for (i, e) in events.iter().enumerate() {
            if !e.ev.is_bio() {
                of.push(Thread::Task(e.pid));
                continue;
            }
            let l = match (e.ev, live.get(&e.bio).copied()) {
                // A new bio (its memory may be a completed one's): at its
                // queue entry; at its completion when its entry failed (O
                // dead); at `key_off` when it completes before O's queue.
                (Ev::Enter, None | Some((_, true)))
                | (Ev::Endio, None)
                | (Ev::KeyOff, None | Some((_, true))) => {
                    let l = orig.len() as u32;
                    orig.push(e.bio);
                    has_clone.push(false);
                    end.push(NONE);
                    early.push(e.ev == Ev::KeyOff);
                    submit.push(NONE);
                    fronts.push(0);
                    live.insert(e.bio, (l, false));
                    is_front.remove(&e.bio);
                    l
                }
                (Ev::Endio, Some((_, true))) => {
                    return Err(BadBio {
                        event: i,
                        why: "a bio that completed already completes again".into(),
                    })
                }
                (_, Some((l, _))) => l,
                (ev, None) => {
                    return Err(BadBio {
                        event: i,
                        why: format!(
                            "a `{}` of a bio the trace never showed entering O's queue",
                            ev.name()
                        ),
                    })
                }
            };
            match e.ev {
                Ev::Clone => {
                    has_clone[l as usize] = true;
                    live.insert(e.arg, (l, false));
                    is_front.remove(&e.arg);
                }
                Ev::Submit => submit[l as usize] = i as u32,
                Ev::Split => {
                    let at = std::mem::replace(&mut submit[l as usize], NONE);
                    if at == NONE {
                        return Err(BadBio {
                            event: i,
                            why: "O split a bio that did not go down its own path".into(),
                        });
                    }
                    splits[at as usize] = true;
                    fronts[l as usize] += 1;
                    live.insert(e.arg, (l, false));
                    is_front.insert(e.arg);
                }
                Ev::Endio if is_front.remove(&e.bio) => {
                    live.insert(e.bio, (l, true));
                    fronts[l as usize] -= 1;
                    front[i] = Some(fronts[l as usize]);
                }
                Ev::Endio => {
                    live.insert(e.bio, (l, true));
                    if e.bio == orig[l as usize] {
                        end[l as usize] = i as u32;
                        held[i] = has_clone[l as usize];
                    }
                }
                _ => {}
            }
            of.push(Thread::Lineage(l));
        }
        Ok(Threads {
            of,
            end,
            held,
            early,
            splits,
            front,
        })
    }
}

/// The replay's state: the model's, and the kernel's names for its parts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RState {
    pub s: State<CAP>,
    /// The lineage each model bio stands for.
    pub slot: [u32; CAP],
    /// The task each controller stands for.
    pub task: [u32; MAX_CTLS],
    /// The kernel's pointer to each controller's interposer, once set.
    pub kip: [u64; MAX_CTLS],
    /// The task removing O (`del_gendisk()`), once it began.
    pub rm_task: u32,
    /// Model bios (bits) whose original's `blk_queue_exit` was taken ahead of
    /// its `exit` event (see the failed queue entry in `step_bio`).
    pub exited: u128,
    /// A task holding open_mutex outside attach, detach and the removal (the
    /// module waits for a removal callback to return by taking it once).
    pub outside: u32,
}

/// Why the model cannot take an event.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// In the model's words: what it expected, or what it has instead.
    pub why: String,
    /// The thread's enabled actions where it refused.
    pub allowed: Vec<Action>,
}

pub(super) fn refuse(why: impl Into<String>) -> Refusal {
    Refusal {
        why: why.into(),
        allowed: Vec::new(),
    }
}

/// A model thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mt {
    Bio(usize),
    Ctl(usize),
}

/// The replay over one model: how events become actions.
pub struct Stepper<'a> {
    pub m: &'a Quiesce<CAP>,
    pub trace: &'a Trace,
    pub events: &'a [Event],
    pub threads: &'a Threads,
    /// The model's primitive for each `blk_interposer_prim` name.
    pub prims: Vec<Option<Prim>>,
}

impl<'a> Stepper<'a> {
    pub fn new(
        m: &'a Quiesce<CAP>,
        trace: &'a Trace,
        events: &'a [Event],
        threads: &'a Threads,
    ) -> Self {
        let all: Vec<Prim> = m
            .protocol
            .attach
            .iter()
            .chain(&m.protocol.detach)
            .chain(&m.protocol.on_remove)
            .flat_map(|st| {
                std::iter::once(st.prim).chain(
                    st.on_error
                        .iter()
                        .flatten()
                        .map(|e| e.prim)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let prims = trace
            .names
            .iter()
            .map(|n| all.iter().copied().find(|p| p.call() == *n))
            .collect();
        Stepper {
            m,
            trace,
            events,
            threads,
            prims,
        }
    }

    /// A primitive reported before it gives something back (the module
    /// reports each such call before it makes it).
    pub fn releases(&self, e: &Event) -> bool {
        e.ev == Ev::Prim
            && self
                .prims
                .get(e.name as usize)
                .copied()
                .flatten()
                .is_some_and(|p| p.info().releases.is_some() || p.meaning() == Prim::ThawBdev)
    }

    /// An event emitted before the step it reports takes effect: a bio sent
    /// down O's own path or to I (the driver decides after the event), a
    /// primitive reported as it is called (`ret=1`: device-mapper blocks new
    /// bios some time after), and the events of steps that give something
    /// back.
    pub fn postponable(&self, e: &Event) -> bool {
        matches!(e.ev, Ev::Submit | Ev::Redirect)
            || (e.ev == Ev::Prim && e.val == 1)
            || e.ev.is_release()
            || self.releases(e)
    }

    pub fn initial(&self) -> RState {
        RState {
            s: self.m.init_states().remove(0),
            slot: [NONE; CAP],
            task: [NONE; MAX_CTLS],
            kip: [0; MAX_CTLS],
            rm_task: NONE,
            exited: 0,
            outside: NONE,
        }
    }

    fn actions(&self, s: &State<CAP>, t: Mt, out: &mut Vec<Action>) {
        out.clear();
        match t {
            Mt::Bio(b) => {
                if s.bios[b].loc == Loc::Unsubmitted && self.m.may_submit(s, b) {
                    out.push(Action::Submit {
                        s: b as u8,
                        b: b as u8,
                    });
                }
                self.m.bio_actions(s, b, out);
            }
            Mt::Ctl(c) => self.m.controller_actions(s, c, out),
        }
    }

    /// Steps no event reports: a pass's `return`, and a `blk_queue_exit` with
    /// no reference left to drop (blk-mq's request holds it).
    fn silent(&self, s: &State<CAP>, a: &Action) -> bool {
        match *a {
            Action::Hot {
                op: HotOp::Return, ..
            } => true,
            Action::Hot {
                b,
                op: HotOp::QueueExit,
                ..
            } => !s.bios[b as usize].has(bf::PASS_QREF),
            _ => false,
        }
    }

    /// Take thread `t`'s silent steps until `want` is enabled, and return it
    /// (not taken).
    fn find(
        &self,
        rs: &mut RState,
        t: Mt,
        want: &dyn Fn(&Action) -> bool,
    ) -> Result<Action, Refusal> {
        let mut acts = Vec::with_capacity(4);
        for _ in 0..64 {
            self.actions(&rs.s, t, &mut acts);
            if let Some(&a) = acts.iter().find(|a| want(a)) {
                return Ok(a);
            }
            match acts.iter().find(|a| self.silent(&rs.s, a)) {
                Some(&a) => {
                    rs.s = self
                        .m
                        .next_state(&rs.s, a)
                        .expect("the model takes its actions")
                }
                None => {
                    return Err(Refusal {
                        why: String::new(),
                        allowed: acts,
                    })
                }
            }
        }
        Err(refuse("the thread's silent steps do not end"))
    }

    pub(super) fn take(&self, rs: &mut RState, a: Action) {
        rs.s = self
            .m
            .next_state(&rs.s, a)
            .expect("the model takes its actions");
    }

    /// Take `t`'s silent steps as far as they go.
    pub fn settle(&self, rs: &mut RState, t: Mt) {
        let _ = self.find(rs, t, &|_| false);
    }

    fn ip_of(&self, rs: &RState, kip: u64) -> Option<Ip> {
        if kip == 0 {
            return None;
        }
        (0..rs.s.ctls.len())
            .find(|&c| rs.kip[c] == kip)
            .map(|c| Ip {
                c: c as u8,
                gen: rs.s.ctls[c].igen,
            })
    }

    fn name_ip(&self, ip: Option<Ip>) -> String {
        match ip {
            None => "NULL".into(),
            Some(ip) => format!("I{}", ip.c + 1),
        }
    }

    /// Take event `i`.
    pub fn step(&self, rs: &mut RState, i: usize) -> Result<(), Refusal> {
        match self.threads.of[i] {
            Thread::Lineage(l) => self.step_bio(rs, i, l),
            Thread::Task(pid) => self.step_task(rs, i, pid),
        }
    }

    fn slot_of(&self, rs: &RState, l: u32) -> Option<usize> {
        rs.slot.iter().position(|&x| x == l)
    }

    /// A free model bio for a new lineage: never used, or its lineage has
    /// ended (its original completed before event `i` and its pass returned).
    fn alloc(&self, rs: &mut RState, i: usize) -> Result<usize, Refusal> {
        let n = self.m.nsub();
        for b in 0..n {
            let l = rs.slot[b];
            if l == NONE {
                rs.slot[b] = NONE;
                return Ok(b);
            }
            let end = self.threads.end[l as usize];
            // (A lineage whose `exit` event is still to come keeps its bio.)
            if end != NONE && (end as usize) < i && rs.exited & (1u128 << b) == 0 {
                self.settle(rs, Mt::Bio(b));
                let bio = rs.s.bios[b];
                if bio.loc == Loc::Done && !bio.has(bf::PASS) {
                    if bio.done != 1 || bio.has(bf::DUP) {
                        return Err(refuse(format!(
                            "{} completed {} times",
                            self.m.bio_name(b),
                            bio.done
                        )));
                    }
                    rs.s.bios[b] = crate::model::Bio {
                        nowait: bio.nowait,
                        pt: bio.pt,
                        stacked: bio.stacked,
                        ..crate::model::Bio::NEW
                    };
                    return Ok(b);
                }
            }
        }
        Err(refuse(format!(
            "more than {n} bios in flight at once (the replay's bound)"
        )))
    }

    fn step_bio(&self, rs: &mut RState, i: usize, l: u32) -> Result<(), Refusal> {
        let e = &self.events[i];
        if self.threads.early[l as usize] {
            return self.step_early(rs, i);
        }
        let b = match self.slot_of(rs, l) {
            Some(b) => b,
            None => {
                let b = self.alloc(rs, i)?;
                rs.slot[b] = l;
                let a = self
                    .find(rs, Mt::Bio(b), &|a| matches!(a, Action::Submit { .. }))
                    .map_err(|r| Refusal {
                        why: "a new bio cannot be submitted".into(),
                        ..r
                    })?;
                self.take(rs, a);
                b
            }
        };
        let t = Mt::Bio(b);
        let hot = |want: fn(HotOp) -> bool| move |a: &Action| matches!(*a, Action::Hot { op, .. } if want(op));
        let not_enabled = |what: &str, r: Refusal| Refusal {
            why: format!("the model's {} cannot {what} now", self.m.bio_name(b)),
            ..r
        };
        match e.ev {
            Ev::Enter => {
                let a = self
                    .find(
                        rs,
                        t,
                        &hot(|op| matches!(op, HotOp::QueueEnter | HotOp::BlkQueueEnter)),
                    )
                    .map_err(|r| not_enabled("enter O's queue", r))?;
                self.take(rs, a);
                if !rs.s.bios[b].has(bf::PASS_QREF) {
                    return Err(refuse(format!(
                        "the kernel's bio entered O's queue; the model's {} failed to (O frozen or dead)",
                        self.m.bio_name(b)
                    )));
                }
            }
            Ev::TestMarker | Ev::KeyOff => {
                let a = self
                    .find(rs, t, &hot(|op| matches!(op, HotOp::TestMarker { .. })))
                    .map_err(|r| not_enabled("test its marker", r))?;
                let marked = self.m.marker_set(&rs.s.bios[b]);
                if e.ev == Ev::TestMarker && marked != (e.val != 0) {
                    return Err(refuse(format!(
                        "the kernel found the bio {}marked; the model's {} is {}marked",
                        if e.val != 0 { "" } else { "un" },
                        self.m.bio_name(b),
                        if marked { "" } else { "un" }
                    )));
                }
                self.take(rs, a);
                if e.ev == Ev::KeyOff && !marked {
                    // The hook is patched out: no device has an interposer, so
                    // the pointer the route would read is NULL.
                    let a = self
                        .find(rs, t, &hot(|op| matches!(op, HotOp::ReadInterposer { .. })))
                        .map_err(|r| not_enabled("read the pointer", r))?;
                    if let Some(ip) = rs.s.ptr {
                        return Err(refuse(format!(
                            "the kernel's hook was patched out (no interposer anywhere), but the model's pointer is {}",
                            self.name_ip(Some(ip))
                        )));
                    }
                    self.take(rs, a);
                }
            }
            Ev::Read | Ev::Redirect => {
                let read = e.ev == Ev::Read;
                let a = if read {
                    self.find(rs, t, &hot(|op| matches!(op, HotOp::ReadInterposer { .. })))
                        .map_err(|r| not_enabled("read the pointer", r))?
                } else {
                    self.find(rs, t, &hot(|op| op == HotOp::Redirect))
                        .map_err(|r| not_enabled("call I->submit_bio", r))?
                };
                self.take(rs, a);
                let kernel = self.ip_of(rs, e.arg);
                let model = rs.s.bios[b].ip.or(rs.s.bios[b].via);
                let model = if read { rs.s.bios[b].ip } else { model };
                if (e.arg == 0) != model.is_none() || (e.arg != 0 && kernel != model) {
                    return Err(refuse(format!(
                        "the kernel's bio {} {}; the model's {} {} {}",
                        if read {
                            "read the pointer as"
                        } else {
                            "called"
                        },
                        if e.arg == 0 {
                            "NULL".to_string()
                        } else {
                            kernel.map_or(format!("{:#x}, which no attach set", e.arg), |k| {
                                self.name_ip(Some(k))
                            })
                        },
                        self.m.bio_name(b),
                        if read { "read" } else { "called" },
                        self.name_ip(model)
                    )));
                }
            }
            Ev::SetMarker => {
                let a = self
                    .find(rs, t, &hot(|op| op == HotOp::SetMarker))
                    .map_err(|r| not_enabled("set its marker", r))?;
                self.take(rs, a);
            }
            Ev::Submit if self.threads.splits[i] => {
                let a = self
                    .find(rs, t, &|a| matches!(a, Action::Split { .. }))
                    .map_err(|r| not_enabled("go down O's own path and be split there", r))?;
                self.take(rs, a);
            }
            Ev::Submit => {
                let a = self
                    .find(rs, t, &hot(|op| op == HotOp::DriverSubmit))
                    .map_err(|r| not_enabled("go down O's own path", r))?;
                self.take(rs, a);
            }
            // Taken at the `driver_submit` event before it.
            Ev::Split => {}
            // A front completes; the chain's last front is the model's.
            Ev::Endio if self.threads.front[i].is_some() => {
                if self.threads.front[i] == Some(0) && rs.s.bios[b].fr & fx::FRONT_IN_O != 0 {
                    let a = self
                        .find(rs, t, &|a| matches!(a, Action::CompleteFront { .. }))
                        .map_err(|r| not_enabled("complete its split front", r))?;
                    self.take(rs, a);
                } else if self.threads.front[i] == Some(0) && self.m.kind != Kind::BioSync {
                    return Err(refuse(format!(
                        "the kernel completed a split front of the bio; the model's {} has no front inside O",
                        self.m.bio_name(b)
                    )));
                }
            }
            Ev::Exit if rs.exited & (1u128 << b) != 0 => rs.exited &= !(1u128 << b),
            Ev::Exit => {
                let a = self
                    .find(rs, t, &hot(|op| op == HotOp::QueueExit))
                    .map_err(|r| not_enabled("drop O's queue reference", r))?;
                self.take(rs, a);
            }
            Ev::Clone => {}
            Ev::Endio => {
                if self.threads.held[i] {
                    // The original completes from its clone's end_io.
                    if rs.s.bios[b].loc != Loc::Done {
                        return Err(refuse(format!(
                            "the kernel completed the original bio; the model's {} is {:?}, not completed",
                            self.m.bio_name(b),
                            rs.s.bios[b].loc
                        )));
                    }
                } else if rs.s.bios[b].loc == Loc::InO {
                    let a = self
                        .find(rs, t, &|a| matches!(a, Action::Complete { .. }))
                        .map_err(|r| not_enabled("complete", r))?;
                    self.take(rs, a);
                } else if rs.s.bios[b].loc != Loc::Done && e.val != 0 && rs.s.o_dead {
                    // Its entry into O's queue failed: O is dead. A clone that
                    // I sends to a dead O fails in submit_bio_noacct(), inside
                    // I's ->submit_bio, before the original's pass drops its
                    // queue reference; the model's clone goes after that pass.
                    // The two commute: the pass's `blk_queue_exit` is taken
                    // first, and its `exit` event, later, is then no step.
                    if rs.s.bios[b].has(bf::PASS_QREF) {
                        let x = self
                            .find(rs, t, &hot(|op| op == HotOp::QueueExit))
                            .map_err(|r| not_enabled("drop O's queue reference", r))?;
                        self.take(rs, x);
                        rs.exited |= 1u128 << b;
                    }
                    let a = self
                        .find(
                            rs,
                            t,
                            &hot(|op| matches!(op, HotOp::QueueEnter | HotOp::BlkQueueEnter)),
                        )
                        .map_err(|r| not_enabled("enter O's queue (and fail)", r))?;
                    self.take(rs, a);
                    if rs.s.bios[b].has(bf::PASS_QREF) {
                        return Err(refuse(format!(
                            "the kernel's bio failed to enter O's queue; the model's {} entered it",
                            self.m.bio_name(b)
                        )));
                    }
                } else if rs.s.bios[b].loc != Loc::Done {
                    return Err(refuse(format!(
                        "the kernel completed the bio; the model's {} is {:?}, not inside O",
                        self.m.bio_name(b),
                        rs.s.bios[b].loc
                    )));
                }
            }
            _ => unreachable!("bio events only"),
        }
        Ok(())
    }

    /// A bio that completes before O's queue (an empty flush for an O
    /// without a write cache, while no device has an interposer): no step of
    /// the model, but it must not bypass an interposer the model has set.
    fn step_early(&self, rs: &RState, i: usize) -> Result<(), Refusal> {
        let e = &self.events[i];
        match e.ev {
            Ev::KeyOff => match rs.s.ptr {
                None => Ok(()),
                Some(ip) => Err(refuse(format!(
                    "the kernel completes the bio before O's queue with the hook patched out \
                     (no interposer anywhere), but the model's pointer is {}: it bypasses I",
                    self.name_ip(Some(ip))
                ))),
            },
            Ev::Endio => Ok(()),
            ev => Err(refuse(format!(
                "a bio completed before O's queue (its `key_off` came first) has a `{}`",
                ev.name()
            ))),
        }
    }

    fn at_rest(&self, s: &State<CAP>, c: usize) -> bool {
        let k = &s.ctls[c];
        k.phase == Phase::Attach
            && k.sub == 0
            && k.pc == self.m.norm(Phase::Attach, 0)
            && k.held == 0
    }

    fn step_task(&self, rs: &mut RState, i: usize, pid: u32) -> Result<(), Refusal> {
        let e = &self.events[i];
        let proc = match (
            e.ev,
            self.trace.names.get(e.name as usize).map(String::as_str),
        ) {
            (Ev::Prim, Some("attach")) => Some(false),
            (Ev::Prim, Some("detach")) => Some(true),
            (Ev::Prim, Some("remove")) => return self.step_rm(rs, i, pid),
            _ => None,
        };
        let mine = rs.task.iter().position(|&t| t == pid);
        match (proc, e.val) {
            (Some(detach), 1) => self.call(rs, pid, mine, detach),
            (Some(detach), ret) => {
                let Some(c) = mine else {
                    return Err(refuse(format!(
                        "task {pid} returns from {} without having called it",
                        if detach { "detach" } else { "attach" }
                    )));
                };
                self.ret(rs, c, detach, ret)
            }
            (None, _) => match mine {
                Some(c) => self.step_ctl(rs, i, c),
                None => self.step_rm(rs, i, pid),
            },
        }
    }

    /// Task `pid` calls attach (a controller at rest takes it) or detach (the
    /// attached controller: detach may run in another task than its attach).
    fn call(
        &self,
        rs: &mut RState,
        pid: u32,
        mine: Option<usize>,
        detach: bool,
    ) -> Result<(), Refusal> {
        if let Some(c) = mine {
            return Err(refuse(format!(
                "task {pid} calls {} inside controller {}'s procedure",
                if detach { "detach" } else { "attach" },
                c + 1
            )));
        }
        let n = rs.s.ctls.len();
        let c = if detach {
            (0..n).find(|&c| rs.s.ctls[c].phase == Phase::Attached)
        } else {
            (0..n).find(|&c| rs.task[c] == NONE && self.at_rest(&rs.s, c))
        };
        let Some(c) = c else {
            return Err(refuse(if detach {
                "detach is called, but no controller is attached in the model".to_string()
            } else {
                format!("attach is called, but every controller of the replay ({n}) is busy")
            }));
        };
        rs.task[c] = pid;
        if detach {
            let a = self
                .find(rs, Mt::Ctl(c), &|a| matches!(a, Action::BeginDetach { .. }))
                .map_err(|r| Refusal {
                    why: format!("controller {} cannot call detach now", c + 1),
                    ..r
                })?;
            self.take(rs, a);
        }
        Ok(())
    }

    /// Controller `c`'s attach or detach returns `ret`.
    fn ret(&self, rs: &mut RState, c: usize, detach: bool, ret: i32) -> Result<(), Refusal> {
        let a = self
            .find(rs, Mt::Ctl(c), &|a| matches!(a, Action::Return { .. }))
            .map_err(|r| Refusal {
                why: format!(
                    "{} returns in the kernel; the model's controller {} has steps left",
                    if detach { "detach" } else { "attach" },
                    c + 1
                ),
                ..r
            })?;
        let Action::Return { ok, detach: d, .. } = a else {
            unreachable!("found a Return")
        };
        if d != detach || ok != (ret == 0) {
            return Err(refuse(format!(
                "{}() returns {ret} in the kernel; in the model controller {}'s {}() returns {}",
                if detach { "detach" } else { "attach" },
                c + 1,
                if d { "detach" } else { "attach" },
                if ok { "0" } else { "an error" }
            )));
        }
        self.take(rs, a);
        // Attached, or at rest: the task is free (a detach may come from another).
        rs.task[c] = NONE;
        Ok(())
    }

    fn step_ctl(&self, rs: &mut RState, i: usize, c: usize) -> Result<(), Refusal> {
        let e = &self.events[i];
        let t = Mt::Ctl(c);
        let ctl = |want: fn(Prim, u8) -> bool| move |a: &Action| matches!(*a, Action::Ctl { prim, sub, .. } if want(prim.meaning(), sub));
        let what = match e.ev {
            Ev::Lock => "take open_mutex",
            Ev::Unlock => "release open_mutex",
            Ev::FreezeStart => "start a freeze of O's queue",
            Ev::FreezeWait => "wait for O's frozen queue to drain",
            Ev::Unfreeze => "unfreeze O's queue",
            Ev::PtrSet => "set the interposer pointer",
            Ev::PtrClear => "clear the interposer pointer",
            _ => "run this primitive",
        };
        if e.ev == Ev::Lock && rs.outside != NONE {
            return Err(refuse(format!(
                "controller {} takes open_mutex, which task {} holds",
                c + 1,
                rs.outside
            )));
        }
        let found = match e.ev {
            Ev::Lock => self.find(
                rs,
                t,
                &ctl(|p, _| matches!(p, Prim::MutexLock | Prim::MutexTrylock)),
            ),
            Ev::Unlock => self.find(rs, t, &ctl(|p, _| p == Prim::MutexUnlock)),
            Ev::FreezeStart => self.find(rs, t, &ctl(|p, s| p == Prim::FreezeQueue && s == 0)),
            Ev::FreezeWait => self.find(rs, t, &ctl(|p, s| p == Prim::FreezeQueue && s == 1)),
            Ev::Unfreeze => self.find(rs, t, &ctl(|p, _| p == Prim::UnfreezeQueue)),
            Ev::PtrSet => self.find(
                rs,
                t,
                &ctl(|p, _| matches!(p, Prim::CmpxchgInterposer | Prim::StoreInterposer)),
            ),
            Ev::PtrClear => self.find(rs, t, &ctl(|p, _| p == Prim::ClearInterposer)),
            Ev::Prim => {
                let Some(want) = self.prims.get(e.name as usize).copied().flatten() else {
                    return Err(refuse(format!(
                        "`{}` is not a primitive of the spec's attach or detach",
                        self.trace.names[e.name as usize]
                    )));
                };
                let k = rs.s.ctls[c];
                let begun = k.sub > 0
                    && matches!(k.phase, Phase::Attach | Phase::Detach)
                    && self.m.protocol_step(k.phase, k.pc).map(|st| st.prim) == Some(want);
                if e.val == 1 {
                    // Called; it waits. Its first step (the blocking) is taken now.
                    let first = move |a: &Action| match *a {
                        Action::Ctl { prim, sub: 0, .. } | Action::Fail { prim, .. } => {
                            prim == want
                        }
                        _ => false,
                    };
                    let a = self.find(rs, t, &first).map_err(|r| Refusal {
                        why: format!(
                            "controller {} calls {}, which is not the spec's next step",
                            c + 1,
                            want.call()
                        ),
                        ..r
                    })?;
                    if self.multi(want) {
                        if !matches!(a, Action::Ctl { .. }) {
                            return Err(refuse(format!("{} cannot start now", want.call())));
                        }
                        self.take(rs, a);
                    }
                    return Ok(());
                }
                if begun {
                    // Its return: the rest of its steps (the wait).
                    self.finish_prim(rs, c, want);
                    if rs.s.ctls[c].sub != 0 && rs.s.ctls[c].pc == k.pc {
                        let mut acts = Vec::new();
                        self.actions(&rs.s, t, &mut acts);
                        return Err(Refusal {
                            why: format!(
                                "the kernel's {} returned; in the model it still waits ({})",
                                want.call(),
                                self.m.summary(&rs.s)
                            ),
                            allowed: acts,
                        });
                    }
                    if e.val < 0 {
                        return Err(refuse(format!(
                            "the kernel's {} failed ({}) after it waited; the model's cannot",
                            want.call(),
                            e.val
                        )));
                    }
                    return Ok(());
                }
                let failed = e.val < 0;
                self.find(rs, t, &move |a: &Action| match *a {
                    Action::Ctl { prim, sub: 0, .. } => prim == want,
                    Action::Fail { prim, .. } => failed && prim == want,
                    _ => false,
                })
            }
            _ => unreachable!("task events only"),
        };
        let a = found.map_err(|r| {
            let next = r
                .allowed
                .iter()
                .find_map(|a| match a {
                    Action::Ctl { .. } | Action::Fail { .. } => Some(self.m.describe(a)),
                    _ => None,
                })
                .unwrap_or_else(|| "nothing it can take now".into());
            Refusal {
                why: format!(
                    "controller {} cannot {what} here: the spec's next step is {next}",
                    c + 1
                ),
                ..r
            }
        })?;
        let before = rs.s.ctls[c].phase;
        // An injected failure, if the kernel's primitive failed and the model's
        // would not.
        let a = match a {
            Action::Ctl { prim, .. } if e.ev == Ev::Prim && e.val < 0 => {
                let mut trial = rs.clone();
                self.take(&mut trial, a);
                self.finish_prim(&mut trial, c, prim);
                if errs(before, trial.s.ctls[c].phase) {
                    a
                } else {
                    Action::Fail { c: c as u8, prim }
                }
            }
            a => a,
        };
        let mut acts = Vec::new();
        self.actions(&rs.s, t, &mut acts);
        if !acts.contains(&a) {
            return Err(Refusal {
                why: format!(
                    "the kernel's primitive failed ({}); the model's cannot fail here",
                    e.val
                ),
                allowed: acts,
            });
        }
        self.take(rs, a);
        if let (Ev::Prim, Action::Ctl { prim, .. }) = (e.ev, a) {
            self.finish_prim(rs, c, prim);
        }
        let failed = errs(before, rs.s.ctls[c].phase) || matches!(a, Action::Fail { .. });
        let kernel_failed = match e.ev {
            Ev::Prim | Ev::PtrSet => e.val < 0,
            _ => false,
        };
        if failed != kernel_failed {
            return Err(refuse(format!(
                "the kernel's step {}; the model's {}",
                if kernel_failed { "failed" } else { "succeeded" },
                if failed { "failed" } else { "succeeded" }
            )));
        }
        if e.ev == Ev::PtrSet && !failed {
            rs.kip[c] = e.arg;
        }
        if e.ev == Ev::PtrClear {
            if let Some(k) = self.ip_of_any(rs, e.arg) {
                if k != c {
                    return Err(refuse(format!(
                        "the kernel cleared controller {}'s interposer; controller {} cleared it in the model",
                        k + 1,
                        c + 1
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether the model's primitive has more than one step (it waits).
    fn multi(&self, p: Prim) -> bool {
        match p.meaning() {
            Prim::FreezeBdev => self.m.protocol.filesystem,
            Prim::DmInternalSuspendFast
            | Prim::DmSuspend
            | Prim::SynchronizeRcu
            | Prim::FreezeQueue => true,
            _ => false,
        }
    }

    fn ip_of_any(&self, rs: &RState, kip: u64) -> Option<usize> {
        (kip != 0)
            .then(|| rs.kip.iter().position(|&k| k == kip))
            .flatten()
    }

    /// A primitive the module reports once, after it returned: the rest of
    /// its sub-steps (a wait) too.
    fn finish_prim(&self, rs: &mut RState, c: usize, prim: Prim) {
        let mut acts = Vec::new();
        loop {
            self.actions(&rs.s, Mt::Ctl(c), &mut acts);
            match acts
                .iter()
                .find(|a| matches!(a, Action::Ctl { prim: p, sub, .. } if *p == prim && *sub > 0))
            {
                Some(&a) => self.take(rs, a),
                None => return,
            }
        }
    }
}

fn errs(before: Phase, after: Phase) -> bool {
    matches!(before, Phase::Attach | Phase::Detach)
        && matches!(after, Phase::AttachErr { .. } | Phase::DetachErr { .. })
}
