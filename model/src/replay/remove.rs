//! The removal of O in a trace: `del_gendisk()`'s task as the model's remover.
//!
//! The task that removes O reports, through the block layer, the freeze that
//! `__blk_mark_disk_dead()` starts (O is dead from then on), the removal
//! callback's own steps (its freeze, the pointer cleared, its unfreeze; the
//! module reports `remove` as it is called and returns, and its primitives),
//! and `del_gendisk()`'s wait for the drain and its unfreeze. Taking
//! `open_mutex` and dropping it are not reported (`del_gendisk()` takes it
//! directly): they are taken when the remover's next event needs them. After
//! its unfreeze the queue is torn down: that task's further freezes of the dead
//! queue are not steps of the protocol.

use super::parse::Ev;
use super::step::{refuse, RState, Refusal, Stepper, NONE};
use crate::model::{Action, RmStep};
use crate::spec::Prim;

/// The event a step of the remover is reported by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Not reported: taken when the next event needs it.
    Silent,
    Ev(Ev),
    /// A primitive of the callback, with the value its event carries
    /// (1: called, it waits; 0: returned).
    Prim(Prim, i32),
}

impl Stepper<'_> {
    fn rm_want(&self, pc: u8, sub: u8) -> Want {
        match self.m.rm_step(pc) {
            RmStep::Lock | RmStep::Unlock => Want::Silent,
            RmStep::MarkDead => Want::Ev(Ev::FreezeStart),
            RmStep::DrainWait => Want::Ev(Ev::FreezeWait),
            RmStep::Unfreeze => Want::Ev(Ev::Unfreeze),
            RmStep::Callback(i) => {
                let prim = self.m.protocol.on_remove[i].prim;
                match (prim.meaning(), sub) {
                    (Prim::FreezeQueue, 0) => Want::Ev(Ev::FreezeStart),
                    (Prim::FreezeQueue, _) => Want::Ev(Ev::FreezeWait),
                    (Prim::UnfreezeQueue, _) => Want::Ev(Ev::Unfreeze),
                    (Prim::ClearInterposer, _) => Want::Ev(Ev::PtrClear),
                    (Prim::DmSuspend, 0) => Want::Prim(prim, 1),
                    (_, _) => Want::Prim(prim, 0),
                }
            }
        }
    }

    /// Event `i` of task `pid`, which runs no attach or detach: the removal of O.
    pub(super) fn step_rm(&self, rs: &mut RState, i: usize, pid: u32) -> Result<(), Refusal> {
        let e = &self.events[i];
        let name = self.trace.names.get(e.name as usize).map(String::as_str);
        if rs.rm_task != pid {
            // open_mutex taken and dropped outside the protocol: the module's
            // detach of a removed O waits for the callback to return that way.
            match e.ev {
                Ev::Lock if rs.outside == NONE => {
                    if self.m.mutex_held(&rs.s) {
                        return Err(refuse(format!(
                            "task {pid} takes open_mutex, which the model's {} holds",
                            self.mutex_holder(rs)
                        )));
                    }
                    rs.outside = pid;
                    return Ok(());
                }
                Ev::Unlock if rs.outside == pid => {
                    rs.outside = NONE;
                    return Ok(());
                }
                _ => {}
            }
        }
        if rs.rm_task == NONE {
            let starts = self.m.bounds.remover && rs.s.rm.pc == 0 && e.ev == Ev::FreezeStart;
            if !starts {
                return Err(refuse(format!(
                    "task {pid} runs a step of attach or detach outside attach() and detach(){}",
                    if self.m.bounds.remover {
                        ", and it is not del_gendisk() marking O dead"
                    } else {
                        ""
                    }
                )));
            }
            rs.rm_task = pid;
        } else if rs.rm_task != pid {
            return Err(refuse(format!(
                "task {pid} removes O, which task {} removed already",
                rs.rm_task
            )));
        }
        if e.ev == Ev::Prim && name == Some("remove") {
            // The callback is called (ret=1) once O is marked dead with an
            // interposer; it returns (0) after its last step.
            let at = (rs.s.rm.pc as usize) < self.m.rm_len()
                && if e.val == 1 {
                    self.m.rm_step(rs.s.rm.pc) == RmStep::Callback(0)
                        && rs.s.rm.sub == 0
                        && rs.s.rm.ip.is_some()
                } else {
                    self.m.rm_step(rs.s.rm.pc) == RmStep::Unlock
                };
            if !at {
                return Err(refuse(format!(
                    "the kernel's removal callback {}; in the model the remover is at {}",
                    if e.val == 1 { "is called" } else { "returns" },
                    self.rm_at(rs)
                )));
            }
            return Ok(());
        }
        if rs.s.rm.pc as usize >= self.m.rm_len() {
            if matches!(e.ev, Ev::FreezeStart | Ev::FreezeWait | Ev::Unfreeze) && rs.s.o_dead {
                // The dead queue torn down after del_gendisk().
                return Ok(());
            }
            return Err(refuse(format!(
                "task {pid} removed O already; this is no step of the removal"
            )));
        }
        let mut acts = Vec::with_capacity(1);
        for _ in 0..4 {
            acts.clear();
            self.m.remover_actions(&rs.s, &mut acts);
            let Some(&a) = acts.first() else {
                return Err(refuse(format!(
                    "the removal's next step, {}, cannot be taken now",
                    self.rm_at(rs)
                )));
            };
            let Action::Remover { pc, sub } = a else {
                unreachable!("remover_actions gives the remover's step")
            };
            match self.rm_want(pc, sub) {
                Want::Silent if rs.outside != NONE && self.m.rm_step(pc) == RmStep::Lock => {
                    return Err(refuse(format!(
                        "del_gendisk() takes open_mutex, which task {} holds",
                        rs.outside
                    )));
                }
                Want::Silent => self.take(rs, a),
                Want::Ev(ev) if ev == e.ev => {
                    self.take(rs, a);
                    return Ok(());
                }
                Want::Prim(p, v)
                    if e.ev == Ev::Prim && name == Some(p.call().as_str()) && e.val == v =>
                {
                    self.take(rs, a);
                    return Ok(());
                }
                _ => {
                    return Err(Refusal {
                        why: format!("the removal's next step is {}", self.rm_at(rs)),
                        allowed: acts,
                    })
                }
            }
        }
        Err(refuse("the removal's unreported steps do not end"))
    }

    fn mutex_holder(&self, rs: &RState) -> String {
        use crate::model::held;
        match (0..rs.s.ctls.len()).find(|&c| rs.s.ctls[c].held & held::MUTEX != 0) {
            Some(c) => format!("controller {}", c + 1),
            None => "remover".into(),
        }
    }

    fn rm_at(&self, rs: &RState) -> String {
        if rs.s.rm.pc as usize >= self.m.rm_len() {
            return "its end".into();
        }
        self.m.rm_step_name(rs.s.rm.pc, rs.s.rm.sub)
    }
}
