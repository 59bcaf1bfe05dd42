//! Mutants: a change to a spec's attach or detach that the mutation gate also
//! makes to the kernel module, so that the model's verdict on the change can
//! be set beside what the kernel's checks see.
//!
//! A mutant is named by the string the module is built with
//! (`QUIESCE_MUTANT`, see `kmod/module/prims.rs`):
//!
//! - `skip:PROC:PRIM`: PRIM is left out of PROC (`attach`, `detach`, or
//!   `remove`: the removal callback, the spec's `on_remove`);
//! - `before:PROC:MOVED:ANCHOR`: MOVED is done just before ANCHOR;
//! - `no_unwind`: a failing step runs no error path (`on_error = []` everywhere);
//! - `unmarked_clone`: clones do not inherit the marker (`clone_inherits = false`);
//! - `polled_clone`: clones keep `REQ_POLLED`. The model has no polled I/O, so
//!   the spec is unchanged and the model says it holds: a catch is the kernel's
//!   alone (the gate's "kernel-only").
//! - `cbt_mark_at_submit`: the changed-block map records a write when it is
//!   submitted instead of when it completes. Outside the model too (it has no
//!   changed-block map): the backup test's catch is the kernel's alone.
//!
//! The edit is made on the spec's TOML, so the mutated text goes through the
//! same parser and static checks as any spec.

use std::fmt;

/// One mutant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutant {
    Skip {
        proc: Proc,
        prim: String,
    },
    Before {
        proc: Proc,
        moved: String,
        anchor: String,
    },
    NoUnwind,
    UnmarkedClone,
    PolledClone,
    CbtMarkAtSubmit,
}

/// A control procedure of a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    Attach,
    Detach,
    /// The removal callback (`on_remove`).
    Remove,
}

impl Proc {
    pub fn name(self) -> &'static str {
        match self {
            Proc::Attach => "attach",
            Proc::Detach => "detach",
            Proc::Remove => "remove",
        }
    }
    /// The spec's key for the procedure's steps.
    fn key(self) -> &'static str {
        match self {
            Proc::Remove => "on_remove",
            p => p.name(),
        }
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutant::Skip { proc, prim } => write!(f, "skip:{}:{prim}", proc.name()),
            Mutant::Before {
                proc,
                moved,
                anchor,
            } => write!(f, "before:{}:{moved}:{anchor}", proc.name()),
            Mutant::NoUnwind => f.write_str("no_unwind"),
            Mutant::UnmarkedClone => f.write_str("unmarked_clone"),
            Mutant::PolledClone => f.write_str("polled_clone"),
            Mutant::CbtMarkAtSubmit => f.write_str("cbt_mark_at_submit"),
        }
    }
}

impl std::str::FromStr for Mutant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let proc = |p: &str| match p {
            "attach" => Ok(Proc::Attach),
            "detach" => Ok(Proc::Detach),
            "remove" => Ok(Proc::Remove),
            _ => Err(format!(
                "mutant `{s}`: unknown procedure `{p}` (attach, detach or remove)"
            )),
        };
        match parts[..] {
            ["skip", p, prim] if !prim.is_empty() => Ok(Mutant::Skip {
                proc: proc(p)?,
                prim: prim.to_string(),
            }),
            ["before", p, moved, anchor] if !moved.is_empty() && !anchor.is_empty() => {
                Ok(Mutant::Before {
                    proc: proc(p)?,
                    moved: moved.to_string(),
                    anchor: anchor.to_string(),
                })
            }
            ["no_unwind"] => Ok(Mutant::NoUnwind),
            ["unmarked_clone"] => Ok(Mutant::UnmarkedClone),
            ["polled_clone"] => Ok(Mutant::PolledClone),
            ["cbt_mark_at_submit"] => Ok(Mutant::CbtMarkAtSubmit),
            _ => Err(format!(
                "unknown mutant `{s}`: use skip:PROC:PRIM, before:PROC:MOVED:ANCHOR, no_unwind, unmarked_clone, polled_clone or cbt_mark_at_submit"
            )),
        }
    }
}

/// The primitive's name of a control step (`"blk_mq_freeze_queue(O)"` or a table with `call`).
fn step_prim(v: &toml::Value) -> Option<&str> {
    let call = match v {
        toml::Value::String(s) => s.as_str(),
        toml::Value::Table(t) => t.get("call")?.as_str()?,
        _ => return None,
    };
    Some(call.split('(').next().unwrap_or(call).trim())
}

fn steps(doc: &mut toml::Table, proc: Proc) -> Result<&mut Vec<toml::Value>, String> {
    doc.get_mut("protocol")
        .and_then(|p| p.get_mut(proc.key()))
        .and_then(|s| s.as_array_mut())
        .ok_or_else(|| format!("the spec has no [protocol] {} list", proc.key()))
}

/// Every `skip` mutant of a spec: one per distinct primitive of its attach and
/// detach, and of its removal callback if it has one.
pub fn skip_mutants(text: &str) -> Result<Vec<Mutant>, String> {
    let mut doc: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let has_remove = doc
        .get("protocol")
        .is_some_and(|p| p.get("on_remove").is_some());
    let mut out = Vec::new();
    for proc in [Proc::Attach, Proc::Detach, Proc::Remove] {
        if proc == Proc::Remove && !has_remove {
            continue;
        }
        for v in steps(&mut doc, proc)?.iter() {
            let prim = step_prim(v).ok_or("a control step without a call")?;
            let m = Mutant::Skip {
                proc,
                prim: prim.to_string(),
            };
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// The spec's text with the mutant applied; `Err` names what the spec lacks.
pub fn apply(text: &str, m: &Mutant) -> Result<String, String> {
    let mut doc: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    match m {
        Mutant::Skip { proc, prim } => {
            let s = steps(&mut doc, *proc)?;
            let before = s.len();
            s.retain(|v| step_prim(v) != Some(prim.as_str()));
            if s.len() == before {
                return Err(format!("{m}: {} has no step {prim}", proc.name()));
            }
        }
        Mutant::Before {
            proc,
            moved,
            anchor,
        } => {
            let s = steps(&mut doc, *proc)?;
            let at = |s: &Vec<toml::Value>, p: &str| s.iter().position(|v| step_prim(v) == Some(p));
            let i =
                at(s, moved).ok_or_else(|| format!("{m}: {} has no step {moved}", proc.name()))?;
            let v = s.remove(i);
            let j = at(s, anchor)
                .ok_or_else(|| format!("{m}: {} has no step {anchor}", proc.name()))?;
            s.insert(j, v);
        }
        Mutant::NoUnwind => {
            for proc in [Proc::Attach, Proc::Detach] {
                for v in steps(&mut doc, proc)?.iter_mut() {
                    let mut t = match v {
                        toml::Value::String(s) => {
                            let mut t = toml::Table::new();
                            t.insert("call".into(), toml::Value::String(s.clone()));
                            t
                        }
                        toml::Value::Table(t) => t.clone(),
                        _ => return Err("a control step without a call".into()),
                    };
                    t.insert("on_error".into(), toml::Value::Array(Vec::new()));
                    *v = toml::Value::Table(t);
                }
            }
        }
        Mutant::UnmarkedClone => {
            let marker = doc
                .entry("marker")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let t = marker.as_table_mut().ok_or("[marker] is not a table")?;
            t.insert("clone_inherits".into(), toml::Value::Boolean(false));
        }
        Mutant::PolledClone | Mutant::CbtMarkAtSubmit => {}
    }
    toml::to_string(&doc).map_err(|e| format!("{e}"))
}

/// The spec's text with its hot path replaced by `steps` (a mutant of the C hook,
/// which the gate builds into the kernel from a patch).
pub fn replace_hot_path(text: &str, steps: &toml::Value) -> Result<String, String> {
    let mut doc: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let proto = doc
        .get_mut("protocol")
        .and_then(|p| p.as_table_mut())
        .ok_or("the spec has no [protocol] table")?;
    if !steps.is_array() {
        return Err("hot_path must be a list of steps".into());
    }
    proto.insert("hot_path".into(), steps.clone());
    toml::to_string(&doc).map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../specs/04-converged.toml");

    #[test]
    fn one_skip_mutant_per_distinct_primitive() {
        let ms = skip_mutants(SPEC).unwrap();
        assert_eq!(ms.len(), 17);
        assert_eq!(ms[0].to_string(), "skip:attach:mutex_lock");
        assert_eq!(ms[16].to_string(), "skip:detach:mutex_unlock");
    }

    /// Outside the model: the spec is unchanged, so its verdict is the spec's own.
    #[test]
    fn polled_clone_leaves_the_spec_as_it_is() {
        use crate::spec::Spec;
        let p = std::path::Path::new("04-converged.toml");
        let b = Spec::parse(p, SPEC).unwrap();
        for m in [Mutant::PolledClone, Mutant::CbtMarkAtSubmit] {
            let a = Spec::parse(p, &apply(SPEC, &m).unwrap()).unwrap();
            assert_eq!(a.protocol, b.protocol, "{m}");
            assert_eq!(a.bounds, b.bounds, "{m}");
        }
    }

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for s in [
            "skip:detach:dm_suspend",
            "before:detach:clear_interposer:blk_mq_freeze_queue",
            "no_unwind",
            "unmarked_clone",
            "polled_clone",
            "cbt_mark_at_submit",
        ] {
            assert_eq!(s.parse::<Mutant>().unwrap().to_string(), s);
        }
        assert!("skip:probe:x"
            .parse::<Mutant>()
            .unwrap_err()
            .contains("unknown procedure"));
        assert!("drop"
            .parse::<Mutant>()
            .unwrap_err()
            .contains("unknown mutant"));
    }

    #[test]
    fn edits_reach_the_parsed_protocol() {
        use crate::spec::{Prim, Spec};
        let p = std::path::Path::new("m.toml");
        let skip = apply(SPEC, &"skip:detach:dm_suspend".parse().unwrap()).unwrap();
        let s = Spec::parse(p, &skip).unwrap();
        assert!(s
            .protocol
            .detach
            .iter()
            .all(|st| st.prim != Prim::DmSuspend));
        let moved = apply(
            SPEC,
            &"before:detach:clear_interposer:blk_mq_freeze_queue"
                .parse()
                .unwrap(),
        )
        .unwrap();
        let s = Spec::parse(p, &moved).unwrap();
        assert_eq!(s.protocol.detach[1].prim, Prim::ClearInterposer);
        let s = Spec::parse(p, &apply(SPEC, &Mutant::UnmarkedClone).unwrap()).unwrap();
        assert!(!s.protocol.clone_inherits);
        let s = Spec::parse(p, &apply(SPEC, &Mutant::NoUnwind).unwrap()).unwrap();
        assert!(s
            .protocol
            .attach
            .iter()
            .all(|st| st.on_error == Some(vec![])));
        assert!(apply(SPEC, &"skip:attach:dm_suspend".parse().unwrap())
            .unwrap_err()
            .contains("has no step"));
    }

    /// A spec with a removal callback gets one skip per primitive of it too, and a
    /// skip leaves the step out of `on_remove` alone.
    #[test]
    fn the_removal_callback_has_its_own_skips() {
        use crate::spec::{Prim, Spec};
        const REMOVE: &str = include_str!("../specs/20-remove-detaches.toml");
        let ms = skip_mutants(REMOVE).unwrap();
        let names: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
        for want in [
            "skip:remove:filter_block",
            "skip:remove:module_put",
            "skip:attach:bdev_check_alive",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(skip_mutants(SPEC)
            .unwrap()
            .iter()
            .all(|m| !m.to_string().starts_with("skip:remove:")));
        let p = std::path::Path::new("m.toml");
        let s = Spec::parse(
            p,
            &apply(REMOVE, &"skip:remove:filter_block".parse().unwrap()).unwrap(),
        )
        .unwrap();
        assert!(s
            .protocol
            .on_remove
            .iter()
            .all(|st| st.prim != Prim::FilterBlock));
        assert_eq!(s.protocol.on_remove.len(), 5);
        assert!(s
            .protocol
            .detach
            .iter()
            .any(|st| st.prim == Prim::FilterBlock));
        assert!(apply(SPEC, &"skip:remove:filter_block".parse().unwrap())
            .unwrap_err()
            .contains("no [protocol] on_remove"));
    }
}
