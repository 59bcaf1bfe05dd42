//! Bio mechanics: a pass through the hot path, I's clones and workers, O's
//! split and completion, and the hot-path steps' kernel meaning.

use super::*;

impl<const N: usize> Quiesce<N> {
    /// The travelling bio completes (successfully or with an error).
    pub(super) fn end_bio(&self, s: &mut State<N>, b: usize) {
        let bio = s.bios[b];
        // The filter instance the clone's reference is on, and whether it lives
        // (asked only where a release queues an RCU callback).
        let held = (self.protocol.kfree_rcu && bio.fr & fx::IREF != 0)
            .then(|| bio.via.or(bio.ip))
            .flatten()
            .map(|ip| (ip, !self.freed(s, ip)));
        let mut nb = bio;
        nb.flags &= !bf::REQ_QREF;
        if bio.fr & fx::FRONT_IN_O != 0 {
            // Chained to its split front: the bio's own end_io waits for it. If
            // the front is the original's, the travelling bio is I's clone of
            // the remainder (or the original itself): the clone's end_io (I's
            // code) runs now, and only the original's waits.
            if bio.fr & fx::FRONT_I == 0 {
                if bio.via.is_some_and(|ip| self.freed(s, ip) || s.module_gone) {
                    s.uaf = true;
                    nb.loc = Loc::Lost;
                    s.bios[b] = nb;
                    return;
                }
                nb.via = None;
                nb.fr &= !fx::IREFS;
            }
            nb.loc = Loc::Chained;
            s.bios[b] = nb;
            if let Some((ip, live)) = held {
                self.released(s, ip, live);
            }
            return;
        }
        match bio.via {
            Some(ip) if self.freed(s, ip) || s.module_gone => {
                // The clone's end_io runs in freed memory (or unloaded module code).
                s.uaf = true;
                nb.loc = Loc::Lost;
            }
            _ => {
                // I's end_io drops the clone's reference on the filter.
                nb.fr &= !fx::IREFS;
                nb.via = None;
                nb.loc = Loc::Done;
                nb.done = nb.done.saturating_add(1);
            }
        }
        s.bios[b] = nb;
        if let Some((ip, live)) = held {
            self.released(s, ip, live);
        }
    }

    /// I processes bio `b` (it issues a clone to O), in a submitter's pass or a kworker.
    pub(super) fn clone_marked(&self, bio: &Bio) -> bool {
        self.protocol.marker == MarkerKind::BioFlag
            && self.protocol.clone_inherits
            && bio.has(bf::MARKED)
    }

    pub(super) fn start_pass(&self, bio: &mut Bio, flags: u8) {
        bio.fr &= !fx::INNER;
        bio.loc = Loc::Carried;
        bio.pc = if bio.pt {
            self.protocol.hot_path.len() as u8
        } else {
            0
        };
        bio.ip = None;
        bio.flags = (bio.flags & (bf::DUP | bf::REQ_QREF)) | bf::PASS | flags;
    }

    /// The pass returns from `submit_bio_noacct`; queued clones are submitted by the same task.
    pub(super) fn end_pass(&self, s: &mut State<N>, b: usize) {
        let mut bio = s.bios[b];
        if bio.has(bf::PASS_QREF) {
            s.leaked_qrefs += 1;
            bio.flags &= !bf::PASS_QREF;
        }
        if bio.rcu & rcu::IN != 0 {
            // Left the hook inside a read-side section (the static checks refuse
            // such a hot path; kept for a path that ends a pass another way).
            s.unbalanced = true;
        }
        bio.rcu = 0;
        if bio.fr & fx::IREF != 0 && bio.via.is_none() && bio.loc != Loc::Lost {
            // The pass took a reference on the filter and handed no bio to it
            // (a bio lost in freed code keeps the reference it took).
            s.unbalanced = true;
            bio.fr &= !fx::IREFS;
            if let Some(ip) = bio.ip {
                let live = !self.freed(s, ip);
                s.bios[b] = bio;
                self.released(s, ip, live);
                bio = s.bios[b];
            }
        }
        if bio.fr & fx::REM_QUEUED != 0 && bio.loc == Loc::Carried {
            // The split's remainder is the same bio, resubmitted from inside
            // O's submission by the same task: its flags (BIO_INTERPOSED) stay.
            bio.fr &= !fx::REM_QUEUED;
            let keep = bio.flags & (bf::TASKMARK | bf::KWORKER | bf::MARKED);
            self.start_pass(&mut bio, keep);
            self.mark_inner(&mut bio);
            s.bios[b] = bio;
            return;
        }
        if bio.loc == Loc::Carried {
            bio.loc = Loc::Lost;
        }
        if bio.has(bf::CLONE_QUEUED) {
            let keep = bio.flags & (bf::TASKMARK | bf::KWORKER);
            let marked = if self.clone_marked(&bio) {
                bf::MARKED
            } else {
                0
            };
            bio.flags &= !(bf::CLONE_QUEUED | bf::MARKED);
            self.start_pass(&mut bio, keep | marked);
            self.mark_inner(&mut bio);
        } else {
            if self.protocol.explicit_mark_lifetime()
                && bio.has(bf::TASKMARK)
                && !bio.has(bf::KWORKER)
            {
                // The hook owns the marker's lifetime and the call returns with
                // the task still marked: every later bio of this task skips I.
                s.unbalanced = true;
            }
            bio.flags &= !(bf::PASS | bf::TASKMARK | bf::KWORKER);
            bio.fr &= !fx::INNER;
            bio.ip = None;
            bio.pc = 0;
        }
        s.bios[b] = bio;
    }

    /// A pass started from `current->bio_list`, where a `test_bio_list` step can see it.
    pub(super) fn mark_inner(&self, bio: &mut Bio) {
        if self.tests_bio_list {
            bio.fr |= fx::INNER;
        }
    }

    /// Whether O may split bio `b` at its `driver_submit` step: once per
    /// lineage, and for a bio-based O only when it processes the bio (a
    /// suspended O defers it whole).
    pub(super) fn may_split(&self, s: &State<N>, bio: &Bio) -> bool {
        self.protocol.split
            && bio.loc == Loc::Carried
            && (bio.fr & fx::SPLIT == 0 || self.resplit)
            && (self.kind != Kind::Bio || !self.o_suspended(s))
    }

    /// O splits the travelling bio at `driver_submit`: the front goes on into
    /// O (blk-mq: as a request, which takes over the pass's queue reference;
    /// bio_sync: completed at once), and the remainder is queued on the
    /// carrier's `current->bio_list` for a new pass through the hook.
    pub(super) fn split(&self, s: &mut State<N>, b: usize) {
        let mut bio = s.bios[b];
        bio.fr |= fx::SPLIT | fx::REM_QUEUED;
        match self.kind {
            Kind::Request => {
                bio.fr |= fx::FRONT_IN_O | fx::FRONT_QREF;
                bio.flags &= !bf::PASS_QREF;
            }
            Kind::Bio => bio.fr |= fx::FRONT_IN_O,
            Kind::BioSync => {}
        }
        if bio.fr & fx::FRONT_IN_O != 0 && bio.via.is_some() {
            bio.fr |= fx::FRONT_I;
        }
        bio.pc += 1;
        s.bios[b] = bio;
        if bio.pc as usize >= self.protocol.hot_end(bio.pc as usize - 1) {
            self.end_pass(s, b);
        }
    }

    /// O completes the split front (`bio_chain_endio`): if the rest has
    /// completed already, the chain's last completion runs the bio's end_io.
    pub(super) fn complete_front(&self, s: &mut State<N>, b: usize) {
        s.bios[b].fr &= !(fx::FRONT_IN_O | fx::FRONT_QREF | fx::FRONT_I);
        if s.bios[b].loc == Loc::Chained {
            self.end_bio(s, b);
        }
    }

    /// Whether the `redirect` step of bio `b`'s pass may park it instead: I
    /// takes it (it is live, not suspended, and this is not a second interposition).
    pub(super) fn may_park(&self, s: &State<N>, bio: &Bio) -> bool {
        self.protocol.park.is_some()
            && !s.module_gone
            && bio.loc == Loc::Carried
            && bio.depth == 0
            && bio
                .ip
                .is_some_and(|ip| !self.freed(s, ip) && !s.ctls[ip.c as usize].isusp)
    }

    /// The `redirect` step parks the bio in I; the pass goes on.
    pub(super) fn park(&self, s: &mut State<N>, b: usize) {
        let mut bio = s.bios[b];
        bio.depth += 1;
        bio.loc = Loc::ParkedI;
        bio.via = bio.ip;
        bio.pc += 1;
        s.bios[b] = bio;
        if bio.pc as usize >= self.protocol.hot_end(bio.pc as usize - 1) {
            self.end_pass(s, b);
        }
    }

    /// The flags of a pass that one of I's workers starts for a clone: the
    /// inherited `BIO_INTERPOSED`, and the task marker if workers set it.
    pub(super) fn worker_flags(&self, bio: &Bio) -> u8 {
        let mut f = bf::KWORKER;
        if self.clone_marked(bio) {
            f |= bf::MARKED;
        }
        if self.protocol.worker_marks && self.protocol.marker == MarkerKind::Task {
            f |= bf::TASKMARK;
        }
        f
    }

    /// I's worker resubmits a parked bio's clone: in freed memory if I is gone.
    pub(super) fn unpark(&self, s: &mut State<N>, b: usize) {
        let mut bio = s.bios[b];
        if s.module_gone || bio.via.is_some_and(|ip| self.freed(s, ip)) {
            s.uaf = true;
            bio.loc = Loc::Lost;
        } else {
            let f = self.worker_flags(&bio);
            bio.flags &= !bf::MARKED;
            self.start_pass(&mut bio, f);
        }
        s.bios[b] = bio;
    }

    /// A step that waits: entering a frozen queue (a `REQ_NOWAIT` bio's
    /// `bio_queue_enter` does not wait, it fails).
    pub(super) fn hot_enabled(&self, s: &State<N>, bio: &Bio, op: HotOp) -> bool {
        match op {
            HotOp::QueueEnter => s.o_dead || bio.nowait || self.freeze_depth(s) == 0,
            HotOp::BlkQueueEnter => s.o_dead || self.freeze_depth(s) == 0,
            _ => true,
        }
    }

    /// A `REQ_NOWAIT` bio whose pass waits for a frozen queue: (the bio, its step).
    pub fn nowait_blocked(&self, s: &State<N>) -> Option<usize> {
        (0..s.bios.len()).find(|&b| {
            let bio = &s.bios[b];
            bio.nowait && bio.has(bf::PASS) && !self.hot_enabled(s, bio, self.op_at(bio.pc))
        })
    }

    pub(super) fn hot_step(&self, s: &mut State<N>, b: usize, op: HotOp) {
        let mut bio = s.bios[b];
        let n = self.protocol.hot_end(bio.pc as usize);
        let mut next = bio.pc as usize + 1;
        let mut end = false;
        match op {
            HotOp::QueueEnter | HotOp::BlkQueueEnter => {
                if s.o_dead || self.freeze_depth(s) > 0 {
                    // The enter failed (O is gone; or O is frozen and the bio is
                    // REQ_NOWAIT: EAGAIN): the bio ends with an error and the
                    // caller returns at once.
                    self.end_bio(s, b);
                    bio = s.bios[b];
                    end = true;
                } else {
                    bio.flags |= bf::PASS_QREF;
                }
            }
            HotOp::QueueExit => bio.flags &= !bf::PASS_QREF,
            HotOp::TestMarker { marked } => {
                if self.marker_set(&bio) {
                    next = marked as usize;
                }
            }
            HotOp::FilterGet => {
                if bio.ip.is_some_and(|ip| self.freed(s, ip)) || s.module_gone {
                    // refcount_inc on freed memory.
                    s.uaf = true;
                    bio.loc = Loc::Lost;
                } else {
                    bio.fr |= fx::IREF;
                    if bio.ip.is_some_and(|ip| self.owns_module(s, ip)) {
                        bio.fr |= fx::IMOD;
                    }
                }
            }
            HotOp::FilterTryGet { zero } => {
                if let Some(ip) = bio.ip {
                    if self.memory_gone(s, ip) {
                        // refcount_inc_not_zero reads freed memory. (The core
                        // runs it: a module unloaded meanwhile does not matter
                        // while the memory stays.)
                        s.uaf = true;
                        bio.loc = Loc::Lost;
                    } else if self.freed(s, ip) {
                        // The count is zero: the filter's release has run.
                        next = zero as usize;
                    } else {
                        bio.fr |= fx::IREF;
                        if self.owns_module(s, ip) {
                            bio.fr |= fx::IMOD;
                        }
                    }
                }
            }
            HotOp::TestBioList { set } => {
                if bio.fr & fx::INNER != 0 {
                    next = set as usize;
                }
            }
            HotOp::ReadInterposer { null } => {
                bio.ip = s.ptr;
                if s.ptr.is_none() {
                    next = null as usize;
                }
            }
            HotOp::ClearMarker => bio.flags &= !bf::TASKMARK,
            HotOp::SetMarker => match self.protocol.marker {
                MarkerKind::BioFlag => bio.flags |= bf::MARKED,
                MarkerKind::Task => bio.flags |= bf::TASKMARK,
                MarkerKind::None => {}
            },
            HotOp::Redirect => {
                if bio.loc != Loc::Carried {
                    bio.flags |= bf::DUP;
                } else if let Some(ip) = bio.ip {
                    bio.depth = bio.depth.saturating_add(1);
                    if self.freed(s, ip) || s.module_gone {
                        // I->submit_bio in freed memory, or in unloaded module code.
                        s.uaf = true;
                        bio.loc = Loc::Lost;
                    } else if bio.depth >= 2 {
                        // Interposed again: the kernel would recurse without bound.
                        bio.loc = Loc::Lost;
                    } else if s.ctls[ip.c as usize].isusp {
                        bio.loc = Loc::DeferredI;
                        bio.via = Some(ip);
                    } else {
                        bio.loc = Loc::InI;
                        bio.via = Some(ip);
                        bio.flags |= bf::CLONE_QUEUED;
                    }
                }
            }
            HotOp::DriverSubmit => {
                if bio.loc != Loc::Carried {
                    bio.flags |= bf::DUP;
                } else {
                    match self.kind {
                        Kind::Request => {
                            bio.loc = Loc::InO;
                            bio.flags = (bio.flags & !bf::PASS_QREF) | bf::REQ_QREF;
                        }
                        Kind::Bio => {
                            bio.loc = if self.o_suspended(s) {
                                Loc::DeferredO
                            } else {
                                Loc::InO
                            };
                        }
                        Kind::BioSync => {
                            // Completed inside O's ->submit_bio, under the pass's reference.
                            s.bios[b] = bio;
                            self.end_bio(s, b);
                            bio = s.bios[b];
                        }
                    }
                }
            }
            HotOp::Return => end = true,
            HotOp::FailBusy => {
                // blk_mq_free_request() drops the allocation's queue reference;
                // the caller gets -EBUSY: the request ends, never issued.
                bio.flags &= !bf::PASS_QREF;
                s.bios[b] = bio;
                self.end_bio(s, b);
                bio = s.bios[b];
                end = true;
            }
            HotOp::RcuLock => bio.rcu |= rcu::IN,
            // Leaving the section ends every grace period's wait for it.
            HotOp::RcuUnlock => bio.rcu = 0,
            HotOp::Restart => {
                if bio.loc == Loc::Carried {
                    next = 0;
                    bio.ip = None;
                } else {
                    end = true;
                }
            }
        }
        bio.pc = next as u8;
        s.bios[b] = bio;
        if end || next >= n {
            self.end_pass(s, b);
        }
    }
}
