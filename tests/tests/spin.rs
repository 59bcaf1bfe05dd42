//! quiesce and SPIN on the same protocol: for every shipped spec and kind, at the
//! spec's own bounds and at every size of the benchmark series, the Promela
//! rendering must have exactly quiesce's unique states (without symmetry
//! reduction) and SPIN must find exactly the safety properties quiesce finds
//! violated. Three searches take part: quiesce's own engine, Stateright's
//! DFS (on every case up to [`STATERIGHT_BUDGET`] states, to keep the suite to
//! minutes) and SPIN; their unique-state counts and verdicts must be equal. Two independent checkers agreeing state for state is the evidence
//! that the Promela backend renders the model's semantics, and that neither
//! checker drops or invents states.
//!
//! To keep the test suite to minutes, each spec and kind runs the series' first six
//! sizes in order and stops after the first size past [`STATE_BUDGET`] states; the
//! last size (2 submitters x 2 bios, 2 controllers x 2 cycles, 2 failures: 2 M to
//! 35 M states per spec) runs with `QUIESCE_SPIN_FULL=1` (about 10 minutes on
//! 2 cores, 11 GB), and `quiesce bench --spin` fails on any disagreement too.

use quiesce_codegen::promela::{
    liveness_claim, render, render_as, run_spin, run_spin_liveness, Rendering, SpinOptions,
};
use quiesce_model::check::{check_kind, CheckOptions, Engine, SERIES};
use quiesce_model::spec::{Overrides, Spec};
use std::path::PathBuf;
use std::sync::Mutex;

fn specs() -> Vec<Spec> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("model/specs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| Spec::load(p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// A spec and kind runs no series size after the first one past this many states.
const STATE_BUDGET: usize = 400_000;
/// Stateright's DFS runs on the cases up to this many states.
const STATERIGHT_BUDGET: usize = 300_000;

fn full() -> bool {
    std::env::var_os("QUIESCE_SPIN_FULL").is_some_and(|v| v == "1")
}

struct Case {
    spec: Spec,
    kind: quiesce_model::spec::Kind,
    overrides: Overrides,
    label: String,
    /// Also check the per-thread rendering (at the spec's own bounds).
    per_thread: bool,
}

/// One group per spec and kind: its own bounds, then the series in order.
fn cases() -> Vec<Vec<Case>> {
    let mut groups = Vec::new();
    for spec in specs() {
        for &kind in &spec.kinds {
            let mut out = Vec::new();
            let mut sizes = vec![(Overrides::default(), "spec bounds".to_string())];
            let n = if full() {
                SERIES.len()
            } else {
                SERIES.len() - 1
            };
            for &size in SERIES.iter().take(n) {
                let (s, b, c, y, f) = size;
                sizes.push((Overrides::size(size), format!("S{s} B{b} C{c} Y{y} F{f}")));
            }
            for (i, (overrides, size)) in sizes.into_iter().enumerate() {
                // A spec may cap a bound (one controller, say): sizes it cannot take are skipped.
                if spec.bounds.with(&overrides).is_err() {
                    continue;
                }
                out.push(Case {
                    label: format!("{} [{}] {size}", spec.name, kind.name()),
                    spec: spec.clone(),
                    kind,
                    overrides,
                    per_thread: i == 0,
                });
            }
            groups.push(out);
        }
    }
    groups
}

/// The case's figures, or what disagreed; and its state count.
fn run_case(case: &Case) -> (Result<String, String>, usize) {
    match compare(case) {
        Ok((line, n)) => (Ok(line), n),
        Err(e) => (Err(e), 0),
    }
}

fn compare(case: &Case) -> Result<(String, usize), String> {
    let opts = CheckOptions {
        overrides: case.overrides,
        symmetry: false,
        threads: 1,
        kinds: vec![case.kind],
        ..CheckOptions::default()
    };
    assert_eq!(opts.engine, Engine::Quiesce);
    let q = check_kind(&case.spec, case.kind, &opts).map_err(|e| format!("quiesce: {e}"))?;
    let mut problems = Vec::new();
    // Liveness verdicts are compared below, with SPIN's own liveness search.
    let live = quiesce_model::spec::LIVENESS;
    let mut qv: Vec<String> = q
        .violated()
        .iter()
        .filter(|s| !live.contains(*s))
        .map(|s| s.to_string())
        .collect();
    qv.sort();
    let mut stateright = "";
    if q.unique_states <= STATERIGHT_BUDGET {
        let sr = check_kind(
            &case.spec,
            case.kind,
            &CheckOptions {
                engine: Engine::Stateright,
                // The fair-cycle search does not depend on the engine: once is enough.
                liveness: Some(false),
                ..opts.clone()
            },
        )
        .map_err(|e| format!("stateright: {e}"))?;
        let mut sv: Vec<String> = sr
            .violated()
            .iter()
            .filter(|s| !live.contains(*s))
            .map(|s| s.to_string())
            .collect();
        sv.sort();
        if (sr.unique_states, &sv) != (q.unique_states, &qv) {
            problems.push(format!(
                "quiesce's engine: {} states, violated {qv:?}; Stateright's DFS: {} states, violated {sv:?}",
                q.unique_states, sr.unique_states
            ));
        }
        stateright = " (Stateright's DFS too)";
    }
    let bounds = case.spec.bounds.with(&case.overrides).expect("filtered");
    let pml = render(&case.spec, case.kind, bounds).map_err(|e| e.to_string())?;
    let spin = run_spin(
        &pml,
        &SpinOptions {
            hash_bits: None,
            quick_compile: true,
            ..SpinOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    if !spin.complete {
        problems.push("SPIN did not complete its search".to_string());
    }
    if spin.states as usize != q.unique_states {
        problems.push(format!(
            "states: quiesce {} vs SPIN {}",
            q.unique_states, spin.states
        ));
    }
    if spin.violated != qv {
        problems.push(format!(
            "violated: quiesce {qv:?} vs SPIN {:?}",
            spin.violated
        ));
    }
    if case.per_thread {
        problems.extend(per_thread(case, bounds, q.unique_states, &qv)?);
    }
    let mut liveness = "";
    if case.per_thread && case.spec.protocol.may_loop() {
        problems.extend(spin_liveness(case, bounds, &q)?);
        liveness = ", liveness too";
    }
    if problems.is_empty() {
        Ok((
            format!(
                "{}: {} states, violated {:?}{stateright}{liveness}",
                case.label, q.unique_states, qv
            ),
            q.unique_states,
        ))
    } else {
        Err(format!("{}: {}", case.label, problems.join("; ")))
    }
}

/// The per-thread rendering: without reduction, its states are exactly the
/// state-for-state rendering's (a process back at its loop head adds nothing);
/// SPIN at its best on it (partial-order reduction, -DCOLLAPSE) stores no more,
/// and both find what quiesce finds violated.
fn per_thread(
    case: &Case,
    bounds: quiesce_model::spec::Bounds,
    states: usize,
    qv: &[String],
) -> Result<Vec<String>, String> {
    let pml = render_as(&case.spec, case.kind, bounds, Rendering::PerThread)
        .map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    for best in [false, true] {
        let opts = SpinOptions {
            quick_compile: true,
            best,
            ..SpinOptions::default()
        };
        let run = run_spin(&pml, &opts).map_err(|e| e.to_string())?;
        let what = if best {
            "SPIN at its best"
        } else {
            "per-thread SPIN"
        };
        if !run.complete || run.violated != qv {
            problems.push(format!(
                "{what}: violated {:?} (complete: {}), quiesce {qv:?}",
                run.violated, run.complete
            ));
        }
        if (!best && run.states as usize != states) || run.states as usize > states {
            problems.push(format!("{what}: {} states, quiesce {states}", run.states));
        }
    }
    Ok(problems)
}

#[test]
fn spin_agrees_with_quiesce_on_every_spec_and_size() {
    let cases = cases();
    assert_eq!(cases.len(), 113, "every shipped spec and kind");
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (next, results, cases) = (&next, &results, &cases);
            scope.spawn(move || loop {
                let i = {
                    let mut n = next.lock().expect("lock");
                    *n += 1;
                    *n - 1
                };
                let Some(group) = cases.get(i) else { break };
                for case in group {
                    let (r, states) = run_case(case);
                    let failed = r.is_err();
                    results.lock().expect("lock").push(r);
                    if failed || (states > STATE_BUDGET && !full()) {
                        break;
                    }
                }
            });
        }
    });
    let results = results.into_inner().expect("lock");
    // Every spec and kind ran its own bounds and at least the smallest two series sizes.
    assert!(results.len() >= 3 * cases.len(), "{} runs", results.len());
    let mut bad = Vec::new();
    for r in &results {
        match r {
            Ok(line) => println!("agree: {line}"),
            Err(line) => bad.push(line.clone()),
        }
    }
    assert!(
        bad.is_empty(),
        "SPIN and quiesce disagree:\n{}",
        bad.join("\n")
    );
}

/// SPIN's search for fair acceptance cycles (`pan -a -f` on the per-thread
/// rendering) against quiesce's fair-cycle search, property by property.
fn spin_liveness(
    case: &Case,
    bounds: quiesce_model::spec::Bounds,
    q: &quiesce_model::KindReport,
) -> Result<Vec<String>, String> {
    let pml = render_as(&case.spec, case.kind, bounds, Rendering::PerThread)
        .map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    for prop in quiesce_model::spec::LIVENESS {
        let claim = liveness_claim(prop, bounds).map_err(|e| e.to_string())?;
        let l = run_spin_liveness(&pml, &claim, prop, true).map_err(|e| e.to_string())?;
        let ours = q.violated().contains(&prop);
        if l.violated != ours {
            problems.push(format!(
                "{prop}: quiesce {} vs SPIN {}",
                if ours { "violated" } else { "holds" },
                if l.violated { "violated" } else { "holds" }
            ));
        }
    }
    Ok(problems)
}

/// Spec 21's restart cycles are refuted by fairness alone: without `-f`, SPIN
/// finds the cycle in which attach restarts forever while the holder of
/// open_mutex is never scheduled. So the agreement on "holds" is not vacuous.
#[test]
fn spin_needs_fairness_to_refute_the_restart_cycles() {
    let spec = specs()
        .into_iter()
        .find(|s| s.name == "trylock-restart")
        .expect("21-trylock-restart.toml");
    let pml = render_as(&spec, spec.kinds[0], spec.bounds, Rendering::PerThread).expect("renders");
    let claim = liveness_claim("calls_return", spec.bounds).expect("claim");
    let fair = run_spin_liveness(&pml, &claim, "calls_return", true).expect("spin runs");
    let unfair = run_spin_liveness(&pml, &claim, "calls_return", false).expect("spin runs");
    assert!(!fair.violated, "{fair:?}");
    assert!(unfair.violated, "{unfair:?}");
}

#[test]
fn spin_sees_a_broken_protocol() {
    // The agreement test would pass vacuously if the Promela never reached a bad
    // state: the v7 protocol as posted must violate in SPIN what it violates in quiesce.
    let spec = specs()
        .into_iter()
        .find(|s| s.name == "v7-as-posted")
        .expect("01-v7-as-posted.toml");
    let kind = spec.kinds[0];
    let pml = render(&spec, kind, spec.bounds).expect("renders");
    let run = run_spin(
        &pml,
        &SpinOptions {
            hash_bits: None,
            quick_compile: true,
            ..SpinOptions::default()
        },
    )
    .expect("spin runs");
    assert!(
        run.violated.iter().any(|v| v == "no_use_after_free"),
        "{run:?}"
    );
    assert_eq!(run.states, 581, "{run:?}");
}

/// A grace period in a protocol whose hot path has no RCU reader ends at once,
/// in both checkers, state for state (the Promela wait must not depend on
/// whether the hot path renders its RCU bytes).
#[test]
fn a_grace_period_without_readers_agrees_with_spin() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs");
    let text = std::fs::read_to_string(dir.join("19-point-of-no-return.toml")).expect("spec 19");
    let old = "  { call = \"clear_interposer(O)\", no_return = true },\n";
    assert!(text.contains(old));
    let text = text.replace(old, &format!("{old}  \"synchronize_rcu()\",\n"));
    let spec = Spec::parse(&dir.join("19-with-a-grace-period.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    for &kind in &spec.kinds {
        let case = Case {
            label: format!("{} [{}] with synchronize_rcu()", spec.name, kind.name()),
            spec: spec.clone(),
            kind,
            overrides: Overrides::default(),
            per_thread: true,
        };
        let (line, n) = compare(&case).unwrap_or_else(|e| panic!("{}: {e}", case.label));
        assert!(n > 1000, "{line}");
    }
}
