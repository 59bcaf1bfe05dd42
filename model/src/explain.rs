//! Why a counterexample's last step breaks its property, in plain words, and the
//! structured fields of a trace step (thread, bio, pointer, device state) that the
//! JSON report carries beside the rendered text.

use crate::model::{bf, Action, ILife, Ip, Loc, Phase, Quiesce, State, Who};
use serde::Serialize;

/// One interposer's condition after a step.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct IState {
    /// `I1`: controller 1's interposer.
    pub name: String,
    /// `freed`, `created` or `open`.
    pub life: String,
    pub suspended: bool,
    /// Bios this interposer holds while their clones travel.
    pub holds: Vec<String>,
    /// What its controller holds: `open_mutex`, `fs freeze`, `queue freeze`, `O suspend`.
    pub controller_holds: Vec<String>,
}

/// The device state after a step.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Devices {
    /// O's conditions: `frozen×N`, `suspended`, `removed`.
    pub o: Vec<String>,
    /// O's queue references (`q_usage_counter` users).
    pub o_refs: usize,
    /// Bios inside O.
    pub o_inside: Vec<String>,
    /// `O->bd_interposer`: `I1#2` (controller 1's interposer of cycle 2), or null.
    pub pointer: Option<String>,
    pub interposers: Vec<IState>,
    pub use_after_free: bool,
}

impl Quiesce {
    /// The thread that takes an action: `submitter 1`, `controller 2`, `kworker`,
    /// `O` (a completion), `remover`, `freezer 1`.
    pub fn thread(&self, a: &Action) -> String {
        match *a {
            Action::Submit { s, .. } => format!("submitter {}", s + 1),
            Action::Hot { who, .. } | Action::Park { who, .. } | Action::Split { who, .. } => {
                match who {
                    Who::Submitter(s) => format!("submitter {}", s + 1),
                    Who::Controller(c) => format!("controller {}", c + 1),
                    Who::Kworker => "kworker".into(),
                }
            }
            Action::Unpark { .. } => "kworker".into(),
            Action::Complete { .. } | Action::CompleteFront { .. } => "O".into(),
            Action::Ctl { c, .. }
            | Action::Fail { c, .. }
            | Action::Return { c, .. }
            | Action::BeginDetach { c } => format!("controller {}", c + 1),
            Action::Remover { .. } => "remover".into(),
            Action::Freezer { f, .. } => format!("freezer {}", f + 1),
            Action::Rmmod => "rmmod".into(),
            Action::RcuFree { .. } => "rcu".into(),
            Action::AddDisk => "add_disk".into(),
        }
    }

    /// The bio an action moves, if any (`bio1.2`; `sb1` for controller 1's superblock bio).
    pub fn bio_of(&self, a: &Action) -> Option<String> {
        match *a {
            Action::Submit { b, .. }
            | Action::Hot { b, .. }
            | Action::Park { b, .. }
            | Action::Unpark { b }
            | Action::Split { b, .. }
            | Action::CompleteFront { b }
            | Action::Complete { b } => Some(self.bio_name(b as usize)),
            _ => None,
        }
    }

    /// The device state after a step, as fields.
    pub fn devices(&self, s: &State) -> Devices {
        let names = |f: &dyn Fn(usize) -> bool| -> Vec<String> {
            (0..s.bios.len())
                .filter(|&b| f(b))
                .map(|b| self.bio_name(b))
                .collect()
        };
        Devices {
            o: self.o_conditions(s),
            o_refs: self.qrefs(s),
            o_inside: names(&|b| s.bios[b].loc == Loc::InO),
            pointer: s.ptr.map(|ip| ip.to_string()),
            interposers: s
                .ctls
                .iter()
                .enumerate()
                .map(|(ci, c)| IState {
                    name: format!("I{}", ci + 1),
                    life: match c.ilife {
                        ILife::Freed => "freed",
                        ILife::Created => "created",
                        ILife::Open => "open",
                    }
                    .into(),
                    suspended: c.isusp,
                    holds: names(&|b| {
                        s.bios[b]
                            .via
                            .is_some_and(|v| v.c as usize == ci && v.gen == c.igen)
                    }),
                    controller_holds: Self::held_names(c)
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                })
                .collect(),
            use_after_free: s.uaf,
        }
    }

    /// Why `prop` fails in `after`, reached from `before` by `action`, in one sentence.
    pub fn why(&self, prop: &str, before: &State, action: &Action, after: &State) -> String {
        let what = self.describe(action);
        let what = what.split_once(": ").map_or(what.as_str(), |(_, w)| w);
        match prop {
            "no_use_after_free" => self.why_uaf(before, action, what),
            "no_bypass" => self.why_bypass(after),
            "exactly_once" => self.why_exactly_once(after),
            "no_recursion" => {
                let b = (0..after.bios.len()).find(|&b| after.bios[b].depth > 1);
                match b {
                    Some(b) => format!(
                        "{} was handed to an interposer {} times: a clone re-entered it",
                        self.bio_name(b),
                        after.bios[b].depth
                    ),
                    None => "a bio was redirected more than once".into(),
                }
            }
            "no_deadlock" => self.why_deadlock(after),
            "nowait_never_blocks" => match self.nowait_blocked(after) {
                Some(b) => {
                    let bio = &after.bios[b];
                    format!(
                        "{} is REQ_NOWAIT, but its pass waits at `{}` for O's frozen queue: the caller asked for EAGAIN, not a sleep",
                        self.bio_name(b),
                        self.op_at(bio.pc).name()
                    )
                }
                None => "a REQ_NOWAIT bio waits for a frozen queue".into(),
            },
            "clean_exit" => self.why_unclean(before, after, what),
            "single_owner" => {
                let on: Vec<_> = (0..after.ctls.len())
                    .filter(|&c| self.owns_o(after, c))
                    .map(|c| format!("controller {}", c + 1))
                    .collect();
                format!(
                    "{} are attached at once: each believes it owns O",
                    on.join(" and ")
                )
            }
            "point_of_no_return" => match self.past_no_return(after) {
                Some((ci, failed, j)) => {
                    let detach = matches!(after.ctls[ci].phase, Phase::DetachErr { .. });
                    let steps = if detach {
                        &self.protocol.detach
                    } else {
                        &self.protocol.attach
                    };
                    format!(
                        "controller {}'s {} failed at `{}`, after its point of no return `{}`: what it already did cannot be undone",
                        ci + 1,
                        if detach { "detach" } else { "attach" },
                        steps[failed].prim.call(),
                        steps[j].prim.call()
                    )
                }
                None => "a procedure failed after its point of no return".into(),
            },
            other => format!("{other} fails here"),
        }
    }

    fn why_uaf(&self, before: &State, action: &Action, what: &str) -> String {
        let ip: Option<Ip> = match *action {
            Action::Hot { b, .. }
            | Action::Park { b, .. }
            | Action::Unpark { b }
            | Action::CompleteFront { b }
            | Action::Complete { b } => {
                let bio = before.bios[b as usize];
                bio.ip
                    .filter(|&ip| self.freed(before, ip))
                    .or(bio.via.filter(|&ip| self.freed(before, ip)))
                    .or(bio.ip)
                    .or(bio.via)
            }
            Action::Ctl { c, .. } => Some(Ip {
                c,
                gen: before.ctls[c as usize].igen,
            }),
            _ => before.ptr,
        };
        if before.module_gone {
            return format!(
                "`{what}` runs code of I's owner module after rmmod unloaded it: the module's reference was dropped while the filter could still be called"
            );
        }
        match ip {
            Some(ip) => format!("`{what}` uses {ip} after it was freed"),
            None => format!("`{what}` touches freed memory"),
        }
    }

    fn why_bypass(&self, s: &State) -> String {
        let owner = self.promise_holder(s);
        let bio = self.bypassed(s);
        let front = |b: usize| {
            if s.bios[b].loc == Loc::InO && s.bios[b].via.is_none() {
                String::new()
            } else {
                "the split front of ".into()
            }
        };
        match (owner, bio) {
            (Some(c), Some(b)) => format!(
                "{}{}{} is inside O without having passed I{}, and controller {}'s attach() has returned (its detach has not cleared the pointer): it completes on O unseen by the interposer",
                front(b),
                self.bio_name(b),
                if self.is_pt(b) {
                    ", a passthrough request,"
                } else {
                    ""
                },
                c + 1,
                c + 1
            ),
            _ => "a bio that skipped the interposer is inside O while one is attached".into(),
        }
    }

    fn why_exactly_once(&self, s: &State) -> String {
        for b in 0..s.bios.len() {
            let bio = s.bios[b];
            let name = self.bio_name(b);
            if bio.has(bf::DUP) {
                return format!("{name} was submitted again after it had been handed off: it would complete twice");
            }
            if bio.done > 1 {
                return format!("{name} completed {} times", bio.done);
            }
            if bio.loc == Loc::Lost {
                return format!("{name} is lost: it can never complete");
            }
            if bio.loc == Loc::DeferredI && bio.via.is_some_and(|ip| self.freed(s, ip)) {
                return format!("{name} is stranded on the deferred list of a freed interposer");
            }
            if bio.loc == Loc::ParkedI && bio.via.is_some_and(|ip| self.freed(s, ip)) {
                return format!("{name} is parked in an interposer that was freed: its worker can never resubmit it");
            }
        }
        let b = (0..self.nsub()).find(|&b| s.bios[b].done != 1);
        match b {
            Some(b) => format!(
                "every thread has finished, but {} completed {} times",
                self.bio_name(b),
                s.bios[b].done
            ),
            None => "a bio did not complete exactly once".into(),
        }
    }

    fn why_deadlock(&self, s: &State) -> String {
        let mut waiting = Vec::new();
        for (ci, c) in s.ctls.iter().enumerate() {
            if c.phase != Phase::Done {
                waiting.push(format!("controller {}", ci + 1));
            }
        }
        for b in 0..self.nsub() {
            if s.bios[b].has(bf::PASS) {
                waiting.push(format!("the pass of {}", self.bio_name(b)));
            }
        }
        format!(
            "no thread can take a step, yet {} {} not finished",
            if waiting.is_empty() {
                "some work".to_string()
            } else {
                match waiting.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} and {last}", rest.join(", "))
                    }
                    _ => waiting.join(""),
                }
            },
            if waiting.len() > 1 { "have" } else { "has" }
        )
    }

    fn why_unclean(&self, before: &State, s: &State, what: &str) -> String {
        let marked_return = (0..s.bios.len()).find(|&b| {
            let (was, now) = (&before.bios[b], &s.bios[b]);
            self.protocol.explicit_mark_lifetime()
                && was.has(bf::TASKMARK)
                && !was.has(bf::KWORKER)
                && was.has(bf::PASS)
                && !now.has(bf::PASS)
        });
        if s.unbalanced && !before.unbalanced {
            if let Some(b) = marked_return {
                return format!(
                    "{} returns from submit_bio_noacct with its task still marked (no `clear_marker` ran on this path): every later bio this task submits skips I",
                    self.bio_name(b)
                );
            }
            return format!("`{what}` releases something this thread does not hold");
        }
        if s.leaked_qrefs > before.leaked_qrefs {
            return format!("`{what}` ends its pass still holding a reference on O's queue, which is never dropped");
        }
        for (ci, c) in s.ctls.iter().enumerate() {
            let mut left = Vec::new();
            if c.held & !crate::model::held::OLD_O != 0 {
                left.push(format!("{} still held", Self::held_names(c).join(" and ")));
            }
            if c.ilife != ILife::Freed {
                left.push(format!("I{} not freed", ci + 1));
            }
            if c.isusp {
                left.push(format!("I{} suspended", ci + 1));
            }
            if s.ptr.is_some_and(|p| p.c as usize == ci) {
                left.push("O->bd_interposer still pointing at its interposer".into());
            }
            let at_rest = c.phase == Phase::Done
                || (c.phase == Phase::Attach && c.sub == 0 && c.pc == self.norm(Phase::Attach, 0));
            if at_rest && !left.is_empty() && before.ctls[ci] != *c {
                return format!(
                    "controller {} finished its procedure with {}",
                    ci + 1,
                    left.join("; ")
                );
            }
        }
        "a thread finished without releasing what it took".into()
    }

    /// Each property's reason on the last step of a path.
    pub fn why_last(&self, prop: &str, init: &State, steps: &[(Action, State)]) -> Option<String> {
        let (a, after) = steps.last()?;
        let before = if steps.len() >= 2 {
            &steps[steps.len() - 2].1
        } else {
            init
        };
        Some(self.why(prop, before, a, after))
    }
}
