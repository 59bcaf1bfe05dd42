//! Codegen: a spec that passed the checker becomes the `no_std` state machine in
//! `generated/`. Everything rendered comes from the spec's step tables, the
//! check report and the model's reachable state graph; nothing about the
//! protocol is written here by hand.

pub mod chook;
pub mod promela;

use quiesce_model::check::{check_spec, CheckOptions, SpecReport};
use quiesce_model::model::{Action, Phase, Quiesce, State};
use quiesce_model::spec::{CtlStep, HotOp, Kind, MarkerKind, Prim, Spec, PRIMS, SAFETY};
use serde::Serialize;
use stateright::Model;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{0}")]
    Spec(#[from] quiesce_model::SpecErrors),
    #[error("refusing to generate: {0}")]
    Refused(String),
    #[error("check report {file}: {msg}")]
    Report { file: String, msg: String },
    #[error("template {template}: {msg}")]
    Template { template: String, msg: String },
    #[error("{0}")]
    Io(String),
    #[error("spin: {0}")]
    Spin(String),
}

/// Why a report does not allow generation, if it does not: every kind must pass every
/// safety property and reach its sanity properties.
pub fn gate(spec: &Spec, report: &SpecReport) -> Result<(), GenError> {
    if report.sha256 != spec.sha256 {
        return Err(GenError::Refused(format!(
            "the check report is for spec sha256 {}, but {} has sha256 {} (re-run `quiesce check --json`)",
            report.sha256,
            spec.path.display(),
            spec.sha256
        )));
    }
    for k in &spec.kinds {
        let Some(kr) = report.kinds.iter().find(|r| r.kind == *k) else {
            return Err(GenError::Refused(format!(
                "the check report has no result for kind `{k}`"
            )));
        };
        if kr.bounds != spec.bounds {
            return Err(GenError::Refused(format!(
                "kind `{k}` was checked at other bounds than the spec's own ({:?})",
                kr.bounds
            )));
        }
        for p in &kr.properties {
            if p.verdict == "violated" {
                let steps = p.trace.as_ref().map_or(0, |t| t.len());
                let last = p
                    .trace
                    .as_ref()
                    .and_then(|t| t.last())
                    .map_or(String::new(), |s| s.action.clone());
                return Err(GenError::Refused(format!(
                    "{} [{k}] violates {} (counterexample: {steps} steps, ending `{last}`; see `quiesce check {} --kind {k}`, explorer #/steps/{})",
                    spec.name,
                    p.name,
                    spec.path.display(),
                    p.explorer_path.as_deref().unwrap_or("")
                )));
            }
            if p.verdict == "not_reached" && !spec.unreached.contains(&p.name) {
                return Err(GenError::Refused(format!(
                    "{} [{k}] never reaches {}: the check may be vacuous",
                    spec.name, p.name
                )));
            }
        }
    }
    Ok(())
}

/// Run the checker on the spec at its own bounds.
pub fn check(spec: &Spec) -> Result<SpecReport, GenError> {
    check_spec(spec, &CheckOptions::default()).map_err(GenError::Refused)
}

/// Read a `quiesce check --json` report and pick this spec's entry.
pub fn read_report(path: &Path, spec: &Spec) -> Result<SpecReport, GenError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| GenError::Report {
        file: file.clone(),
        msg: e.to_string(),
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| GenError::Report {
        file: file.clone(),
        msg: e.to_string(),
    })?;
    let specs = v["specs"].as_array().ok_or_else(|| GenError::Report {
        file: file.clone(),
        msg: "no `specs` array".into(),
    })?;
    let entry = specs
        .iter()
        .find(|s| s["name"] == spec.name.as_str())
        .ok_or_else(|| GenError::Report {
            file: file.clone(),
            msg: format!("no entry for spec `{}`", spec.name),
        })?;
    SpecReport::from_json(entry).map_err(|msg| GenError::Report { file, msg })
}

// ---------------------------------------------------------------------------
// The controller monitor, derived from the reachable state graph.

/// An event the module reports to the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    Ok(Prim),
    Err(Prim),
    AttachReturned(bool),
    DetachBegin,
    DetachReturned(bool),
}

/// A controller's position at primitive granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtlPos {
    phase: u8,
    pc: u8,
    failed: u8,
}

fn pos(q: &Quiesce, s: &State) -> CtlPos {
    let c = &s.ctls[0];
    let (phase, failed) = match c.phase {
        Phase::Attach => (0, 0),
        Phase::AttachErr { failed } => (1, failed),
        Phase::Attached => (2, 0),
        Phase::Detach => (3, 0),
        Phase::DetachErr { failed } => (4, failed),
        // Done is idle: the module may attach again.
        Phase::Done => {
            return CtlPos {
                phase: 0,
                pc: first_attach(q),
                failed: 0,
            }
        }
    };
    CtlPos {
        phase,
        pc: c.pc,
        failed,
    }
}

fn first_attach(q: &Quiesce) -> u8 {
    q.protocol
        .attach
        .iter()
        .position(|st| st.only.is_none_or(|k| k == q.kind))
        .unwrap_or(q.protocol.attach.len()) as u8
}

/// The event controller 0's action reports, if it completes a primitive or a procedure.
fn event(before: &State, after: &State, a: &Action) -> Option<Event> {
    let (b, n) = (&before.ctls[0], &after.ctls[0]);
    match *a {
        Action::Ctl { c: 0, prim, .. } => {
            if n.sub > b.sub && n.phase == b.phase && n.pc == b.pc {
                return None; // a sub-step inside a blocking primitive
            }
            let failed = matches!(b.phase, Phase::Attach | Phase::Detach)
                && matches!(n.phase, Phase::AttachErr { .. } | Phase::DetachErr { .. });
            Some(if failed {
                Event::Err(prim)
            } else {
                Event::Ok(prim)
            })
        }
        Action::Fail { c: 0, prim } => Some(Event::Err(prim)),
        Action::Return {
            c: 0,
            ok,
            detach: false,
            ..
        } => Some(Event::AttachReturned(ok)),
        Action::Return {
            c: 0,
            ok,
            detach: true,
            ..
        } => Some(Event::DetachReturned(ok)),
        Action::BeginDetach { c: 0 } => Some(Event::DetachBegin),
        _ => None,
    }
}

/// The monitor automaton for one kind: states are controller positions, edges are events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Automaton {
    pub kind: Kind,
    pub init: CtlPos,
    pub edges: BTreeMap<(CtlPos, Event), CtlPos>,
}

/// Explore every reachable state of the model and project controller 0's moves onto
/// primitive-level events. Fails if the projection is not deterministic.
pub fn derive_automaton(q: &Quiesce) -> Result<Automaton, GenError> {
    let init = q.init_states().remove(0);
    let mut seen: HashSet<State> = HashSet::new();
    let mut queue = VecDeque::from([init.clone()]);
    seen.insert(init.clone());
    let mut edges: BTreeMap<(CtlPos, Event), CtlPos> = BTreeMap::new();
    let mut acts = Vec::new();
    while let Some(s) = queue.pop_front() {
        acts.clear();
        q.actions(&s, &mut acts);
        for a in acts.drain(..) {
            let Some(n) = q.next_state(&s, a) else {
                continue;
            };
            if let Some(ev) = event(&s, &n, &a) {
                let from = pos(q, &s);
                let to = pos(q, &n);
                if let Some(prev) = edges.insert((from, ev), to) {
                    if prev != to {
                        return Err(GenError::Refused(format!(
                            "the controller's behaviour is not deterministic at {from:?} on {ev:?} ({prev:?} or {to:?}); the monitor would be ambiguous"
                        )));
                    }
                }
            }
            if seen.insert(n.clone()) {
                queue.push_back(n);
            }
        }
    }
    Ok(Automaton {
        kind: q.kind,
        init: pos(q, &init),
        edges,
    })
}

// ---------------------------------------------------------------------------
// The hot path, by symbolic execution over its two inputs.

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub marked: bool,
    pub interposer: bool,
    /// `ToInterposer`, `ToOriginal` or `Dropped`.
    pub route: &'static str,
    pub steps: Vec<String>,
}

pub fn hot_routes(spec: &Spec) -> Result<Vec<Route>, GenError> {
    let ops = &spec.protocol.hot_path;
    let mut out = Vec::new();
    for marked in [false, true] {
        for interposer in [false, true] {
            let mut pc = 0usize;
            let mut steps = Vec::new();
            let mut route = "Dropped";
            let mut gone = false;
            let mut guard = 0;
            while pc < ops.len() {
                guard += 1;
                if guard > 4 * ops.len() {
                    return Err(GenError::Refused(
                        "the hot path loops without handing the bio off".into(),
                    ));
                }
                let op = ops[pc];
                steps.push(op.name().to_string());
                pc += 1;
                match op {
                    HotOp::TestMarker { marked: t }
                        if marked && spec.protocol.marker != MarkerKind::None =>
                    {
                        pc = t as usize
                    }
                    HotOp::ReadInterposer { null } if !interposer => pc = null as usize,
                    HotOp::Redirect if !gone => {
                        route = "ToInterposer";
                        gone = true;
                    }
                    HotOp::DriverSubmit if !gone => {
                        route = "ToOriginal";
                        gone = true;
                    }
                    HotOp::Return => break,
                    HotOp::Restart if !gone => pc = 0,
                    HotOp::Restart => break,
                    _ => {}
                }
            }
            out.push(Route {
                marked,
                interposer,
                route,
                steps,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Rendering.

fn camel(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                std::iter::once(f.to_ascii_uppercase()).chain(c).collect()
            })
        })
        .collect()
}

fn prim_variant(p: Prim) -> String {
    camel(p.name())
}

#[derive(Serialize)]
struct PrimCtx {
    variant: String,
    inverse: Option<String>,
    method: &'static str,
    call: String,
    doc: &'static str,
    fallible: bool,
    /// The errno a failure the spec injects returns; `None` if the spec injects none here.
    injected: Option<&'static str>,
}

#[derive(Serialize)]
struct StepCtx {
    index: usize,
    call: String,
    method: &'static str,
    variant: String,
    fallible: bool,
    /// Calls run when this step fails, in order.
    unwind: Vec<UnwindCtx>,
}

#[derive(Serialize)]
struct UnwindCtx {
    method: &'static str,
    fallible: bool,
}

#[derive(Serialize)]
struct ProcCtx {
    name: String,
    kind: &'static str,
    steps: Vec<StepCtx>,
    returned: &'static str,
}

#[derive(Serialize)]
struct MonitorCtx {
    kind: &'static str,
    /// The spec's name of the kind (`bio_sync`).
    name: &'static str,
    init: usize,
    edges: Vec<(usize, String, usize)>,
}

/// What a procedure still holds after its steps `0..i`: the acquiring steps whose
/// resource no later step of the same procedure released, in reverse order.
fn default_unwind(steps: &[&CtlStep], i: usize) -> Vec<Prim> {
    let mut held: Vec<Prim> = Vec::new();
    for st in &steps[..i] {
        let info = st.prim.info();
        if info.acquires.is_some() {
            held.push(st.prim);
        }
        if let Some(r) = info.releases {
            if let Some(j) = held.iter().rposition(|p| p.info().acquires == Some(r)) {
                held.remove(j);
            }
        }
    }
    held.iter()
        .rev()
        .map(|p| p.inverse().expect("acquiring primitives have inverses"))
        .collect()
}

fn procedure(spec: &Spec, kind: Kind, which: &str, list: &[CtlStep]) -> ProcCtx {
    let steps: Vec<&CtlStep> = list
        .iter()
        .filter(|st| st.only.is_none_or(|k| k == kind))
        .collect();
    let ctx_steps = steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let unwind = match &st.on_error {
                Some(l) => l
                    .iter()
                    .filter(|e| e.only.is_none_or(|k| k == kind))
                    .map(|e| e.prim)
                    .collect(),
                None => default_unwind(&steps, i),
            };
            StepCtx {
                index: i,
                call: st.prim.call(),
                method: st.prim.name(),
                variant: prim_variant(st.prim),
                fallible: !st.prim.info().errors.is_empty(),
                unwind: unwind
                    .iter()
                    .map(|p| UnwindCtx {
                        method: p.name(),
                        fallible: !p.info().errors.is_empty(),
                    })
                    .collect(),
            }
        })
        .collect();
    let _ = spec;
    ProcCtx {
        name: format!("{which}_{}", kind.name()),
        kind: kind.variant(),
        steps: ctx_steps,
        returned: if which == "attach" {
            "AttachReturned"
        } else {
            "DetachReturned"
        },
    }
}

fn event_rust(e: &Event) -> String {
    match e {
        Event::Ok(p) => format!("Event::Ok(Prim::{})", prim_variant(*p)),
        Event::Err(p) => format!("Event::Err(Prim::{})", prim_variant(*p)),
        Event::AttachReturned(b) => format!("Event::AttachReturned({b})"),
        Event::DetachBegin => "Event::DetachBegin".into(),
        Event::DetachReturned(b) => format!("Event::DetachReturned({b})"),
    }
}

fn pos_name(spec: &Spec, kind: Kind, p: &CtlPos) -> String {
    let list = |ph: u8| {
        if ph <= 1 {
            &spec.protocol.attach
        } else {
            &spec.protocol.detach
        }
    };
    let step = |ph: u8, i: u8| {
        list(ph)
            .get(i as usize)
            .map_or("returning".to_string(), |s| s.prim.call())
    };
    match p.phase {
        0 => format!("attach: before {}", step(0, p.pc)),
        1 | 4 => {
            let what = if p.phase == 1 { "attach" } else { "detach" };
            let failed = &list(p.phase)[p.failed as usize];
            let next = match &failed.on_error {
                Some(l) => l
                    .iter()
                    .filter(|e| e.only.is_none_or(|k| k == kind))
                    .nth(p.pc as usize)
                    .map_or("returning".to_string(), |x| x.prim.call()),
                None if p.pc == 0 => "returning".to_string(),
                None => list(p.phase)[p.pc as usize - 1]
                    .prim
                    .inverse()
                    .map_or("?".into(), |x| x.call()),
            };
            format!("{what} failed at {}: before {next}", failed.prim.call())
        }
        2 => "attached".into(),
        _ => format!("detach: before {}", step(3, p.pc)),
    }
}

/// Render every file of `generated/` for a spec whose report passed the gate.
pub fn render(spec: &Spec, report: &SpecReport) -> Result<Vec<(PathBuf, String)>, GenError> {
    gate(spec, report)?;
    let mut used: BTreeSet<Prim> = BTreeSet::new();
    for st in spec
        .protocol
        .attach
        .iter()
        .chain(&spec.protocol.detach)
        .chain(&spec.protocol.on_remove)
    {
        used.insert(st.prim);
        if let Some(p) = st.prim.inverse() {
            used.insert(p);
        }
        for e in st.on_error.iter().flatten() {
            used.insert(e.prim);
        }
    }
    let prims: Vec<PrimCtx> = PRIMS
        .iter()
        .filter(|p| used.contains(&p.prim))
        .map(|p| PrimCtx {
            variant: prim_variant(p.prim),
            inverse: p
                .prim
                .inverse()
                .filter(|i| used.contains(i))
                .map(prim_variant),
            method: p.name,
            call: p.prim.call(),
            doc: p.doc,
            fallible: !p.errors.is_empty(),
            injected: p
                .injectable
                .filter(|_| spec.protocol.inject.contains(&p.prim)),
        })
        .collect();
    let mut errnos: BTreeSet<&str> = BTreeSet::new();
    for p in PRIMS.iter().filter(|p| used.contains(&p.prim)) {
        errnos.extend(p.errors.iter().copied());
    }
    let errno_vals: Vec<(&str, i32)> = errnos
        .iter()
        .map(|e| {
            (
                *e,
                match *e {
                    "EPERM" => 1,
                    "ENXIO" => 6,
                    "EINTR" => 4,
                    "ENOMEM" => 12,
                    "EBUSY" => 16,
                    "EEXIST" => 17,
                    "ENODEV" => 19,
                    "EINVAL" => 22,
                    _ => 5,
                },
            )
        })
        .collect();

    let mut procs = Vec::new();
    let mut monitors = Vec::new();
    let mut state_names: Vec<String> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for &kind in &spec.kinds {
        procs.push(procedure(spec, kind, "attach", &spec.protocol.attach));
        procs.push(procedure(spec, kind, "detach", &spec.protocol.detach));
        let q = Quiesce::new(spec.protocol.clone(), kind, spec.bounds);
        let a = derive_automaton(&q)?;
        let mut id = |p: &CtlPos| {
            let name = pos_name(spec, kind, p);
            let key = format!("{}|{name}", kind.name());
            let n = index.len();
            *index.entry(key).or_insert_with(|| {
                state_names.push(format!("{}: {name}", kind.name()));
                n
            })
        };
        let init = id(&a.init);
        let edges = a
            .edges
            .iter()
            .map(|((f, e), t)| (id(f), event_rust(e), id(t)))
            .collect();
        monitors.push(MonitorCtx {
            kind: kind.variant(),
            name: kind.name(),
            init,
            edges,
        });
    }

    if let Some(st) = spec
        .protocol
        .attach
        .iter()
        .chain(&spec.protocol.detach)
        .find(|st| st.restart)
    {
        return Err(GenError::Refused(format!(
            "step `{}` restarts its call: the module's ioctl returns its errors to the caller; a restarting call is checked by the model but not rendered",
            st.prim.call()
        )));
    }
    if spec.protocol.refcounted() {
        return Err(GenError::Refused(
            "hot path step `filter_get`: the module drains its filter with filter_block and frees it with filter_free, not by a reference per bio; a refcounted filter is checked by the model but not rendered".into(),
        ));
    }
    if !spec.protocol.passthrough.is_empty() {
        return Err(GenError::Refused(
            "[protocol] passthrough: the kernel patch hooks submit_bio only; passthrough requests (blk_mq_alloc_request, blk_execute_rq) are checked by the model but not rendered".into(),
        ));
    }
    if let Some(op) = spec
        .protocol
        .hot_path
        .iter()
        .find(|op| matches!(op, HotOp::RcuLock | HotOp::RcuUnlock))
    {
        return Err(GenError::Refused(format!(
            "hot path step `{}`: the module's hook runs under O's queue reference; an RCU read side is checked by the model but not rendered",
            op.name()
        )));
    }
    if spec.protocol.hot_path.contains(&HotOp::ClearMarker) {
        return Err(GenError::Refused(
            "hot path step `clear_marker`: the module marks bios (BIO_INTERPOSED), not tasks; a task marker is checked by the model but not rendered".into(),
        ));
    }
    if spec.protocol.hot_path.contains(&HotOp::BlkQueueEnter) {
        return Err(GenError::Refused(
            "hot path step `blk_queue_enter`: the module's hook runs inside the reference the block layer takes with bio_queue_enter; a hook entering with blk_queue_enter is checked by the model but not rendered".into(),
        ));
    }
    if spec.protocol.park.is_some() {
        return Err(GenError::Refused(
            "[interposer] park: the module's filter clones every bio at once and parks none; a parking interposer is checked by the model but not rendered".into(),
        ));
    }
    if spec.protocol.worker_marks {
        return Err(GenError::Refused(
            "[marker] worker_marks: the module marks bios (BIO_INTERPOSED), not tasks; a task marker is checked by the model but not rendered".into(),
        ));
    }
    let routes = hot_routes(spec)?;
    let hot: Vec<String> = spec
        .protocol
        .hot_path
        .iter()
        .map(|op| match op {
            HotOp::TestMarker { marked } => format!("HotStep::TestMarker {{ marked: {marked} }}"),
            HotOp::ReadInterposer { null } => format!("HotStep::ReadInterposer {{ null: {null} }}"),
            other => format!("HotStep::{}", camel(other.name())),
        })
        .collect();

    let mut ctx = tera::Context::new();
    ctx.insert("spec_file", &spec_path_display(&spec.path));
    ctx.insert("spec_name", &spec.name);
    ctx.insert("description", &spec.description);
    ctx.insert("sha256", &spec.sha256);
    ctx.insert("checker", report.checker);
    ctx.insert("bounds", &spec.bounds);
    // Everything else the verdict depends on, for the header.
    ctx.insert(
        "checked_kinds",
        &spec.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
    );
    ctx.insert("filesystem", &spec.protocol.filesystem);
    ctx.insert("split", &spec.protocol.split);
    // Submitter paths other than plain submit_bio are an assumption of the verdict too.
    let paths = &spec.protocol.paths;
    ctx.insert(
        "paths",
        &if paths == &[quiesce_model::spec::SubmitPath::SubmitBio] {
            Vec::new()
        } else {
            paths.iter().map(|p| p.name()).collect::<Vec<_>>()
        },
    );
    ctx.insert(
        "marker_name",
        match spec.protocol.marker {
            MarkerKind::BioFlag => "bio_flag",
            MarkerKind::Task => "task",
            MarkerKind::None => "none",
        },
    );
    ctx.insert(
        "injected",
        &spec
            .protocol
            .inject
            .iter()
            .map(|p| p.call())
            .collect::<Vec<_>>(),
    );
    ctx.insert("symmetry", &report.kinds.iter().all(|k| k.symmetry));
    ctx.insert("unreached", &spec.unreached);
    ctx.insert(
        "states",
        &report
            .kinds
            .iter()
            .map(|k| (k.kind.name(), k.unique_states))
            .collect::<Vec<_>>(),
    );
    ctx.insert("proven", &SAFETY);
    ctx.insert(
        "marker",
        match spec.protocol.marker {
            MarkerKind::BioFlag => "BioFlag",
            MarkerKind::Task => "Task",
            MarkerKind::None => "None",
        },
    );
    ctx.insert("clone_inherits", &spec.protocol.clone_inherits);
    ctx.insert("interposer", spec.protocol.interposer.name());
    ctx.insert("prims", &prims);
    ctx.insert("errnos", &errno_vals);
    ctx.insert("procs", &procs);
    // The removal callback: its steps, and the primitives it runs (none can fail).
    let on_remove: Vec<StepCtx> = spec
        .protocol
        .on_remove
        .iter()
        .enumerate()
        .map(|(i, st)| StepCtx {
            index: i,
            call: st.prim.call(),
            method: st.prim.name(),
            variant: prim_variant(st.prim),
            fallible: false,
            unwind: Vec::new(),
        })
        .collect();
    let remove_prims: Vec<&PrimCtx> = prims
        .iter()
        .filter(|p| {
            spec.protocol
                .on_remove
                .iter()
                .any(|st| st.prim.name() == p.method)
        })
        .collect();
    ctx.insert("on_remove", &on_remove);
    ctx.insert("remove_prims", &remove_prims);
    ctx.insert(
        "kinds",
        &spec
            .kinds
            .iter()
            .map(|k| serde_json::json!({ "v": k.variant(), "n": k.name() }))
            .collect::<Vec<_>>(),
    );
    ctx.insert("monitors", &monitors);
    ctx.insert("state_names", &state_names);
    ctx.insert("routes", &routes);
    ctx.insert("hot", &hot);

    let mut files = Vec::new();
    for (template, out, rust) in [
        ("protocol.rs.tera", "src/protocol.rs", true),
        ("lib.rs.tera", "src/lib.rs", true),
        ("Cargo.toml.tera", "Cargo.toml", false),
        ("README.md.tera", "README.md", false),
    ] {
        let text = render_template(template, &ctx)?;
        let text = if rust { rustfmt(&text)? } else { text };
        files.push((PathBuf::from(out), text));
    }
    Ok(files)
}

/// The spec's path as written in the header: relative to the workspace when possible.
pub(crate) fn spec_path_display(p: &Path) -> String {
    let s = p.display().to_string();
    match s.find("model/specs/") {
        Some(i) => s[i..].to_string(),
        None => p
            .file_name()
            .map_or(s.clone(), |f| f.to_string_lossy().into_owned()),
    }
}

pub fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// Render one template from the templates folder; errors name the template and line.
pub fn render_template(name: &str, ctx: &tera::Context) -> Result<String, GenError> {
    render_template_from(&templates_dir(), name, ctx)
}

pub fn render_template_from(
    dir: &Path,
    name: &str,
    ctx: &tera::Context,
) -> Result<String, GenError> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| GenError::Template {
        template: path.display().to_string(),
        msg: e.to_string(),
    })?;
    let mut t = tera::Tera::default();
    t.autoescape_on(vec![]);
    let err = |e: tera::Error| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        GenError::Template {
            template: path.display().to_string(),
            msg,
        }
    };
    t.add_raw_template(name, &text).map_err(err)?;
    t.render(name, ctx).map_err(err)
}

/// Format Rust source as `cargo fmt` would (edition 2021, default options).
pub fn rustfmt(src: &str) -> Result<String, GenError> {
    use std::io::Write;
    let mut child = std::process::Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| GenError::Io(format!("cannot run rustfmt: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(src.as_bytes())
        .map_err(|e| GenError::Io(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| GenError::Io(e.to_string()))?;
    if !out.status.success() {
        return Err(GenError::Io(format!(
            "rustfmt rejected the rendered code: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout).map_err(|e| GenError::Io(e.to_string()))
}

/// Write the files into `out`, atomically per file: nothing is written unless all rendered.
pub fn write(out: &Path, files: &[(PathBuf, String)]) -> Result<(), GenError> {
    for (rel, text) in files {
        let path = out.join(rel);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| GenError::Io(format!("{}: {e}", d.display())))?;
        }
        let tmp = path.with_extension("quiesce-tmp");
        std::fs::write(&tmp, text).map_err(|e| GenError::Io(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| GenError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Compare rendered files with a directory; a unified diff per differing file.
pub fn drift(out: &Path, files: &[(PathBuf, String)]) -> Vec<String> {
    let mut diffs = Vec::new();
    for (rel, text) in files {
        let path = out.join(rel);
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old != *text {
            let d = similar::TextDiff::from_lines(&old, text)
                .unified_diff()
                .header(
                    &format!("{} (committed)", path.display()),
                    &format!("{} (from the spec)", path.display()),
                )
                .to_string();
            diffs.push(d);
        }
    }
    diffs
}
