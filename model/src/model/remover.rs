//! The remover: `del_gendisk(O)` as Linux runs it, with the interposer's
//! removal callback (the spec's `on_remove`) inside it.
//!
//! Under O's `open_mutex`, `__blk_mark_disk_dead` marks O dead (from then on
//! `bio_queue_enter` fails) and starts a freeze that drains O; if O still has
//! an interposer, the core calls its removal callback there, which takes the
//! published I over: what the callback frees, blocks or puts is that I's,
//! whichever controller attached it. The core then drops the mutex, waits for
//! the drain and unfreezes.

use super::{held, rmheld, ILife, Ip, Outcome, Quiesce, RmStep, State};
use crate::spec::Prim;

impl<const N: usize> Quiesce<N> {
    /// Steps of the remover: lock, mark dead, the callback, unlock, wait, unfreeze.
    pub fn rm_len(&self) -> usize {
        5 + self.protocol.on_remove.len()
    }

    pub fn rm_step(&self, pc: u8) -> RmStep {
        let n = self.protocol.on_remove.len();
        match pc as usize {
            0 => RmStep::Lock,
            1 => RmStep::MarkDead,
            i if i < 2 + n => RmStep::Callback(i - 2),
            i if i == 2 + n => RmStep::Unlock,
            i if i == 3 + n => RmStep::DrainWait,
            _ => RmStep::Unfreeze,
        }
    }

    /// The remover's step as traces print it.
    pub fn rm_step_name(&self, pc: u8, sub: u8) -> String {
        match self.rm_step(pc) {
            RmStep::Lock => "del_gendisk(O): mutex_lock(open_mutex)".into(),
            RmStep::MarkDead => {
                "del_gendisk(O): __blk_mark_disk_dead(O): O is dead; blk_freeze_queue_start(O)"
                    .into()
            }
            RmStep::Callback(i) => {
                let info = self.protocol.on_remove[i].prim.info();
                let phase = info.phases.get(sub as usize).unwrap_or(&info.phases[0]);
                format!("on_remove: {phase}")
            }
            RmStep::Unlock => "del_gendisk(O): mutex_unlock(open_mutex)".into(),
            RmStep::DrainWait => "del_gendisk(O): blk_mq_freeze_queue_wait(O)".into(),
            RmStep::Unfreeze => "del_gendisk(O): __blk_mq_unfreeze_queue(O)".into(),
        }
    }

    /// Whether any thread holds O's open_mutex.
    pub fn mutex_held(&self, s: &State<N>) -> bool {
        s.rm.held & rmheld::MUTEX != 0
            || s.ctls
                .iter()
                .any(|c| c.held & (held::MUTEX | held::OLD_O) == held::MUTEX)
    }

    pub(super) fn rm_enabled(&self, s: &State<N>) -> bool {
        if !self.bounds.remover || s.rm.pc as usize >= self.rm_len() {
            return false;
        }
        match self.rm_step(s.rm.pc) {
            RmStep::Lock => !self.mutex_held(s),
            RmStep::DrainWait => self.qrefs(s) == 0,
            RmStep::Callback(i) => {
                let ip = s.rm.ip.expect("the callback runs on the I it took over");
                match (self.protocol.on_remove[i].prim.meaning(), s.rm.sub) {
                    (Prim::FreezeQueue, 1) => self.qrefs(s) == 0,
                    (Prim::DmSuspend, 1) => self.freed(s, ip) || !self.i_busy(s, ip),
                    _ => true,
                }
            }
            _ => true,
        }
    }

    pub(super) fn rm_exec(&self, s: &mut State<N>) {
        let n = self.protocol.on_remove.len() as u8;
        let mut next = s.rm.pc + 1;
        match self.rm_step(s.rm.pc) {
            RmStep::Lock => s.rm.held |= rmheld::MUTEX,
            RmStep::MarkDead => {
                s.o_dead = true;
                s.rm.held |= rmheld::DRAIN;
                if n > 0 && s.ptr.is_some() {
                    s.rm.ip = s.ptr;
                } else {
                    // No interposer (or no callback): the core calls nothing.
                    next = 2 + n;
                }
            }
            RmStep::Callback(i) => {
                let prim = self.protocol.on_remove[i].prim;
                if self.rm_prim(s, prim) == Outcome::Next {
                    s.rm.sub += 1;
                    return;
                }
                s.rm.sub = 0;
            }
            RmStep::Unlock => s.rm.held &= !rmheld::MUTEX,
            RmStep::DrainWait => {}
            RmStep::Unfreeze => s.rm.held &= !rmheld::DRAIN,
        }
        s.rm.pc = next;
    }

    /// One primitive of the removal callback, on O and the I it took over.
    fn rm_prim(&self, s: &mut State<N>, prim: Prim) -> Outcome {
        let ip: Ip = s.rm.ip.expect("the callback runs on the I it took over");
        let owner = ip.c as usize;
        let sub = s.rm.sub;
        match prim.meaning() {
            Prim::FreezeQueue => {
                if sub == 0 {
                    if s.rm.held & rmheld::Q_FROZEN != 0 {
                        s.unbalanced = true;
                    }
                    s.rm.held |= rmheld::Q_FROZEN;
                    return Outcome::Next;
                }
            }
            Prim::UnfreezeQueue => {
                if s.rm.held & rmheld::Q_FROZEN == 0 {
                    s.unbalanced = true;
                }
                s.rm.held &= !rmheld::Q_FROZEN;
            }
            Prim::ClearInterposer => {
                if s.ptr.is_none() {
                    s.unbalanced = true;
                }
                s.ptr = None;
            }
            Prim::DmSuspend => {
                if self.freed(s, ip) {
                    s.uaf = true;
                } else if sub == 0 {
                    let c = &mut s.ctls[owner];
                    if c.isusp {
                        s.unbalanced = true;
                    }
                    c.isusp = true;
                    return Outcome::Next;
                }
            }
            Prim::DmResume => self.resume_i(s, ip),
            Prim::DmDestroy => {
                if self.freed(s, ip) {
                    // Freed twice: the second kfree is of freed memory.
                    s.uaf = true;
                } else {
                    let c = &mut s.ctls[owner];
                    c.ilife = ILife::Freed;
                    c.isusp = false;
                    // The filter's release drops the module reference it owns.
                    c.held &= !held::FILTER_MODREF;
                    self.released(s, ip, true);
                }
            }
            Prim::BlkdevPut => {
                if self.freed(s, ip) {
                    s.uaf = true;
                } else if s.ctls[owner].ilife != ILife::Open {
                    s.unbalanced = true;
                } else {
                    s.ctls[owner].ilife = ILife::Created;
                }
            }
            Prim::ModulePut => {
                // The attachment's reference on I's owner module passes to the callback.
                let c = &mut s.ctls[owner];
                if c.held & held::MODREF == 0 {
                    s.unbalanced = true;
                }
                c.held &= !held::MODREF;
            }
            p => unreachable!("the spec refuses `{}` in on_remove", p.name()),
        }
        Outcome::Ok
    }
}
