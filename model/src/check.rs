//! Running the Stateright checker over a spec and judging its expectations.
//!
//! The verdict comes from an exhaustive search; with symmetry (the default)
//! that is a DFS over representatives, the submitters being interchangeable.
//! Counterexamples come from a true breadth-first search without symmetry
//! that stops once every refuted property has a path, so each is a shortest
//! one (Stateright's own BFS pops from the back of its queue and keeps the
//! last path it saw, which need not be shortest).

use crate::model::{Action, Quiesce, State};
use crate::spec::{Bounds, Kind, Overrides, Spec, SANITY};
use serde::Serialize;
use stateright::{Checker, Expectation, Model};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

pub const CHECKER_VERSION: &str =
    concat!("quiesce ", env!("CARGO_PKG_VERSION"), " (stateright 0.31)");

/// Which search engine explores the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// quiesce's own (`crate::engine`): flat fingerprint table, BFS layers, two threads.
    Quiesce,
    /// Stateright's checker: DFS.
    Stateright,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Quiesce => "quiesce",
            Engine::Stateright => "stateright",
        }
    }
}

/// How to run a check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub overrides: Overrides,
    pub engine: Engine,
    /// quiesce's engine: end the search (incomplete) past this many bytes.
    pub mem_limit: usize,
    /// quiesce's engine: preallocate the visited set for this many bytes (0: grow from 8 MiB).
    pub table_bytes: usize,
    /// Symmetry reduction over the submitters (DFS); off: a plain BFS.
    pub symmetry: bool,
    pub threads: usize,
    /// Only these kinds (all of the spec's when empty).
    pub kinds: Vec<Kind>,
    /// Find a shortest counterexample for each violated property (a second,
    /// breadth-first search without symmetry); off: verdicts only.
    pub traces: bool,
    /// Check liveness (`crate::live`); `None`: when the protocol's runs may
    /// loop (`Protocol::may_loop`; otherwise every run is finite).
    pub liveness: Option<bool>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            overrides: Overrides::default(),
            engine: Engine::Quiesce,
            mem_limit: default_mem_limit(),
            table_bytes: 0,
            traces: true,
            symmetry: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kinds: Vec::new(),
            liveness: None,
        }
    }
}

/// Three quarters of the machine's memory.
pub fn default_mem_limit() -> usize {
    let kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .unwrap_or(8 << 20);
    kib / 4 * 3 * 1024
}

/// The version of the JSON report's layout (`docs/report-schema.md`); bumped on
/// any change a reader could notice.
pub const REPORT_SCHEMA: u32 = 4;

/// One step of a counterexample: the rendered text and the same as fields.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TraceStep {
    pub step: usize,
    /// `thread: what it did`, as printed.
    pub action: String,
    /// The state after the step, in one line, as printed.
    pub state: String,
    /// Who took the step: `submitter 1`, `controller 2`, `kworker`, `O`, `remover`, `freezer 1`.
    pub thread: String,
    /// The bio the step moves, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    /// The state after the step, as fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<crate::explain::Devices>,
}

/// What the spec expects for one kind.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Expected {
    /// Safety properties that must be violated (empty: the spec must pass).
    pub violated: Vec<&'static str>,
    /// Sanity properties that must not be reached.
    pub unreached: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PropReport {
    pub name: &'static str,
    /// `always` or `sometimes`.
    pub expectation: &'static str,
    /// `holds`, `violated`, `reached`, `not_reached` or `not_applicable`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<TraceStep>>,
    /// Why the property fails at the trace's last step, in plain words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The Explorer's path to the counterexample's last state (`#/steps/<this>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explorer_path: Option<String>,
    /// A liveness counterexample: the trace's steps from this one (numbered
    /// from 1) to its last repeat forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_start: Option<usize>,
}

/// The liveness search of one kind (`crate::live`).
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    /// States and transitions of the whole graph (no symmetry).
    pub states: usize,
    pub edges: usize,
    /// Strongly connected components with a cycle: 0 means every run is finite.
    pub cyclic_components: usize,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub kind: Kind,
    pub bounds: Bounds,
    pub symmetry: bool,
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    pub seconds: f64,
    /// The engine that searched.
    pub engine: Engine,
    /// Why the search ended before it covered every state (then `met` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// quiesce's engine: the chance that two states shared a 64-bit fingerprint
    /// (about n²/2⁶⁵), so that one of them went unsearched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collision_probability: Option<f64>,
    pub expected: Expected,
    pub properties: Vec<PropReport>,
    /// The liveness search, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LiveReport>,
    pub met: bool,
    /// Why the expectation was not met.
    pub mismatch: Vec<String>,
}

impl KindReport {
    pub fn violated(&self) -> Vec<&'static str> {
        self.properties
            .iter()
            .filter(|p| p.verdict == "violated")
            .map(|p| p.name)
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SpecReport {
    pub file: String,
    pub name: String,
    pub sha256: String,
    pub checker: &'static str,
    pub kinds: Vec<KindReport>,
    pub met: bool,
}

/// A path: the initial state, then each action with the state it leads to.
pub type Steps = (State, Vec<(Action, State)>);

fn render_trace(model: &Quiesce, (_, steps): &Steps) -> Vec<TraceStep> {
    steps
        .iter()
        .enumerate()
        .map(|(i, (a, after))| TraceStep {
            step: i + 1,
            action: model.describe(a),
            state: model.summary(after),
            thread: model.thread(a),
            bio: model.bio_of(a),
            devices: Some(model.devices(after)),
        })
        .collect()
}

/// The Explorer's encoding of a path: the initial state's index, then each action's index
/// among the actions enabled where it was taken.
pub fn explorer_path(model: &Quiesce, (init, steps): &Steps) -> String {
    let mut parts = vec!["0".to_string()];
    let mut state = init.clone();
    for (a, next) in steps {
        let mut acts = Vec::new();
        model.actions(&state, &mut acts);
        let i = acts
            .iter()
            .position(|x| x == a)
            .expect("the path's action is enabled");
        parts.push(i.to_string());
        state = next.clone();
    }
    parts.join("/")
}

/// Breadth-first search from the initial state; the first state found violating each named
/// `always` property (or satisfying each named `sometimes` one: an example) ends a shortest
/// path to it.
pub fn shortest_counterexamples(
    model: &Quiesce,
    names: &BTreeSet<&'static str>,
) -> HashMap<&'static str, Steps> {
    let mut found = HashMap::new();
    if names.is_empty() {
        return found;
    }
    let props: Vec<_> = model
        .properties()
        .into_iter()
        .filter(|p| names.contains(p.name))
        .collect();
    let init = model.init_states().remove(0);
    let mut parent: HashMap<State, Option<(State, Action)>> = HashMap::new();
    parent.insert(init.clone(), None);
    let mut queue = VecDeque::from([init]);
    let mut acts = Vec::new();
    while let Some(s) = queue.pop_front() {
        for p in &props {
            let hit = match p.expectation {
                stateright::Expectation::Always => !(p.condition)(model, &s),
                stateright::Expectation::Sometimes => (p.condition)(model, &s),
                stateright::Expectation::Eventually => false,
            };
            if !found.contains_key(p.name) && hit {
                let mut steps = Vec::new();
                let mut cur = s.clone();
                while let Some(Some((prev, a))) = parent.get(&cur) {
                    steps.push((*a, cur.clone()));
                    cur = prev.clone();
                }
                steps.reverse();
                found.insert(p.name, (cur, steps));
            }
        }
        if found.len() == props.len() {
            break;
        }
        acts.clear();
        model.actions(&s, &mut acts);
        for a in acts.drain(..) {
            if let Some(n) = model.next_state(&s, a) {
                if !parent.contains_key(&n) {
                    parent.insert(n.clone(), Some((s.clone(), a)));
                    queue.push_back(n);
                }
            }
        }
    }
    found
}

/// The scaling series of `quiesce bench` and of the SPIN agreement test:
/// (submitters, bios per submitter, controllers, cycles, injected failures).
pub const SERIES: [(u8, u8, u8, u8, u8); 7] = [
    (1, 1, 1, 1, 1),
    (2, 1, 1, 1, 1),
    (2, 1, 2, 2, 2),
    (2, 2, 1, 1, 1),
    (3, 1, 1, 2, 1),
    (2, 2, 1, 2, 1),
    (2, 2, 2, 2, 2),
];

/// Check one kind of original under the spec's (overridden) bounds.
pub fn check_kind(spec: &Spec, kind: Kind, opts: &CheckOptions) -> Result<KindReport, String> {
    check_kind_with(spec, kind, opts, &mut |_| {})
}

/// A running check's figures.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub states: usize,
    /// States whose successors have been generated (quiesce's engine only).
    pub expanded: Option<usize>,
    pub depth: usize,
    pub seconds: f64,
}

/// An estimate of a running search's size, from its progress samples.
///
/// The states found but not yet expanded (the open ones) are treated as the
/// roots of a branching process: each expansion has recently yielded `m` new
/// states on average, so the open states will yield about `open * m / (1 - m)`
/// more. That converges only once `m < 1` (the search has passed its widest
/// part); before that, and with Stateright's engine, there is no estimate.
#[derive(Debug, Default)]
pub struct Estimator {
    last: Option<(usize, usize)>,
    /// Smoothed new states per expansion.
    m: Option<f64>,
}

/// What an [`Estimator`] expects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub total_states: usize,
    pub seconds_left: f64,
}

impl Estimator {
    pub fn update(&mut self, p: &Progress) -> Option<Estimate> {
        let expanded = p.expanded?;
        let (states, seconds) = (p.states, p.seconds);
        if let Some((s0, e0)) = self.last {
            let de = expanded.saturating_sub(e0);
            if de > 0 {
                let m = states.saturating_sub(s0) as f64 / de as f64;
                self.m = Some(self.m.map_or(m, |old| 0.7 * old + 0.3 * m));
            }
        }
        self.last = Some((states, expanded));
        let m = self.m?;
        if m >= 0.98 {
            return None;
        }
        let open = states.saturating_sub(expanded) as f64;
        let total = states as f64 + open * m / (1.0 - m);
        let rate = expanded as f64 / seconds.max(1e-3);
        Some(Estimate {
            total_states: total as usize,
            seconds_left: (total - expanded as f64) / rate.max(1.0),
        })
    }
}

/// As [`check_kind`], reporting progress while the checker runs.
pub fn check_kind_with(
    spec: &Spec,
    kind: Kind,
    opts: &CheckOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<KindReport, String> {
    let bounds = spec.bounds.with(&opts.overrides)?;
    let model = Quiesce::new(spec.protocol.clone(), kind, bounds);
    let props = model.properties();
    let start = Instant::now();
    let mut incomplete = None;
    let mut collision_probability = None;
    let (unique, total, depth, discovered): (usize, usize, usize, BTreeSet<&'static str>) =
        match opts.engine {
            Engine::Quiesce => {
                let o = crate::engine::search(
                    &model,
                    &crate::engine::Options {
                        symmetry: opts.symmetry,
                        threads: opts.threads,
                        order: crate::engine::Order::Dfs,
                        mem_limit: opts.mem_limit,
                        table_bytes: opts.table_bytes,
                    },
                    &mut |p| {
                        progress(Progress {
                            states: p.states,
                            expanded: Some(p.expanded),
                            depth: p.depth,
                            seconds: p.seconds,
                        })
                    },
                );
                incomplete = o.incomplete.as_ref().map(|i| i.to_string());
                collision_probability = Some(o.collision_probability());
                (
                    o.unique_states,
                    o.states,
                    o.max_depth,
                    o.discovered.into_iter().collect(),
                )
            }
            Engine::Stateright => stateright_search(&model, opts, start, progress),
        };
    let seconds = start.elapsed().as_secs_f64();

    let mut violated: BTreeSet<&'static str> = props
        .iter()
        .filter(|p| p.expectation == Expectation::Always && discovered.contains(p.name))
        .map(|p| p.name)
        .collect();
    // Shortest counterexamples: a true breadth-first search for the properties Stateright refuted.
    let mut paths = if opts.traces {
        shortest_counterexamples(&model, &violated)
    } else {
        Default::default()
    };
    let mut properties = Vec::new();
    for p in &props {
        let always = p.expectation == Expectation::Always;
        let found = discovered.contains(p.name);
        let verdict = match (always, found) {
            (true, true) => "violated",
            (true, false) => "holds",
            (false, true) => "reached",
            (false, false) if !model.sanity_applies(p.name) => "not_applicable",
            (false, false) => "not_reached",
        };
        let (trace, explorer_path, reason) = match paths.remove(p.name) {
            Some(steps) => (
                Some(render_trace(&model, &steps)),
                Some(explorer_path(&model, &steps)),
                model.why_last(p.name, &steps.0, &steps.1),
            ),
            None => (None, None, None),
        };
        properties.push(PropReport {
            name: p.name,
            expectation: if always { "always" } else { "sometimes" },
            verdict,
            trace,
            reason,
            explorer_path,
            loop_start: None,
        });
    }
    let live = opts
        .liveness
        .unwrap_or_else(|| model.protocol.may_loop())
        .then(|| crate::live::check(&model, opts.mem_limit));
    if let Some(l) = &live {
        for name in crate::live::LIVENESS {
            let v = l.violated(name);
            if v.is_some() {
                violated.insert(name);
            }
            properties.push(live_prop(&model, name, v, l.incomplete.is_some()));
        }
    }

    let expect = &spec.expect[&kind];
    let mut mismatch = Vec::new();
    if let Some(why) = &incomplete {
        mismatch.push(format!("the search is incomplete: {why}"));
    }
    if let Some(why) = live.as_ref().and_then(|l| l.incomplete.as_ref()) {
        mismatch.push(format!("the liveness search is incomplete: {why}"));
    }
    let want = expect.violated();
    mismatch.extend(expect.mismatch(violated.iter().copied()));
    for p in properties.iter().filter(|p| SANITY.contains(&p.name)) {
        let excused = spec.unreached.contains(&p.name);
        if p.verdict == "not_reached" && !excused {
            mismatch.push(format!(
                "sanity: {} was never reached (the model may be vacuous)",
                p.name
            ));
        }
        if p.verdict == "reached" && excused {
            mismatch.push(format!(
                "sanity: {} was reached but the spec says it is unreached",
                p.name
            ));
        }
    }
    let expected = Expected {
        violated: want.iter().copied().collect(),
        unreached: spec.unreached.clone(),
    };
    Ok(KindReport {
        kind,
        bounds,
        symmetry: opts.symmetry,
        unique_states: unique,
        states: total,
        max_depth: depth,
        seconds,
        engine: opts.engine,
        incomplete,
        collision_probability,
        expected,
        met: mismatch.is_empty(),
        mismatch,
        properties,
        liveness: live.map(|l| LiveReport {
            states: l.states,
            edges: l.edges,
            cyclic_components: l.cyclic_components,
            seconds: l.seconds,
            incomplete: l.incomplete.map(|i| i.to_string()),
        }),
    })
}

/// A liveness property's report: its lasso as one trace, with the step where
/// the loop begins.
fn live_prop(
    model: &Quiesce,
    name: &'static str,
    v: Option<&crate::live::Violation>,
    incomplete: bool,
) -> PropReport {
    let Some(v) = v else {
        return PropReport {
            name,
            expectation: "eventually",
            verdict: if incomplete { "unknown" } else { "holds" },
            trace: None,
            reason: None,
            explorer_path: None,
            loop_start: None,
        };
    };
    let mut steps = v.lasso.prefix.clone();
    steps.extend(v.lasso.cycle.iter().cloned());
    let path: Steps = (v.lasso.init.clone(), steps);
    let from = v.lasso.prefix.len() + 1;
    let to = path.1.len();
    let starved = if v.starved.is_empty() {
        String::new()
    } else {
        format!(
            "; {} can run at times, but is blocked again each time before it is scheduled (weak fairness does not force it)",
            v.starved.join(", ")
        )
    };
    PropReport {
        name,
        expectation: "eventually",
        verdict: "violated",
        trace: Some(render_trace(model, &path)),
        reason: Some(format!(
            "{}: steps {from}-{to} repeat forever, and in them every thread either takes steps or is blocked{starved}",
            v.what
        )),
        explorer_path: Some(explorer_path(model, &path)),
        loop_start: Some(from),
    }
}

/// Stateright's checker (DFS, with or without symmetry), polled for progress.
fn stateright_search(
    model: &Quiesce,
    opts: &CheckOptions,
    start: Instant,
    progress: &mut dyn FnMut(Progress),
) -> (usize, usize, usize, BTreeSet<&'static str>) {
    let builder = model.clone().checker().threads(opts.threads.max(1));
    // Poll the running checker for progress: a display refresh every 200 ms, checked
    // every 5 ms so that small checks are not held up.
    fn wait<C: Checker<Quiesce>>(
        c: C,
        start: Instant,
        progress: &mut dyn FnMut(Progress),
    ) -> (usize, usize, usize, BTreeSet<&'static str>) {
        let mut last = Instant::now();
        while !c.is_done() {
            if last.elapsed() >= std::time::Duration::from_millis(200) {
                last = Instant::now();
                progress(Progress {
                    states: c.unique_state_count(),
                    expanded: None,
                    depth: c.max_depth(),
                    seconds: start.elapsed().as_secs_f64(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let c = c.join();
        (
            c.unique_state_count(),
            c.state_count(),
            c.max_depth(),
            c.discoveries().keys().copied().collect(),
        )
    }
    if opts.symmetry {
        wait(builder.symmetry().spawn_dfs(), start, progress)
    } else {
        wait(builder.spawn_dfs(), start, progress)
    }
}

/// Check every kind a spec names (or those in `opts.kinds`).
pub fn check_spec(spec: &Spec, opts: &CheckOptions) -> Result<SpecReport, String> {
    check_spec_with(spec, opts, &mut |_, _| {})
}

/// As [`check_spec`], reporting progress per kind.
pub fn check_spec_with(
    spec: &Spec,
    opts: &CheckOptions,
    progress: &mut dyn FnMut(Kind, Progress),
) -> Result<SpecReport, String> {
    let mut kinds = Vec::new();
    for &kind in &spec.kinds {
        if opts.kinds.is_empty() || opts.kinds.contains(&kind) {
            kinds.push(check_kind_with(spec, kind, opts, &mut |p| {
                progress(kind, p)
            })?);
        }
    }
    Ok(SpecReport {
        file: spec.path.display().to_string(),
        name: spec.name.clone(),
        sha256: spec.sha256.clone(),
        checker: CHECKER_VERSION,
        met: kinds.iter().all(|k| k.met),
        kinds,
    })
}

fn stat(name: &str, from: &[&'static str]) -> Result<&'static str, String> {
    from.iter()
        .copied()
        .find(|n| *n == name)
        .ok_or_else(|| format!("unknown name `{name}`"))
}

/// A list of property names in a report.
fn names_in(v: &serde_json::Value, from: &[&'static str]) -> Result<Vec<&'static str>, String> {
    v.as_array()
        .ok_or("missing `expected` lists")?
        .iter()
        .map(|n| stat(n.as_str().ok_or("a property name must be a string")?, from))
        .collect()
}

impl SpecReport {
    /// Read back one spec's entry of a `quiesce check --json` report.
    pub fn from_json(v: &serde_json::Value) -> Result<SpecReport, String> {
        let s = |v: &serde_json::Value, k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("missing `{k}`"))
        };
        let u =
            |v: &serde_json::Value, k: &str| v[k].as_u64().ok_or_else(|| format!("missing `{k}`"));
        use serde::Deserialize;
        let checker = s(v, "checker")?;
        if checker != CHECKER_VERSION {
            return Err(format!(
                "made by `{checker}`, not by this `{CHECKER_VERSION}`"
            ));
        }
        let mut kinds = Vec::new();
        for k in v["kinds"].as_array().ok_or("missing `kinds`")? {
            let kind = k["kind"]
                .as_str()
                .and_then(Kind::by_name)
                .ok_or("bad `kind`")?;
            let b = &k["bounds"];
            let bounds = Bounds {
                submitters: u(b, "submitters")? as u8,
                bios: u(b, "bios")? as u8,
                controllers: u(b, "controllers")? as u8,
                cycles: u(b, "cycles")? as u8,
                failures: u(b, "failures")? as u8,
                freezers: u(b, "freezers")? as u8,
                remover: b["remover"].as_bool().ok_or("missing `remover`")?,
                rmmod: b["rmmod"].as_bool().unwrap_or(false),
                reuse: b["reuse"].as_bool().unwrap_or(false),
            };
            let names: Vec<&'static str> = crate::spec::SAFETY
                .iter()
                .chain(crate::live::LIVENESS.iter())
                .chain(SANITY.iter())
                .copied()
                .collect();
            let mut properties = Vec::new();
            for p in k["properties"].as_array().ok_or("missing `properties`")? {
                let trace = match &p["trace"] {
                    serde_json::Value::Null => None,
                    t => Some(
                        Vec::<TraceStep>::deserialize(t)
                            .map_err(|e| format!("bad `trace`: {e}"))?,
                    ),
                };
                properties.push(PropReport {
                    name: stat(&s(p, "name")?, &names)?,
                    expectation: stat(
                        &s(p, "expectation")?,
                        &["always", "sometimes", "eventually"],
                    )?,
                    verdict: stat(
                        &s(p, "verdict")?,
                        &[
                            "holds",
                            "violated",
                            "reached",
                            "not_reached",
                            "not_applicable",
                            "unknown",
                        ],
                    )?,
                    trace,
                    reason: p["reason"].as_str().map(str::to_string),
                    explorer_path: p["explorer_path"].as_str().map(str::to_string),
                    loop_start: p["loop_start"].as_u64().map(|n| n as usize),
                });
            }
            kinds.push(KindReport {
                kind,
                bounds,
                symmetry: k["symmetry"].as_bool().unwrap_or(true),
                unique_states: u(k, "unique_states")? as usize,
                states: u(k, "states")? as usize,
                max_depth: u(k, "max_depth")? as usize,
                seconds: k["seconds"].as_f64().unwrap_or(0.0),
                expected: Expected {
                    violated: names_in(&k["expected"]["violated"], &names)?,
                    unreached: names_in(&k["expected"]["unreached"], &names)?,
                },
                properties,
                met: k["met"].as_bool().ok_or("missing `met`")?,
                engine: match k["engine"].as_str() {
                    Some("stateright") => Engine::Stateright,
                    _ => Engine::Quiesce,
                },
                incomplete: k["incomplete"].as_str().map(str::to_string),
                collision_probability: k["collision_probability"].as_f64(),
                liveness: None,
                mismatch: Vec::new(),
            });
        }
        Ok(SpecReport {
            file: s(v, "file")?,
            name: s(v, "name")?,
            sha256: s(v, "sha256")?,
            checker: CHECKER_VERSION,
            met: v["met"].as_bool().ok_or("missing `met`")?,
            kinds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Estimate, Estimator, Progress};

    fn at(states: usize, expanded: usize, seconds: f64) -> Progress {
        Progress {
            states,
            expanded: Some(expanded),
            depth: 0,
            seconds,
        }
    }

    #[test]
    fn a_shrinking_frontier_gives_its_geometric_total() {
        let mut e = Estimator::default();
        assert_eq!(
            e.update(&at(1100, 1000, 1.0)),
            None,
            "one sample has no rate"
        );
        // 100 expansions found 50 new states: m = 0.5, and the 50 open states
        // will yield about 50 more (25, then 12.5, ...).
        let got = e.update(&at(1150, 1100, 1.1)).expect("an estimate");
        assert_eq!(got.total_states, 1200);
        let left = (1200.0 - 1100.0) / (1100.0 / 1.1);
        assert!((got.seconds_left - left).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn no_estimate_while_widening_or_without_expansions() {
        let mut e = Estimator::default();
        e.update(&at(1000, 500, 1.0));
        assert_eq!(
            e.update(&at(2000, 1000, 2.0)),
            None,
            "m = 2: still widening"
        );
        let mut s = Estimator::default();
        let p = Progress {
            expanded: None,
            ..at(10, 5, 1.0)
        };
        assert_eq!(s.update(&p), None::<Estimate>);
        assert_eq!(s.update(&p), None);
    }
}
