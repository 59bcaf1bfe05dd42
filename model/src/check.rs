//! Running the Stateright checker over a spec and judging its expectations.
//!
//! The verdict comes from an exhaustive search; with symmetry (the default)
//! that is a DFS over representatives, the submitters being interchangeable.
//! Counterexamples come from a breadth-first search without symmetry that
//! stops once every violated property has a path, so each is a shortest one.

use crate::model::{Action, Quiesce, State};
use crate::spec::{Bounds, Expect, Kind, Overrides, Spec, SANITY};
use serde::Serialize;
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};
use std::collections::BTreeSet;
use std::time::Instant;

pub const CHECKER_VERSION: &str = concat!("quiesce ", env!("CARGO_PKG_VERSION"), " (stateright 0.31)");

/// How to run a check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub overrides: Overrides,
    /// Symmetry reduction over the submitters (DFS); off: a plain BFS.
    pub symmetry: bool,
    pub threads: usize,
    /// Only these kinds (all of the spec's when empty).
    pub kinds: Vec<Kind>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            overrides: Overrides::default(),
            symmetry: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kinds: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceStep {
    pub step: usize,
    pub action: String,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PropReport {
    pub name: &'static str,
    /// `always` or `sometimes`.
    pub expectation: &'static str,
    /// `holds`, `violated`, `reached`, `not reached` or `not applicable`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<TraceStep>>,
    /// The Explorer's path to the counterexample's last state (`#/steps/<this>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explorer_path: Option<String>,
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
    pub expected: String,
    pub properties: Vec<PropReport>,
    pub met: bool,
    /// Why the expectation was not met.
    pub mismatch: Vec<String>,
}

impl KindReport {
    pub fn violated(&self) -> Vec<&'static str> {
        self.properties.iter().filter(|p| p.verdict == "violated").map(|p| p.name).collect()
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

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

fn trace(model: &Quiesce, path: Path<State, Action>) -> Vec<TraceStep> {
    let mut out = Vec::new();
    let v = path.into_vec();
    for (i, (_, action)) in v.iter().enumerate() {
        if let Some(a) = action {
            let after = &v[i + 1].0;
            out.push(TraceStep { step: out.len() + 1, action: model.describe(a), state: model.summary(after) });
        }
    }
    out
}

/// Check one kind of original under the spec's (overridden) bounds.
pub fn check_kind(spec: &Spec, kind: Kind, opts: &CheckOptions) -> Result<KindReport, String> {
    let bounds = spec.bounds.with(&opts.overrides)?;
    let model = Quiesce::new(spec.protocol.clone(), kind, bounds);
    let props = model.properties();
    let start = Instant::now();
    let builder = model.clone().checker().threads(opts.threads.max(1));
    let (unique, total, depth, discovered): (usize, usize, usize, BTreeSet<&'static str>) = if opts.symmetry {
        let c = builder.symmetry().spawn_dfs().join();
        (c.unique_state_count(), c.state_count(), c.max_depth(), c.discoveries().keys().copied().collect())
    } else {
        let c = builder.spawn_bfs().join();
        (c.unique_state_count(), c.state_count(), c.max_depth(), c.discoveries().keys().copied().collect())
    };
    let seconds = start.elapsed().as_secs_f64();

    let violated: BTreeSet<&'static str> = props
        .iter()
        .filter(|p| p.expectation == Expectation::Always && discovered.contains(p.name))
        .map(|p| p.name)
        .collect();
    // Shortest counterexamples: BFS without symmetry, stopping once all are found.
    let mut paths = std::collections::HashMap::new();
    if !violated.is_empty() {
        let c = model
            .clone()
            .checker()
            .threads(1)
            .finish_when(HasDiscoveries::AllOf(violated.clone()))
            .spawn_bfs()
            .join();
        for name in &violated {
            if let Some(p) = c.discovery(name) {
                paths.insert(*name, p);
            }
        }
    }

    let mut properties = Vec::new();
    for p in &props {
        let always = p.expectation == Expectation::Always;
        let found = discovered.contains(p.name);
        let verdict = match (always, found) {
            (true, true) => "violated",
            (true, false) => "holds",
            (false, true) => "reached",
            (false, false) if !model.sanity_applies(p.name) => "not applicable",
            (false, false) => "not reached",
        };
        let (trace, explorer_path) = match paths.remove(p.name) {
            Some(path) => {
                let enc = path.encode(&model);
                (Some(trace(&model, path)), Some(enc))
            }
            None => (None, None),
        };
        properties.push(PropReport {
            name: p.name,
            expectation: if always { "always" } else { "sometimes" },
            verdict,
            trace,
            explorer_path,
        });
    }

    let expect = &spec.expect[&kind];
    let mut mismatch = Vec::new();
    let want: BTreeSet<&'static str> = match expect {
        Expect::Pass => BTreeSet::new(),
        Expect::Violates(v) => v.iter().copied().collect(),
    };
    for name in violated.difference(&want) {
        mismatch.push(format!("{name} is violated but expected to hold"));
    }
    for name in want.difference(&violated) {
        mismatch.push(format!("{name} holds but was expected to be violated"));
    }
    for p in properties.iter().filter(|p| p.verdict == "not reached") {
        debug_assert!(SANITY.contains(&p.name));
        mismatch.push(format!("sanity: {} was never reached (the model may be vacuous)", p.name));
    }
    let expected = match expect {
        Expect::Pass => "pass".to_string(),
        Expect::Violates(v) => v.join(", "),
    };
    Ok(KindReport {
        kind,
        bounds,
        symmetry: opts.symmetry,
        unique_states: unique,
        states: total,
        max_depth: depth,
        seconds,
        expected,
        met: mismatch.is_empty(),
        mismatch,
        properties,
    })
}

/// Check every kind a spec names (or those in `opts.kinds`).
pub fn check_spec(spec: &Spec, opts: &CheckOptions) -> Result<SpecReport, String> {
    let mut kinds = Vec::new();
    for &kind in &spec.kinds {
        if opts.kinds.is_empty() || opts.kinds.contains(&kind) {
            kinds.push(check_kind(spec, kind, opts)?);
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
