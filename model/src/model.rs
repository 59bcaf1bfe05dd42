//! The Stateright model: one original device O, one interposer I per
//! controller, submitters, controllers, an optional freezer and remover, and
//! the kernel primitives between them. The protocol itself (hot path, attach,
//! detach) is data from the spec; this file gives each step its kernel meaning.

use crate::fixed::Fixed;
use crate::spec::{
    Bounds, CtlStep, HotOp, Kind, MarkerKind, Park, Prim, Protocol, Res, SubmitPath,
};
use stateright::{Model, Property, Representative};

/// Capacities of the state's lists, from the spec's largest bounds: 4
/// submitters × 4 bios plus one superblock bio for each of 3 controllers.
pub const MAX_BIOS: usize = 19;
pub const MAX_CTLS: usize = 3;
pub const MAX_FREEZERS: usize = 2;
use std::fmt;

mod bio;
mod remover;

/// An interposer instance: controller `c`'s I, created in cycle `gen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ip {
    pub c: u8,
    pub gen: u8,
}

/// Where the travelling bio of a lineage (the bio, or I's clone of it) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loc {
    Unsubmitted,
    /// In the hands of a pass through the hot path.
    Carried,
    /// Inside O (a request on blk-mq, remapped clones below device-mapper).
    InO,
    /// On O's deferred list while O is suspended.
    DeferredO,
    /// Inside I, its clone queued on the carrier's `current->bio_list`.
    InI,
    /// On I's deferred list while I is suspended.
    DeferredI,
    Done,
    /// Never completes: dropped, or swallowed by freed memory.
    Lost,
    /// Held by I (copy-on-write: it reads the old data first) until a worker
    /// resubmits its clone to O.
    ParkedI,
    /// Completed by O, but chained to its split front, still inside O
    /// (`bio_chain`): its end_io runs when the front completes.
    Chained,
}

/// Bio flags.
pub mod bf {
    /// A pass through the hot path is running for this lineage.
    pub const PASS: u8 = 1;
    /// The pass holds O's queue reference.
    pub const PASS_QREF: u8 = 2;
    /// O's blk-mq request holds the queue reference until completion.
    pub const REQ_QREF: u8 = 4;
    /// `BIO_INTERPOSED` is set on the travelling bio.
    pub const MARKED: u8 = 8;
    /// The carrier task is marked.
    pub const TASKMARK: u8 = 16;
    /// The pass is run by a kworker (a resubmission), not the submitter.
    pub const KWORKER: u8 = 32;
    /// I has queued a clone on the carrier's bio_list.
    pub const CLONE_QUEUED: u8 = 64;
    /// The bio was submitted again after it was handed off.
    pub const DUP: u8 = 128;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bio {
    pub loc: Loc,
    pub pc: u8,
    pub flags: u8,
    /// The interposer pointer this pass loaded.
    pub ip: Option<Ip>,
    /// The I instance holding the original while its clone travels.
    pub via: Option<Ip>,
    /// Times this lineage was redirected to an interposer.
    pub depth: u8,
    /// Completions of the original bio.
    pub done: u8,
    /// RCU: bit 0, the pass is inside an RCU read-side section; bit 1 + c, the
    /// grace period controller c started waits for this section to end; bit
    /// 4 + i, filter instance i's `kfree_rcu` waits for it ([`rcu::cb`]).
    pub rcu: u8,
    /// `REQ_NOWAIT` (fixed for the bio's life; its clones copy it).
    pub nowait: bool,
    /// A passthrough request (fixed): its passes run the `passthrough` list.
    pub pt: bool,
    /// Sent through a device stacked on O (fixed): its first pass starts
    /// from `current->bio_list`. Kept in the bio so that symmetry never
    /// merges a stacked submitter with a plain one.
    pub stacked: bool,
    /// [`fx`] bits.
    pub fr: u8,
}

/// [`Bio::fr`]'s bits: a split by O, and where the pass came from.
pub mod fx {
    /// O split the travelling bio: its front is inside O.
    pub const FRONT_IN_O: u8 = 1;
    /// The front's blk-mq request holds a queue reference until it completes.
    pub const FRONT_QREF: u8 = 2;
    /// The front is part of I's clone (the chain is on the clone).
    pub const FRONT_I: u8 = 4;
    /// This lineage has been split (once per lineage, a bound).
    pub const SPLIT: u8 = 8;
    /// The remainder is queued on the carrier's `current->bio_list`.
    pub const REM_QUEUED: u8 = 16;
    /// This pass was started from `current->bio_list` (tracked only when a
    /// `test_bio_list` step reads it).
    pub const INNER: u8 = 32;
    /// The pass (then I's clone) holds a reference on the refcounted filter
    /// it read (`filter_get`), until the clone's end_io drops it.
    pub const IREF: u8 = 64;
    /// The filter this bio holds a reference on owns a module reference
    /// (`filter_own_module`): the module stays while the reference does.
    pub const IMOD: u8 = 128;
    /// Both: what the clone's end_io drops.
    pub const IREFS: u8 = IREF | IMOD;
}

/// [`Bio::rcu`]'s bits.
pub mod rcu {
    pub const IN: u8 = 1;
    /// The bit of controller `c`'s grace period.
    pub const fn gp(c: usize) -> u8 {
        2 << c
    }
    /// The reader began before filter instance `i` was released with
    /// `kfree_rcu`: the filter's memory stays until it leaves.
    pub const fn cb(i: usize) -> u8 {
        16 << i
    }
}

impl Bio {
    pub const NEW: Bio = Bio {
        loc: Loc::Unsubmitted,
        pc: 0,
        flags: 0,
        ip: None,
        via: None,
        depth: 0,
        done: 0,
        rcu: 0,
        nowait: false,
        pt: false,
        stacked: false,
        fr: 0,
    };
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
    fn in_flight(&self) -> bool {
        matches!(
            self.loc,
            Loc::Carried
                | Loc::InO
                | Loc::InI
                | Loc::DeferredO
                | Loc::DeferredI
                | Loc::ParkedI
                | Loc::Chained
        ) || self.fr & fx::FRONT_IN_O != 0
    }
}

/// Controller holdings.
pub mod held {
    pub const MUTEX: u8 = 1;
    pub const FS_FROZEN: u8 = 2;
    pub const Q_FROZEN: u8 = 4;
    pub const O_SUSPENDED: u8 = 8;
    /// A reference on I's owner module.
    pub const MODREF: u8 = 16;
    /// The controller's filter owns a module reference (`filter_own_module`):
    /// the filter's release drops it.
    pub const FILTER_MODREF: u8 = 32;
    /// The controller's call works on the removed O: a new disk has taken
    /// O's dev_t since it opened O (`[bounds] reuse`).
    pub const OLD_O: u8 = 64;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ILife {
    Freed,
    Created,
    Open,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Attach,
    /// Attach failed at step `failed`; running its error path.
    AttachErr {
        failed: u8,
    },
    Attached,
    Detach,
    DetachErr {
        failed: u8,
    },
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ctl {
    pub cycle: u8,
    pub phase: Phase,
    /// Step index; in an error path, the cursor of the unwind.
    pub pc: u8,
    /// Sub-step of a blocking primitive.
    pub sub: u8,
    pub held: u8,
    pub ilife: ILife,
    pub isusp: bool,
    pub igen: u8,
}

/// The remover's holdings.
pub mod rmheld {
    pub const MUTEX: u8 = 1;
    /// The core's drain: `__blk_mark_disk_dead` starts a freeze of O that
    /// `del_gendisk` ends at its close.
    pub const DRAIN: u8 = 2;
    /// The removal callback's own queue freeze.
    pub const Q_FROZEN: u8 = 4;
}

/// `del_gendisk(O)`: where it is, what it holds, and the I it took over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rm {
    pub pc: u8,
    pub sub: u8,
    pub held: u8,
    /// The interposer found published when O was marked dead, which the
    /// removal callback (`on_remove`) owns from then on.
    pub ip: Option<Ip>,
}

/// One step of the remover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmStep {
    Lock,
    MarkDead,
    /// Step `i` of the spec's removal callback.
    Callback(usize),
    Unlock,
    DrainWait,
    Unfreeze,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State<const N: usize = MAX_BIOS> {
    /// Bios per submitter (constant; lets symmetry reduction find the groups).
    pub k: u8,
    /// Submitter bios (submitter-major), then one superblock bio per controller.
    pub bios: Fixed<Bio, N>,
    pub ctls: Fixed<Ctl, MAX_CTLS>,
    /// `O->bd_interposer`.
    pub ptr: Option<Ip>,
    pub o_dead: bool,
    pub rm: Rm,
    pub freezers: Fixed<u8, MAX_FREEZERS>,
    pub injected: u8,
    /// Queue references taken and never dropped.
    pub leaked_qrefs: u8,
    pub uaf: bool,
    /// A release of something not held (a kernel WARN).
    pub unbalanced: bool,
    /// `rmmod` unloaded the filter's owner module: its code and data are gone.
    pub module_gone: bool,
    /// Filters released with `kfree_rcu` whose memory awaits its RCU callback:
    /// bit [`Quiesce::inst`] of the instance.
    pub rcu_cb: u8,
    /// A new disk took O's dev_t after `del_gendisk(O)`: `O` is that disk now.
    pub o_reused: bool,
}

/// Who runs a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Who {
    Submitter(u8),
    Controller(u8),
    Kworker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A submitter starts `submit_bio_noacct` on its next bio.
    Submit {
        s: u8,
        b: u8,
    },
    /// One hot-path step of bio `b`'s pass.
    Hot {
        b: u8,
        op: HotOp,
        who: Who,
        clone: bool,
    },
    /// I's `->submit_bio` parks bio `b` instead of cloning it at once (in
    /// place of the hot path's `redirect` step).
    Park {
        b: u8,
        who: Who,
    },
    /// I's worker resubmits the clone of the parked bio `b` to O.
    Unpark {
        b: u8,
    },
    /// O completes bio `b` (`bio_endio`).
    Complete {
        b: u8,
    },
    /// At its `driver_submit` step, O splits bio `b`: the front goes into O,
    /// the remainder is queued for a new pass.
    Split {
        b: u8,
        who: Who,
    },
    /// O completes the split front of bio `b`.
    CompleteFront {
        b: u8,
    },
    /// Controller `c` runs sub-step `sub` of `prim`.
    Ctl {
        c: u8,
        prim: Prim,
        sub: u8,
        unwind: bool,
    },
    /// An injected failure of `prim` in controller `c`.
    Fail {
        c: u8,
        prim: Prim,
    },
    /// attach or detach returns; with `restart`, the call runs again from its
    /// first step (`-ERESTARTSYS`: the caller never sees the error).
    Return {
        c: u8,
        ok: bool,
        detach: bool,
        restart: bool,
    },
    /// The controller calls detach.
    BeginDetach {
        c: u8,
    },
    Remover {
        pc: u8,
        sub: u8,
    },
    Freezer {
        f: u8,
        pc: u8,
    },
    /// `rmmod` of the filter's owner module (`delete_module`): once nothing
    /// holds a reference on it, its code and data are freed.
    Rmmod,
    /// `add_disk(O')`: after `del_gendisk(O)` a new disk takes O's dev_t.
    AddDisk,
    /// The RCU callback of filter instance `i`'s `kfree_rcu` frees its memory,
    /// once every reader that began before the release has left.
    RcuFree {
        i: u8,
    },
}

pub const FREEZER_STEPS: [&str; 3] = [
    "blk_freeze_queue_start(O)",
    "blk_mq_freeze_queue_wait(O)",
    "blk_mq_unfreeze_queue(O)",
];

/// One check: a protocol, one kind of original, bounds.
#[derive(Clone, Debug)]
pub struct Quiesce<const N: usize = MAX_BIOS> {
    pub protocol: Protocol,
    pub kind: Kind,
    pub bounds: Bounds,
    /// Bios hold references on the filter (`filter_get`, `filter_tryget`).
    refcounted: bool,
    /// A pass remembers that it started from `current->bio_list`
    /// (`test_bio_list` reads it).
    tests_bio_list: bool,
    /// O may split a lineage again (a kernel trace's bio split to its limits
    /// more than once); the checker's bound is once per lineage.
    pub resplit: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Go on to the next sub-step.
    Next,
    /// The primitive returned 0.
    Ok,
    /// The primitive returned an error.
    Err,
}

impl<const N: usize> Quiesce<N> {
    pub fn new(protocol: Protocol, kind: Kind, bounds: Bounds) -> Self {
        Quiesce {
            refcounted: protocol.refcounted(),
            tests_bio_list: protocol.tests_bio_list(),
            resplit: false,
            protocol: protocol.for_kind(kind),
            kind,
            bounds,
        }
    }

    /// The same check at another capacity for bios (it must hold
    /// [`Self::bios_needed`]).
    pub fn resized<const M: usize>(&self) -> Quiesce<M> {
        assert!(
            self.bios_needed() <= M,
            "{} bios do not fit {M}",
            self.bios_needed()
        );
        Quiesce {
            protocol: self.protocol.clone(),
            kind: self.kind,
            bounds: self.bounds,
            refcounted: self.refcounted,
            tests_bio_list: self.tests_bio_list,
            resplit: self.resplit,
        }
    }

    /// The bios a state holds: the submitters', and one superblock bio for
    /// each controller.
    pub fn bios_needed(&self) -> usize {
        self.nsub() + self.bounds.controllers as usize
    }

    /// Step `pc` of a pass (the hot path's, then the passthrough list's).
    pub fn op_at(&self, pc: u8) -> HotOp {
        self.protocol
            .hot_op(pc as usize)
            .expect("a pass rests on a step of its list")
    }

    /// Whether bio `b` is a passthrough request (named `rq`, not `bio`).
    pub fn is_pt(&self, b: usize) -> bool {
        self.path_of(b) == SubmitPath::Passthrough
    }

    /// How bio `b` enters the block layer (a superblock bio: `submit_bio`).
    pub fn path_of(&self, b: usize) -> SubmitPath {
        if b < self.nsub() {
            self.path(b / self.bounds.bios as usize)
        } else {
            SubmitPath::SubmitBio
        }
    }

    /// How submitter `sub` enters the block layer.
    pub fn path(&self, sub: usize) -> SubmitPath {
        let p = &self.protocol.paths;
        p[sub % p.len()]
    }
    pub fn nsub(&self) -> usize {
        self.bounds.submitters as usize * self.bounds.bios as usize
    }
    fn sb(&self, c: usize) -> usize {
        self.nsub() + c
    }
    pub fn bio_name(&self, b: usize) -> String {
        if b >= self.nsub() {
            format!("sb{}", b - self.nsub() + 1)
        } else {
            let k = self.bounds.bios as usize;
            let what = if self.is_pt(b) { "rq" } else { "bio" };
            format!("{what}{}.{}", b / k + 1, b % k + 1)
        }
    }
    fn steps(&self, phase: Phase) -> &[CtlStep] {
        match phase {
            Phase::Attach | Phase::AttachErr { .. } => &self.protocol.attach,
            _ => &self.protocol.detach,
        }
    }
    /// Step `pc` of the procedure a controller in `phase` runs.
    pub fn protocol_step(&self, phase: Phase, pc: u8) -> Option<&CtlStep> {
        self.steps(phase).get(pc as usize)
    }
    /// A controller whose procedure failed at a step after its point of no
    /// return: (controller, failed step, the point of no return).
    pub fn past_no_return(&self, s: &State<N>) -> Option<(usize, usize, usize)> {
        s.ctls.iter().enumerate().find_map(|(ci, c)| {
            let (detach, failed) = match c.phase {
                Phase::AttachErr { failed } => (false, failed as usize),
                Phase::DetachErr { failed } => (true, failed as usize),
                _ => return None,
            };
            let j = self.protocol.point_of_no_return(detach)?;
            (failed > j).then_some((ci, failed, j))
        })
    }
    pub fn applies(&self, step: &CtlStep) -> bool {
        step.only.is_none_or(|k| k == self.kind)
    }
    /// First applicable step at or after `pc`.
    pub fn norm(&self, phase: Phase, pc: usize) -> u8 {
        let steps = self.steps(phase);
        let mut i = pc;
        while i < steps.len() && !self.applies(&steps[i]) {
            i += 1;
        }
        i as u8
    }

    // --- derived device state -------------------------------------------

    pub fn freeze_depth(&self, s: &State<N>) -> usize {
        let c = s
            .ctls
            .iter()
            .filter(|c| c.held & (held::Q_FROZEN | held::OLD_O) == held::Q_FROZEN)
            .count();
        let f = s.freezers.iter().filter(|&&pc| pc == 1 || pc == 2).count();
        let r = usize::from(s.rm.held & rmheld::DRAIN != 0)
            + usize::from(s.rm.held & rmheld::Q_FROZEN != 0);
        c + f + r
    }
    pub fn qrefs(&self, s: &State<N>) -> usize {
        s.leaked_qrefs as usize
            + s.bios.iter().filter(|b| b.has(bf::PASS_QREF)).count()
            + s.bios.iter().filter(|b| b.has(bf::REQ_QREF)).count()
            + s.bios.iter().filter(|b| b.fr & fx::FRONT_QREF != 0).count()
    }
    pub fn o_suspended(&self, s: &State<N>) -> bool {
        s.ctls
            .iter()
            .any(|c| c.held & (held::O_SUSPENDED | held::OLD_O) == held::O_SUSPENDED)
    }
    pub fn fs_frozen(&self, s: &State<N>) -> bool {
        s.ctls
            .iter()
            .any(|c| c.held & (held::FS_FROZEN | held::OLD_O) == held::FS_FROZEN)
    }
    /// Whether a controller holds the removed O's open_mutex.
    pub fn old_mutex_held(&self, s: &State<N>) -> bool {
        s.ctls
            .iter()
            .any(|c| c.held & (held::MUTEX | held::OLD_O) == held::MUTEX | held::OLD_O)
    }
    /// Whether controller `ci`'s call works on the removed O.
    pub fn on_old_o(s: &State<N>, ci: usize) -> bool {
        s.ctls[ci].held & held::OLD_O != 0
    }
    /// `add_disk(O')` may run: O is removed, nothing holds it (its
    /// open_mutex, a freeze or a suspend) and no bio is under way (none
    /// carries on from the removed disk into the new one): it starts clean.
    fn may_add_disk(&self, s: &State<N>) -> bool {
        self.bounds.reuse
            && !s.o_reused
            && s.o_dead
            && s.rm.pc as usize >= self.rm_len()
            && s.ctls.iter().all(|c| {
                c.held & (held::MUTEX | held::Q_FROZEN | held::O_SUSPENDED | held::FS_FROZEN) == 0
            })
            && s.rm.held == 0
            && s.freezers
                .iter()
                .all(|&pc| pc == 0 || pc as usize >= FREEZER_STEPS.len())
            && s.bios
                .iter()
                .all(|b| matches!(b.loc, Loc::Unsubmitted | Loc::Done | Loc::Lost))
    }
    /// A controller between runs: done, or about to start an attach.
    pub fn at_rest(&self, c: &Ctl) -> bool {
        c.phase == Phase::Done
            || (c.phase == Phase::Attach && c.sub == 0 && c.pc == self.norm(Phase::Attach, 0))
    }
    /// Whether anything holds a reference on I's owner module: a controller,
    /// a filter that owns one, or a bio's reference on such a filter.
    pub fn module_pinned(&self, s: &State<N>) -> bool {
        s.ctls
            .iter()
            .any(|c| c.held & (held::MODREF | held::FILTER_MODREF) != 0)
            || s.bios.iter().any(|b| b.fr & fx::IMOD != 0)
    }
    /// Whether the filter instance `ip` owns a module reference.
    pub fn owns_module(&self, s: &State<N>, ip: Ip) -> bool {
        let c = &s.ctls[ip.c as usize];
        (c.igen == ip.gen && c.held & held::FILTER_MODREF != 0)
            || s.bios
                .iter()
                .any(|b| b.fr & fx::IMOD != 0 && b.via.or(b.ip) == Some(ip))
    }
    /// Instance `ip`'s index for the `kfree_rcu` bits (below 3: the spec
    /// bounds controllers x cycles).
    pub fn inst(&self, ip: Ip) -> usize {
        ip.c as usize * self.bounds.cycles as usize + ip.gen as usize
    }
    /// Whether filter instance `ip`'s memory is gone: released, and with
    /// `kfree_rcu` its RCU callback has run too. Until then a reader may still
    /// look at its reference count (`refcount_inc_not_zero` sees zero).
    pub fn memory_gone(&self, s: &State<N>, ip: Ip) -> bool {
        self.freed(s, ip) && s.rcu_cb & (1 << self.inst(ip)) == 0
    }
    /// A reference on filter instance `ip` was dropped (it was live before):
    /// with `kfree_rcu`, if it was the last one, the release queues the
    /// filter's memory for a grace period that waits for every reader inside
    /// an RCU read-side section now.
    pub(crate) fn released(&self, s: &mut State<N>, ip: Ip, was_live: bool) {
        if !self.protocol.kfree_rcu || !was_live || !self.freed(s, ip) {
            return;
        }
        let i = self.inst(ip);
        s.rcu_cb |= 1 << i;
        for b in s.bios.iter_mut() {
            if b.rcu & rcu::IN != 0 {
                b.rcu |= rcu::cb(i);
            }
        }
    }
    /// Whether I instance `ip` is gone. A refcounted filter lives while its
    /// attachment or any bio holds a reference: the last one frees it.
    pub fn freed(&self, s: &State<N>, ip: Ip) -> bool {
        let c = &s.ctls[ip.c as usize];
        let attached = c.igen == ip.gen && c.ilife != ILife::Freed;
        let referenced = self.refcounted
            && s.bios
                .iter()
                .any(|b| b.fr & fx::IREF != 0 && b.via.or(b.ip) == Some(ip));
        !attached && !referenced
    }
    /// I has a bio in flight: its clone travels, is inside O, or is deferred by a
    /// suspended O. `dm_suspend(I)` waits for all of these (I's bio completes only
    /// when its clone does); bios I itself deferred while suspended do not count.
    /// A parked bio counts when the spec says `park = "counted"`.
    fn i_busy(&self, s: &State<N>, ip: Ip) -> bool {
        let parked = self.protocol.park == Some(Park::Counted);
        s.bios.iter().any(|b| {
            b.via == Some(ip)
                && (matches!(
                    b.loc,
                    Loc::Carried | Loc::InO | Loc::InI | Loc::DeferredO | Loc::Chained
                ) || (parked && b.loc == Loc::ParkedI))
        })
    }
    fn submitter_busy(&self, s: &State<N>, sub: usize) -> bool {
        let k = self.bounds.bios as usize;
        s.bios[sub * k..(sub + 1) * k]
            .iter()
            .any(|b| b.has(bf::PASS) && !b.has(bf::KWORKER))
    }
    fn writers_active(&self, s: &State<N>) -> bool {
        (0..self.bounds.submitters as usize).any(|i| self.submitter_busy(s, i))
    }
    pub fn all_done(&self, s: &State<N>) -> bool {
        s.bios[..self.nsub()]
            .iter()
            .all(|b| b.loc != Loc::Unsubmitted)
            && s.bios.iter().all(|b| !b.has(bf::PASS))
            && s.ctls.iter().all(|c| c.phase == Phase::Done)
            && (!self.bounds.remover || s.rm.pc as usize == self.rm_len())
            && s.freezers
                .iter()
                .all(|&pc| pc as usize == FREEZER_STEPS.len())
    }
    fn carrier(&self, b: usize, bio: &Bio) -> Who {
        if bio.has(bf::KWORKER) {
            Who::Kworker
        } else if b >= self.nsub() {
            Who::Controller((b - self.nsub()) as u8)
        } else {
            Who::Submitter((b / self.bounds.bios as usize) as u8)
        }
    }

    // --- controller mechanics -------------------------------------------

    /// The primitive the controller runs next, if any, and whether it is an unwind.
    fn ctl_current(&self, c: &Ctl) -> Option<(Prim, bool)> {
        match c.phase {
            Phase::Attach | Phase::Detach => self
                .steps(c.phase)
                .get(c.pc as usize)
                .map(|st| (st.prim, false)),
            Phase::AttachErr { failed } | Phase::DetachErr { failed } => {
                let step = &self.steps(c.phase)[failed as usize];
                match &step.on_error {
                    Some(list) => list.get(c.pc as usize).map(|e| (e.prim, true)),
                    None => (c.pc > 0).then(|| {
                        let p = self.steps(c.phase)[c.pc as usize - 1].prim;
                        (
                            p.inverse().expect("unwind cursor rests on acquiring steps"),
                            true,
                        )
                    }),
                }
            }
            Phase::Attached | Phase::Done => None,
        }
    }

    /// Move a default-unwind cursor down to the next step whose resource is still held.
    fn unwind_norm(&self, s: &State<N>, ci: usize, mut pc: u8, phase: Phase) -> u8 {
        let steps = self.steps(phase);
        while pc > 0 {
            let st = &steps[pc as usize - 1];
            if self.applies(st)
                && st
                    .prim
                    .info()
                    .acquires
                    .is_some_and(|r| self.holds(s, ci, r))
            {
                break;
            }
            pc -= 1;
        }
        pc
    }

    fn holds(&self, s: &State<N>, ci: usize, r: Res) -> bool {
        let c = &s.ctls[ci];
        match r {
            Res::Mutex => c.held & held::MUTEX != 0,
            Res::FsFrozen => c.held & held::FS_FROZEN != 0,
            Res::QFrozen => c.held & held::Q_FROZEN != 0,
            Res::OSuspended => c.held & held::O_SUSPENDED != 0,
            Res::ModRef => c.held & held::MODREF != 0,
            Res::ICreated => c.ilife != ILife::Freed,
            Res::IOpen => c.ilife == ILife::Open,
            Res::ISuspended => c.isusp,
            Res::Pointer => {
                s.ptr
                    == Some(Ip {
                        c: ci as u8,
                        gen: c.igen,
                    })
            }
        }
    }

    fn prim_enabled(&self, s: &State<N>, ci: usize, prim: Prim, sub: u8) -> bool {
        let c = &s.ctls[ci];
        match (prim.meaning(), sub) {
            (Prim::MutexLock, _) if Self::on_old_o(s, ci) => !self.old_mutex_held(s),
            (Prim::MutexLock, _) => !self.mutex_held(s),
            (Prim::FreezeQueue, 1) => self.qrefs(s) == 0,
            (Prim::DmInternalSuspendFast, 1) => !s
                .bios
                .iter()
                .any(|b| b.loc == Loc::InO || b.fr & fx::FRONT_IN_O != 0),
            (Prim::DmSuspend, 1) => !self.i_busy(
                s,
                Ip {
                    c: ci as u8,
                    gen: c.igen,
                },
            ),
            (Prim::SynchronizeRcu, 1) => !s.bios.iter().any(|b| b.rcu & rcu::gp(ci) != 0),
            (Prim::FreezeBdev, 1) => !self.writers_active(s),
            (Prim::FreezeBdev, 2) => {
                let sb = s.bios[self.sb(ci)];
                sb.loc == Loc::Done
                    && !sb.has(bf::PASS)
                    && !s.bios[..self.nsub()].iter().any(Bio::in_flight)
            }
            _ => true,
        }
    }

    fn release(s: &mut State<N>, ci: usize, bit: u8) {
        if s.ctls[ci].held & bit == 0 {
            s.unbalanced = true;
        }
        s.ctls[ci].held &= !bit;
    }

    fn acquire(s: &mut State<N>, ci: usize, bit: u8) {
        if s.ctls[ci].held & bit != 0 {
            // A nested acquire by the same thread: the model's holdings are not counted.
            s.unbalanced = true;
        }
        s.ctls[ci].held |= bit;
    }

    fn prim_exec(&self, s: &mut State<N>, ci: usize, prim: Prim, sub: u8) -> Outcome {
        let me = Ip {
            c: ci as u8,
            gen: s.ctls[ci].igen,
        };
        if Self::on_old_o(s, ci) {
            if let Some(out) = self.old_o_prim(s, ci, prim) {
                return out;
            }
        }
        match prim.meaning() {
            Prim::MutexLock => Self::acquire(s, ci, held::MUTEX),
            Prim::MutexTrylock => {
                if self.mutex_held(s) {
                    return Outcome::Err;
                }
                Self::acquire(s, ci, held::MUTEX)
            }
            Prim::TryModuleGet => {
                if s.module_gone {
                    // ENODEV: the module is gone (or going).
                    return Outcome::Err;
                }
                Self::acquire(s, ci, held::MODREF)
            }
            Prim::ModulePut => Self::release(s, ci, held::MODREF),
            Prim::FilterOwnModule => {
                if s.ctls[ci].ilife == ILife::Freed {
                    // No filter to hand it to.
                    s.unbalanced = true;
                }
                Self::release(s, ci, held::MODREF);
                s.ctls[ci].held |= held::FILTER_MODREF;
                for b in s.bios.iter_mut() {
                    if b.fr & fx::IREF != 0 && b.via.or(b.ip) == Some(me) {
                        b.fr |= fx::IMOD;
                    }
                }
            }
            Prim::MutexUnlock => Self::release(s, ci, held::MUTEX),
            Prim::DmCreate => {
                let c = &mut s.ctls[ci];
                if c.ilife != ILife::Freed {
                    return Outcome::Err;
                }
                c.ilife = ILife::Created;
                c.igen = c.cycle;
                // With device-mapper's phases I has no live table yet: it defers
                // what it is handed until dm_resume.
                c.isusp = self.protocol.dm_phases();
            }
            Prim::DmDestroy => {
                let live = !self.freed(s, me);
                let c = &mut s.ctls[ci];
                if c.ilife == ILife::Freed {
                    s.unbalanced = true;
                }
                c.ilife = ILife::Freed;
                c.isusp = false;
                // The filter's release drops the module reference it owns (now,
                // or at the last bio's reference, which carries it).
                c.held &= !held::FILTER_MODREF;
                self.released(s, me, live);
            }
            Prim::BlkdevGetExcl => match s.ctls[ci].ilife {
                ILife::Freed => return Outcome::Err,
                ILife::Open => return Outcome::Err,
                ILife::Created => s.ctls[ci].ilife = ILife::Open,
            },
            Prim::BlkdevPut => {
                if s.ctls[ci].ilife != ILife::Open {
                    s.unbalanced = true;
                } else {
                    s.ctls[ci].ilife = ILife::Created;
                }
            }
            Prim::FreezeBdev => {
                if !self.protocol.filesystem {
                    // No filesystem: it syncs O (a no-op here) and takes the
                    // device's freeze count, which thaw gives back.
                    Self::acquire(s, ci, held::FS_FROZEN);
                    return Outcome::Ok;
                }
                match sub {
                    0 => {
                        Self::acquire(s, ci, held::FS_FROZEN);
                        return Outcome::Next;
                    }
                    1 => {
                        let sb = self.sb(ci);
                        s.bios[sb] = Bio::NEW;
                        self.start_pass(&mut s.bios[sb], 0);
                        return Outcome::Next;
                    }
                    _ => {
                        let sb = self.sb(ci);
                        if s.bios[sb].done > 1 || s.bios[sb].has(bf::DUP) {
                            // Keep the evidence: exactly_once sees it.
                        } else {
                            s.bios[sb] = Bio::NEW;
                        }
                    }
                }
            }
            Prim::ThawBdev => Self::release(s, ci, held::FS_FROZEN),
            Prim::FreezeQueue => {
                if sub == 0 {
                    Self::acquire(s, ci, held::Q_FROZEN);
                    return Outcome::Next;
                }
            }
            Prim::UnfreezeQueue => Self::release(s, ci, held::Q_FROZEN),
            Prim::DmInternalSuspendFast => {
                if self.kind != Kind::Bio {
                    // Not a device-mapper device.
                    return Outcome::Err;
                }
                if sub == 0 {
                    Self::acquire(s, ci, held::O_SUSPENDED);
                    return Outcome::Next;
                }
            }
            Prim::DmInternalResumeFast => {
                Self::release(s, ci, held::O_SUSPENDED);
                if !self.o_suspended(s) {
                    for bio in s.bios.iter_mut().filter(|b| b.loc == Loc::DeferredO) {
                        let keep = bio.flags & bf::MARKED;
                        self.start_pass(bio, bf::KWORKER | keep);
                    }
                }
            }
            Prim::DmSuspend => {
                if self.freed(s, me) {
                    s.uaf = true;
                    return Outcome::Err;
                }
                if sub == 0 {
                    if s.ctls[ci].isusp {
                        s.unbalanced = true;
                    }
                    s.ctls[ci].isusp = true;
                    return Outcome::Next;
                }
            }
            Prim::DmResume => self.resume_i(s, me),
            Prim::DmTableLoad | Prim::DmPreresume => {
                if s.ctls[ci].ilife == ILife::Freed {
                    return Outcome::Err;
                }
            }
            Prim::SynchronizeRcu => {
                if sub == 0 {
                    // The readers in a section now are the ones this grace period waits for.
                    for b in s.bios.iter_mut().filter(|b| b.rcu & rcu::IN != 0) {
                        b.rcu |= rcu::gp(ci);
                    }
                    return Outcome::Next;
                }
            }
            Prim::TestInterposer => {
                if s.ptr.is_some() {
                    return Outcome::Err;
                }
            }
            Prim::StoreInterposer => s.ptr = Some(me),
            Prim::CmpxchgInterposer => {
                if s.ptr.is_some() {
                    return Outcome::Err;
                }
                s.ptr = Some(me);
            }
            Prim::ClearInterposer => {
                if s.ptr.is_none() {
                    s.unbalanced = true;
                }
                s.ptr = None;
            }
            Prim::AssertFrozen => {
                if !(self.freeze_depth(s) > 0 && self.qrefs(s) == 0) {
                    return Outcome::Err;
                }
            }
            Prim::CheckAlive => {
                if s.o_dead {
                    return Outcome::Err;
                }
            }
            Prim::FilterAlloc
            | Prim::FilterFree
            | Prim::FilterPut
            | Prim::FilterBlock
            | Prim::FilterUnblock
            | Prim::BdevFreeze
            | Prim::BdevThaw => {
                unreachable!("meaning() maps the filter primitives and the renamed freezes")
            }
        }
        Outcome::Ok
    }

    /// `dm_resume(I)`: I takes bios again, and a kworker sends the ones it
    /// deferred on to O as clones.
    fn resume_i(&self, s: &mut State<N>, ip: Ip) {
        let c = &mut s.ctls[ip.c as usize];
        if !c.isusp {
            s.unbalanced = true;
        }
        c.isusp = false;
        if self.freed(s, ip) {
            s.uaf = true;
            return;
        }
        for i in 0..s.bios.len() {
            let bio = &mut s.bios[i];
            if bio.loc == Loc::DeferredI && bio.via == Some(ip) {
                // A kworker runs I's ->submit_bio; the clone goes to O from there.
                let f = self.worker_flags(bio);
                bio.flags &= !bf::MARKED;
                self.start_pass(bio, f);
                // Inside that ->submit_bio, current->bio_list is set.
                self.mark_inner(bio);
            }
        }
    }

    /// Enter the error path of the step the controller is on.
    fn fail(&self, s: &mut State<N>, ci: usize) {
        let c = s.ctls[ci];
        let failed = c.pc;
        let phase = match c.phase {
            Phase::Attach => Phase::AttachErr { failed },
            _ => Phase::DetachErr { failed },
        };
        let step = &self.steps(c.phase)[failed as usize];
        let pc = if step.on_error.is_some() {
            0
        } else {
            self.unwind_norm(s, ci, failed, phase)
        };
        let ctl = &mut s.ctls[ci];
        ctl.phase = phase;
        ctl.pc = pc;
        ctl.sub = 0;
    }

    /// The procedure a controller at the end of an error path runs again, if
    /// the step that failed restarts its call.
    pub fn restarts(&self, c: &Ctl) -> Option<Phase> {
        let (again, failed) = match c.phase {
            Phase::AttachErr { failed } => (Phase::Attach, failed),
            Phase::DetachErr { failed } => (Phase::Detach, failed),
            _ => return None,
        };
        self.steps(c.phase)[failed as usize]
            .restart
            .then_some(again)
    }

    /// A primitive on the removed O, for a call that opened it before a new
    /// disk took its dev_t: the disk is dead and empty, and nothing of it is
    /// shared with the new one. `None`: the primitive does not touch O.
    fn old_o_prim(&self, s: &mut State<N>, ci: usize, prim: Prim) -> Option<Outcome> {
        let out = match prim.meaning() {
            Prim::CheckAlive => Outcome::Err,
            Prim::MutexTrylock => {
                if self.old_mutex_held(s) {
                    return Some(Outcome::Err);
                }
                Self::acquire(s, ci, held::MUTEX);
                Outcome::Ok
            }
            // Nothing is inside the dead queue: the freeze and the suspend
            // return at once, and a resume has nothing to resubmit.
            Prim::FreezeQueue => {
                Self::acquire(s, ci, held::Q_FROZEN);
                Outcome::Ok
            }
            Prim::DmInternalSuspendFast if self.kind == Kind::Bio => {
                Self::acquire(s, ci, held::O_SUSPENDED);
                Outcome::Ok
            }
            Prim::DmInternalResumeFast => {
                Self::release(s, ci, held::O_SUSPENDED);
                Outcome::Ok
            }
            // The removed O's own pointer: the new disk's is not touched.
            Prim::TestInterposer
            | Prim::StoreInterposer
            | Prim::CmpxchgInterposer
            | Prim::ClearInterposer
            | Prim::AssertFrozen => Outcome::Ok,
            _ => return None,
        };
        Some(out)
    }

    fn next_cycle(&self, s: &mut State<N>, ci: usize) {
        let c = &mut s.ctls[ci];
        // The next call opens O again: the disk that has its dev_t now.
        c.held &= !held::OLD_O;
        c.cycle += 1;
        c.sub = 0;
        if c.cycle >= self.bounds.cycles {
            c.phase = Phase::Done;
            c.pc = 0;
        } else {
            c.phase = Phase::Attach;
            c.pc = self.norm(Phase::Attach, 0);
        }
    }

    fn ctl_advance(&self, s: &mut State<N>, ci: usize, outcome: Outcome) {
        let c = s.ctls[ci];
        match outcome {
            Outcome::Next => s.ctls[ci].sub += 1,
            Outcome::Err => {
                if matches!(c.phase, Phase::Attach | Phase::Detach) {
                    self.fail(s, ci);
                } else {
                    // A failing step of an error path: carry on with the rest of it.
                    self.err_path_next(s, ci);
                }
            }
            Outcome::Ok => match c.phase {
                Phase::Attach | Phase::Detach => {
                    let ctl = &mut s.ctls[ci];
                    ctl.sub = 0;
                    ctl.pc = self.norm(c.phase, c.pc as usize + 1);
                }
                _ => self.err_path_next(s, ci),
            },
        }
    }

    fn err_path_next(&self, s: &mut State<N>, ci: usize) {
        let c = s.ctls[ci];
        let (Phase::AttachErr { failed } | Phase::DetachErr { failed }) = c.phase else {
            return;
        };
        let pc = if self.steps(c.phase)[failed as usize].on_error.is_some() {
            c.pc + 1
        } else {
            self.unwind_norm(s, ci, c.pc - 1, c.phase)
        };
        let ctl = &mut s.ctls[ci];
        ctl.pc = pc;
        ctl.sub = 0;
    }

    fn ctl_actions(&self, s: &State<N>, ci: usize, out: &mut Vec<Action>) {
        let c = &s.ctls[ci];
        let cu = ci as u8;
        match c.phase {
            Phase::Done => {}
            Phase::Attached => out.push(Action::BeginDetach { c: cu }),
            _ => match self.ctl_current(c) {
                None => out.push(Action::Return {
                    c: cu,
                    ok: matches!(c.phase, Phase::Attach | Phase::Detach),
                    detach: matches!(c.phase, Phase::Detach | Phase::DetachErr { .. }),
                    restart: self.restarts(c).is_some(),
                }),
                Some((prim, unwind)) => {
                    if self.prim_enabled(s, ci, prim, c.sub) {
                        out.push(Action::Ctl {
                            c: cu,
                            prim,
                            sub: c.sub,
                            unwind,
                        });
                    }
                    if !unwind
                        && c.sub == 0
                        && s.injected < self.bounds.failures
                        && self.protocol.inject.contains(&prim)
                    {
                        out.push(Action::Fail { c: cu, prim });
                    }
                }
            },
        }
    }
}

impl<const N: usize> Quiesce<N> {
    /// The enabled actions of bio `b`'s lineage: its pass's next step, I's
    /// worker for it, its completion by O.
    pub fn bio_actions(&self, s: &State<N>, b: usize, out: &mut Vec<Action>) {
        let bio = &s.bios[b];
        if bio.has(bf::PASS) {
            let op = self.op_at(bio.pc);
            if self.hot_enabled(s, bio, op) {
                out.push(Action::Hot {
                    b: b as u8,
                    op,
                    who: self.carrier(b, bio),
                    // After its own redirect a pass goes on for the original
                    // (I holds it); a pass that carries I's clone has it in hand.
                    clone: bio.via.is_some()
                        && !matches!(bio.loc, Loc::InI | Loc::DeferredI | Loc::ParkedI),
                });
            }
            if op == HotOp::DriverSubmit && self.may_split(s, bio) {
                out.push(Action::Split {
                    b: b as u8,
                    who: self.carrier(b, bio),
                });
            }
            if op == HotOp::Redirect && self.may_park(s, bio) {
                out.push(Action::Park {
                    b: b as u8,
                    who: self.carrier(b, bio),
                });
            }
        }
        if bio.loc == Loc::ParkedI && !bio.has(bf::PASS) {
            out.push(Action::Unpark { b: b as u8 });
        }
        if bio.loc == Loc::InO {
            out.push(Action::Complete { b: b as u8 });
        }
        if bio.fr & fx::FRONT_IN_O != 0 {
            out.push(Action::CompleteFront { b: b as u8 });
        }
    }

    /// The remover's enabled step, if any (appended to `out`).
    pub fn remover_actions(&self, s: &State<N>, out: &mut Vec<Action>) {
        if self.rm_enabled(s) {
            out.push(Action::Remover {
                pc: s.rm.pc,
                sub: s.rm.sub,
            });
        }
    }

    /// The enabled actions of controller `ci`.
    pub fn controller_actions(&self, s: &State<N>, ci: usize, out: &mut Vec<Action>) {
        self.ctl_actions(s, ci, out);
    }

    /// Whether submitter `sub` may start its next bio now.
    pub fn may_submit(&self, s: &State<N>, sub: usize) -> bool {
        let fs_blocked = self.protocol.filesystem && self.fs_frozen(s);
        !fs_blocked && !self.submitter_busy(s, sub)
    }

    /// Whether the pass of `bio` finds it marked at a `test_marker` step.
    pub fn marker_set(&self, bio: &Bio) -> bool {
        match self.protocol.marker {
            MarkerKind::BioFlag => bio.has(bf::MARKED),
            MarkerKind::Task => bio.has(bf::TASKMARK),
            MarkerKind::None => false,
        }
    }

    /// The properties that hold in every state (Stateright's `always`),
    /// without `no_deadlock`, which is about the states a run can reach
    /// next, not about the state itself.
    pub fn state_properties(&self) -> Vec<Property<Self>> {
        self.properties()
            .into_iter()
            .filter(|p| p.expectation == stateright::Expectation::Always && p.name != "no_deadlock")
            .collect()
    }
}

impl<const N: usize> Model for Quiesce<N> {
    type State = State<N>;
    type Action = Action;

    fn init_states(&self) -> Vec<State<N>> {
        let ctl = Ctl {
            cycle: 0,
            phase: Phase::Attach,
            pc: self.norm(Phase::Attach, 0),
            sub: 0,
            held: 0,
            ilife: ILife::Freed,
            isusp: false,
            igen: 0,
        };
        let mut bios = Fixed::filled(Bio::NEW, self.nsub() + self.bounds.controllers as usize);
        for (b, bio) in bios.iter_mut().take(self.nsub()).enumerate() {
            let path = self.path(b / self.bounds.bios as usize);
            bio.nowait = path == SubmitPath::Nowait;
            bio.pt = path == SubmitPath::Passthrough;
            bio.stacked = path == SubmitPath::Stacked;
        }
        vec![State {
            k: self.bounds.bios,
            bios,
            ctls: Fixed::filled(ctl, self.bounds.controllers as usize),
            ptr: None,
            o_dead: false,
            rm: Rm {
                pc: 0,
                sub: 0,
                held: 0,
                ip: None,
            },
            freezers: Fixed::filled(0, self.bounds.freezers as usize),
            injected: 0,
            leaked_qrefs: 0,
            uaf: false,
            unbalanced: false,
            module_gone: false,
            rcu_cb: 0,
            o_reused: false,
        }]
    }

    fn actions(&self, s: &State<N>, out: &mut Vec<Action>) {
        let k = self.bounds.bios as usize;
        let fs_blocked = self.protocol.filesystem && self.fs_frozen(s);
        for sub in 0..self.bounds.submitters as usize {
            if fs_blocked || self.submitter_busy(s, sub) {
                continue;
            }
            if let Some(j) = (0..k).find(|j| s.bios[sub * k + j].loc == Loc::Unsubmitted) {
                out.push(Action::Submit {
                    s: sub as u8,
                    b: (sub * k + j) as u8,
                });
            }
        }
        for b in 0..s.bios.len() {
            self.bio_actions(s, b, out);
        }
        for ci in 0..s.ctls.len() {
            self.ctl_actions(s, ci, out);
        }
        self.remover_actions(s, out);
        for (f, &pc) in s.freezers.iter().enumerate() {
            if (pc as usize) < FREEZER_STEPS.len() && (pc != 1 || self.qrefs(s) == 0) {
                out.push(Action::Freezer { f: f as u8, pc });
            }
        }
        if self.bounds.rmmod && !s.module_gone && !self.module_pinned(s) {
            out.push(Action::Rmmod);
        }
        if self.may_add_disk(s) {
            out.push(Action::AddDisk);
        }
        for i in (0..8).filter(|_| s.rcu_cb != 0) {
            if s.rcu_cb & (1 << i) != 0 && !s.bios.iter().any(|b| b.rcu & rcu::cb(i) != 0) {
                out.push(Action::RcuFree { i: i as u8 });
            }
        }
    }

    fn next_state(&self, last: &State<N>, action: Action) -> Option<State<N>> {
        let mut s = last.clone();
        self.apply(&mut s, action);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        self.property_list()
    }

    fn format_action(&self, action: &Action) -> String {
        self.describe(action)
    }

    fn format_step(&self, last: &State<N>, action: Action) -> Option<String> {
        self.next_state(last, action)
            .map(|s| self.describe_state(&s))
    }

    fn as_svg(&self, path: stateright::Path<State<N>, Action>) -> Option<String> {
        Some(self.svg_of(path))
    }
}

impl<const N: usize> Quiesce<N> {
    /// Take `action` in `s` (the model's `next_state`, in place: the search
    /// engine writes each successor where it keeps it).
    pub fn apply(&self, s: &mut State<N>, action: Action) {
        match action {
            Action::Submit { b, .. } => {
                let bio = &mut s.bios[b as usize];
                self.start_pass(bio, 0);
                if bio.stacked {
                    // S's clone, submitted from inside S's ->submit_bio.
                    self.mark_inner(bio);
                }
            }
            Action::Hot { b, op, .. } => self.hot_step(s, b as usize, op),
            Action::Park { b, .. } => self.park(s, b as usize),
            Action::Unpark { b } => self.unpark(s, b as usize),
            Action::Complete { b } => self.end_bio(s, b as usize),
            Action::Split { b, .. } => self.split(s, b as usize),
            Action::CompleteFront { b } => self.complete_front(s, b as usize),
            Action::Ctl { c, prim, sub, .. } => {
                let out = self.prim_exec(s, c as usize, prim, sub);
                self.ctl_advance(s, c as usize, out);
            }
            Action::Fail { c, .. } => {
                s.injected += 1;
                self.fail(s, c as usize);
            }
            Action::Return { c, ok, detach, .. } => {
                let ci = c as usize;
                if ok && !detach {
                    s.ctls[ci].phase = Phase::Attached;
                    s.ctls[ci].pc = 0;
                } else if let Some(phase) = self.restarts(&s.ctls[ci]) {
                    let ctl = &mut s.ctls[ci];
                    ctl.phase = phase;
                    ctl.pc = self.norm(phase, 0);
                    ctl.sub = 0;
                } else {
                    self.next_cycle(s, ci);
                }
            }
            Action::BeginDetach { c } => {
                let ctl = &mut s.ctls[c as usize];
                if self.protocol.lookup_dev_t {
                    // Detach looks O up by its dev_t: the disk that has it now.
                    ctl.held &= !held::OLD_O;
                }
                ctl.phase = Phase::Detach;
                ctl.pc = self.norm(Phase::Detach, 0);
                ctl.sub = 0;
            }
            Action::Remover { .. } => self.rm_exec(s),
            Action::Freezer { f, pc } => s.freezers[f as usize] = pc + 1,
            Action::Rmmod => s.module_gone = true,
            Action::AddDisk => {
                s.o_reused = true;
                s.o_dead = false;
                s.ptr = None;
                // Every call under way opened the removed O; a controller at
                // rest opens the new disk when it starts.
                for ci in 0..s.ctls.len() {
                    if !self.at_rest(&s.ctls[ci]) {
                        s.ctls[ci].held |= held::OLD_O;
                    }
                }
            }
            Action::RcuFree { i } => s.rcu_cb &= !(1 << i),
        }
    }

    fn property_list(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no_use_after_free", |_: &Quiesce<N>, s: &State<N>| !s.uaf),
            Property::always("no_bypass", |m: &Quiesce<N>, s: &State<N>| {
                m.promise_holder(s).is_none() || m.bypassed(s).is_none()
            }),
            Property::always("exactly_once", |m: &Quiesce<N>, s: &State<N>| {
                let bad = s.bios.iter().any(|b| {
                    b.has(bf::DUP)
                        || b.done > 1
                        || b.loc == Loc::Lost
                        || (matches!(b.loc, Loc::DeferredI | Loc::ParkedI)
                            && b.via.is_some_and(|ip| m.freed(s, ip)))
                });
                let stranded = m.all_done(s)
                    && !s.bios.iter().any(|b| {
                        matches!(b.loc, Loc::InO | Loc::ParkedI) || b.fr & fx::FRONT_IN_O != 0
                    })
                    && s.bios[..m.nsub()].iter().any(|b| b.done != 1);
                !bad && !stranded
            }),
            Property::always("no_recursion", |_: &Quiesce<N>, s: &State<N>| {
                s.bios.iter().all(|b| b.depth <= 1)
            }),
            Property::always("no_deadlock", |m: &Quiesce<N>, s: &State<N>| {
                if m.all_done(s) {
                    return true;
                }
                let mut acts = Vec::new();
                m.actions(s, &mut acts);
                !acts.is_empty()
            }),
            Property::always("clean_exit", |m: &Quiesce<N>, s: &State<N>| {
                if s.unbalanced || s.leaked_qrefs > 0 {
                    return false;
                }
                if s.rm.pc as usize == m.rm_len() && s.rm.held != 0 {
                    return false;
                }
                s.ctls.iter().enumerate().all(|(ci, c)| {
                    !m.at_rest(c)
                        || (c.held & !held::OLD_O == 0
                            && c.ilife == ILife::Freed
                            && !c.isusp
                            && s.ptr.is_none_or(|p| p.c as usize != ci))
                })
            }),
            Property::always("single_owner", |m: &Quiesce<N>, s: &State<N>| {
                (0..s.ctls.len()).filter(|&c| m.owns_o(s, c)).count() <= 1
            }),
            // Once a procedure has passed its point of no return, none of its steps fails.
            Property::always("point_of_no_return", |m: &Quiesce<N>, s: &State<N>| {
                m.past_no_return(s).is_none()
            }),
            // A REQ_NOWAIT bio fails with EAGAIN; it never waits for a frozen queue.
            Property::always("nowait_never_blocks", |m: &Quiesce<N>, s: &State<N>| {
                m.nowait_blocked(s).is_none()
            }),
            Property::sometimes("bio_redirected", |_: &Quiesce<N>, s: &State<N>| {
                s.bios.iter().any(|b| b.depth >= 1)
            }),
            Property::sometimes("attach_under_io", |_: &Quiesce<N>, s: &State<N>| {
                s.ctls.iter().any(|c| c.phase == Phase::Attached)
                    && s.bios.iter().any(Bio::in_flight)
            }),
            Property::sometimes("attach_unwinds", |_: &Quiesce<N>, s: &State<N>| {
                s.ctls
                    .iter()
                    .any(|c| matches!(c.phase, Phase::AttachErr { .. }))
            }),
        ]
    }
}

impl<const N: usize> Quiesce<N> {
    /// The controller whose attach has returned and whose detach has not yet
    /// cleared the pointer: from attach's return until the clear, every bio inside
    /// O must have passed I (`no_bypass`). Detach's head (its steps before the
    /// clear) is inside that window.
    pub fn promise_holder(&self, s: &State<N>) -> Option<usize> {
        s.ctls.iter().enumerate().position(|(ci, c)| {
            let me = Ip {
                c: ci as u8,
                gen: c.igen,
            };
            // Its O was removed and a new disk has the dev_t: the promise was
            // about a disk that is gone.
            if c.held & held::OLD_O != 0 {
                return false;
            }
            // Removal took this controller's I over: its promise ended with the clear.
            if s.rm.ip == Some(me) && s.ptr != Some(me) {
                return false;
            }
            c.phase == Phase::Attached
                || (matches!(c.phase, Phase::Detach | Phase::DetachErr { .. })
                    && s.ptr
                        == Some(Ip {
                            c: ci as u8,
                            gen: c.igen,
                        }))
        })
    }

    /// A bio (or a split front) inside O that did not pass I.
    pub fn bypassed(&self, s: &State<N>) -> Option<usize> {
        s.bios.iter().position(|b| {
            (b.loc == Loc::InO && b.via.is_none())
                || (b.fr & fx::FRONT_IN_O != 0 && b.fr & fx::FRONT_I == 0)
        })
    }

    /// Controller `ci`'s attach has returned and it still owns its attachment:
    /// a controller whose I the removal took over owns nothing any more.
    pub fn owns_o(&self, s: &State<N>, ci: usize) -> bool {
        let c = &s.ctls[ci];
        c.phase == Phase::Attached
            && c.held & held::OLD_O == 0
            && s.rm.ip
                != Some(Ip {
                    c: ci as u8,
                    gen: c.igen,
                })
    }

    /// Whether a sanity property can be reached at all under these bounds.
    pub fn sanity_applies(&self, name: &str) -> bool {
        match name {
            "attach_unwinds" => self.bounds.failures > 0 && !self.protocol.inject.is_empty(),
            _ => true,
        }
    }

    /// A trace line: `submitter 2: bio_queue_enter(O)`.
    pub fn describe(&self, action: &Action) -> String {
        let who = |w: Who| match w {
            Who::Submitter(s) => format!("submitter {}", s + 1),
            Who::Controller(c) => format!("controller {}", c + 1),
            Who::Kworker => "kworker".to_string(),
        };
        match *action {
            Action::Submit { s, b } if self.path_of(b as usize) == SubmitPath::Stacked => format!(
                "submitter {}: submit_bio({}) to S, stacked on O: S->submit_bio sends its clone on to O",
                s + 1,
                self.bio_name(b as usize)
            ),
            Action::Submit { s, b } => format!(
                "submitter {}: submit_bio({})",
                s + 1,
                self.bio_name(b as usize)
            ),
            Action::Hot {
                b,
                op,
                who: w,
                clone,
            } => {
                let bio = self.bio_name(b as usize);
                let bio = if clone {
                    format!("clone of {bio}")
                } else {
                    bio
                };
                let pt = self.is_pt(b as usize);
                let what = match op {
                    HotOp::QueueEnter => format!("bio_queue_enter(O) [{bio}]"),
                    HotOp::BlkQueueEnter if pt => {
                        format!("blk_mq_alloc_request(O): blk_queue_enter [{bio}]")
                    }
                    HotOp::BlkQueueEnter => format!("blk_queue_enter(O, 0) [{bio}]"),
                    HotOp::DriverSubmit if pt => format!("blk_execute_rq({bio})"),
                    HotOp::FailBusy => {
                        format!("-EBUSY for {bio} (a request already allocated is freed unissued)")
                    }
                    HotOp::QueueExit => format!("blk_queue_exit(O) [{bio}]"),
                    HotOp::TestMarker { .. } => match self.protocol.marker {
                        MarkerKind::Task => format!("test current->interposer_ctx [{bio}]"),
                        _ => format!("bio_flagged({bio}, BIO_INTERPOSED)"),
                    },
                    HotOp::ReadInterposer { .. } => format!("READ_ONCE(O->bd_interposer) [{bio}]"),
                    HotOp::TestBioList { .. } => format!("test current->bio_list [{bio}]"),
                    HotOp::FilterGet => format!("refcount_inc(&ip->refs) [{bio}]"),
                    HotOp::FilterTryGet { .. } => {
                        format!("refcount_inc_not_zero(&ip->refs) [{bio}]")
                    }
                    HotOp::SetMarker => match self.protocol.marker {
                        MarkerKind::Task => format!("set current->interposer_ctx [{bio}]"),
                        _ => format!("bio_set_flag({bio}, BIO_INTERPOSED)"),
                    },
                    HotOp::ClearMarker => format!("clear current->interposer_ctx [{bio}]"),
                    HotOp::Redirect => format!("I->submit_bio({bio})"),
                    HotOp::DriverSubmit => match self.kind {
                        Kind::Request => format!("blk_mq_submit_bio({bio})"),
                        Kind::Bio => format!("O->submit_bio({bio})"),
                        Kind::BioSync => format!("O->submit_bio({bio}): bio_endio inside"),
                    },
                    HotOp::Return => format!("return [{bio}]"),
                    HotOp::Restart => format!("submit_bio_noacct({bio}) again"),
                    HotOp::RcuLock => format!("rcu_read_lock() [{bio}]"),
                    HotOp::RcuUnlock => format!("rcu_read_unlock() [{bio}]"),
                };
                format!("{}: {what}", who(w))
            }
            Action::Park { b, who: w } => format!(
                "{}: I->submit_bio({}) parks it (copy-on-write: the old data is read first)",
                who(w),
                self.bio_name(b as usize)
            ),
            Action::Unpark { b } => format!(
                "kworker: I resubmits the clone of parked {}",
                self.bio_name(b as usize)
            ),
            Action::Complete { b } => format!("O: bio_endio({})", self.bio_name(b as usize)),
            Action::Split { b, who: w } => {
                let bio = self.bio_name(b as usize);
                let what = match self.kind {
                    Kind::Request => format!("blk_mq_submit_bio({bio}) splits it"),
                    _ => format!("O->submit_bio({bio}) splits it"),
                };
                format!(
                    "{}: {what}: the front goes on into O, the rest is resubmitted (queued on current->bio_list)",
                    who(w)
                )
            }
            Action::CompleteFront { b } => format!(
                "O: bio_endio(front of {}) (bio_chain_endio)",
                self.bio_name(b as usize)
            ),
            Action::Rmmod => {
                "rmmod: delete_module(I->owner) frees the module's code and data".into()
            }
            Action::AddDisk => "add_disk(O'): a new disk takes O's dev_t".into(),
            Action::RcuFree { i } => {
                let cyc = self.bounds.cycles;
                let ip = Ip {
                    c: i / cyc,
                    gen: i % cyc,
                };
                format!("rcu: the grace period after {ip}'s release ended; kfree_rcu frees it")
            }
            Action::Ctl {
                c,
                prim,
                sub,
                unwind,
            } => {
                let phases = prim.info().phases;
                let name = phases
                    .get(sub as usize)
                    .copied()
                    .unwrap_or(phases[phases.len() - 1]);
                let name = if phases.len() == 1 && sub == 0 {
                    prim.call()
                } else {
                    name.to_string()
                };
                let name = name
                    .replace("(I)", &format!("(I{})", c + 1))
                    .replace(", I)", &format!(", I{})", c + 1));
                format!(
                    "controller {}: {name}{}",
                    c + 1,
                    if unwind { " [error path]" } else { "" }
                )
            }
            Action::Fail { c, prim } => format!(
                "controller {}: {} = -{} [injected]",
                c + 1,
                prim.call().replace("(I)", &format!("(I{})", c + 1)),
                prim.info().injectable.unwrap_or("EIO")
            ),
            Action::Return {
                c,
                ok,
                detach,
                restart,
            } => {
                let call = if detach { "detach" } else { "attach" };
                if restart {
                    format!(
                        "controller {}: {call}() returns -ERESTARTSYS; the call restarts",
                        c + 1
                    )
                } else {
                    format!(
                        "controller {}: {call}() returns {}",
                        c + 1,
                        if ok { "0" } else { "an error" }
                    )
                }
            }
            Action::BeginDetach { c } => format!("controller {}: detach()", c + 1),
            Action::Remover { pc, sub } => format!("remover: {}", self.rm_step_name(pc, sub)),
            Action::Freezer { f, pc } => {
                format!("freezer {}: {}", f + 1, FREEZER_STEPS[pc as usize])
            }
        }
    }

    /// O's condition: frozen (with depth), suspended, removed.
    pub fn o_conditions(&self, s: &State<N>) -> Vec<String> {
        let mut o = Vec::new();
        let fd = self.freeze_depth(s);
        if fd > 0 {
            o.push(format!("frozen×{fd}"));
        }
        if self.o_suspended(s) {
            o.push("suspended".into());
        }
        if s.o_dead {
            o.push("removed".into());
        }
        o
    }

    /// What a controller holds, by name.
    pub fn held_names(c: &Ctl) -> Vec<&'static str> {
        [
            (held::MUTEX, "open_mutex"),
            (held::FS_FROZEN, "fs freeze"),
            (held::Q_FROZEN, "queue freeze"),
            (held::O_SUSPENDED, "O suspend"),
            (held::MODREF, "module reference"),
            (held::FILTER_MODREF, "filter owning a module reference"),
            (held::OLD_O, "the removed O"),
        ]
        .iter()
        .filter(|(b, _)| c.held & b != 0)
        .map(|(_, n)| *n)
        .collect()
    }

    /// The relevant state after a step, in one line.
    pub fn summary(&self, s: &State<N>) -> String {
        let mut parts = Vec::new();
        let mut o = self.o_conditions(s);
        let q = self.qrefs(s);
        if q > 0 {
            o.push(format!("refs={q}"));
        }
        let inside: Vec<_> = (0..s.bios.len())
            .filter(|&b| s.bios[b].loc == Loc::InO)
            .map(|b| self.bio_name(b))
            .chain(
                (0..s.bios.len())
                    .filter(|&b| s.bios[b].fr & fx::FRONT_IN_O != 0)
                    .map(|b| format!("front of {}", self.bio_name(b))),
            )
            .collect();
        if !inside.is_empty() {
            o.push(format!("inside={{{}}}", inside.join(",")));
        }
        parts.push(format!("O[{}]", o.join(" ")));
        parts.push(match s.ptr {
            Some(ip) => format!("ptr=I{}#{}", ip.c + 1, ip.gen + 1),
            None => "ptr=NULL".into(),
        });
        for (ci, c) in s.ctls.iter().enumerate() {
            let life = match c.ilife {
                ILife::Freed => "freed",
                ILife::Created => "created",
                ILife::Open => "open",
            };
            let held = Self::held_names(c);
            let in_i: Vec<_> = (0..s.bios.len())
                .filter(|&b| {
                    s.bios[b]
                        .via
                        .is_some_and(|v| v.c as usize == ci && v.gen == c.igen)
                })
                .map(|b| {
                    let name = self.bio_name(b);
                    if s.bios[b].loc == Loc::ParkedI {
                        format!("{name} parked")
                    } else {
                        name
                    }
                })
                .collect();
            parts.push(format!(
                "I{}[{}{}{}{}]",
                ci + 1,
                life,
                if c.isusp { " suspended" } else { "" },
                if in_i.is_empty() {
                    String::new()
                } else {
                    format!(" holds={{{}}}", in_i.join(","))
                },
                if held.is_empty() {
                    String::new()
                } else {
                    format!(" ctl:{}", held.join("+"))
                },
            ));
        }
        if s.module_gone {
            parts.push("module unloaded".into());
        }
        if s.uaf {
            parts.push("USE-AFTER-FREE".into());
        }
        parts.join(" ")
    }
}

impl<const N: usize> Representative for State<N> {
    /// Submitters are interchangeable, and so are one submitter's bios: sort each
    /// submitter's bios, then the submitters' groups. Nothing else in the state
    /// names a submitter or a bio (pointers and holdings name controllers only),
    /// and a submitter's next bio is any unsubmitted one (they are all alike).
    fn representative(&self) -> Self {
        let k = self.k as usize;
        let n = self.bios.len() - self.ctls.len();
        let mut r = self.clone();
        for g in r.bios[..n].chunks_mut(k) {
            g.sort();
        }
        let sorted = r.bios;
        let mut chunks: Vec<&[Bio]> = sorted[..n].chunks(k).collect();
        chunks.sort();
        for (i, ch) in chunks.iter().enumerate() {
            r.bios[i * k..(i + 1) * k].copy_from_slice(ch);
        }
        r
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "I{}#{}", self.c + 1, self.gen + 1)
    }
}
