//! `quiesce bench`: the checker's figures on a scaling series of bounds, side
//! by side with SPIN's on the same protocol.

use crate::{exit2, load};
use quiesce_model::spec::{Kind, Overrides};
use std::process::ExitCode;

/// What `quiesce bench` runs at each size.
pub struct BenchPlan {
    pub plain: bool,
    pub stateright: bool,
    pub spin: bool,
    pub json: bool,
    pub kind: Option<Kind>,
    /// Runs of each checker at each size; the figures are the median run's.
    pub repeat: u32,
}

/// One checker's figures at one size.
#[derive(serde::Serialize)]
struct BenchRow {
    kind: &'static str,
    checker: &'static str,
    submitters: u8,
    bios: u8,
    controllers: u8,
    cycles: u8,
    failures: u8,
    unique_states: u64,
    /// The median of `runs`.
    seconds: f64,
    /// Each run's seconds (`--repeat`), in the order run.
    runs: Vec<f64>,
    states_per_second: f64,
    peak_rss_kib: u64,
    /// quiesce without symmetry: its states/s over SPIN's; with symmetry: SPIN's
    /// time over quiesce's (the speed-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_spin: Option<f64>,
    /// quiesce without symmetry: its peak memory over SPIN's.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_vs_spin: Option<f64>,
    /// With symmetry: the states it saved (states without symmetry over states with).
    #[serde(skip_serializing_if = "Option::is_none")]
    symmetry_factor: Option<f64>,
    /// With symmetry: SPIN at its best's time to a verdict over quiesce's.
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_spin_best: Option<f64>,
    /// With symmetry: its peak memory over SPIN at its best's.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_vs_spin_best: Option<f64>,
}

/// quiesce's figures for one run at one size, from a child `quiesce check --json`.
fn bench_quiesce(
    exe: &std::path::Path,
    spec: &std::path::Path,
    kind: Kind,
    (s, b, c, y, f): (u8, u8, u8, u8, u8),
    symmetry: bool,
    engine: &str,
) -> Result<(u64, f64, u64), ExitCode> {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("check")
        .arg("--engine")
        .arg(engine)
        .arg("--json")
        .arg(spec)
        .arg("--kind")
        .arg(kind.name());
    for (flag, v) in [
        ("--submitters", s),
        ("--bios", b),
        ("--controllers", c),
        ("--cycles", y),
        ("--failures", f),
    ] {
        cmd.arg(flag).arg(v.to_string());
    }
    if !symmetry {
        cmd.arg("--no-symmetry");
    }
    let out = cmd.output().map_err(|e| {
        eprintln!("error: cannot run {}: {e}", exe.display());
        ExitCode::from(2)
    })?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        eprintln!("error: {}", String::from_utf8_lossy(&out.stderr));
        ExitCode::from(2)
    })?;
    let k = &v["specs"][0]["kinds"][0];
    Ok((
        k["unique_states"].as_u64().unwrap_or(0),
        k["seconds"].as_f64().unwrap_or(0.0),
        v["peak_rss_kib"].as_u64().unwrap_or(0),
    ))
}

pub fn bench(
    spec: &std::path::Path,
    series: &[(u8, u8, u8, u8, u8)],
    plan: &BenchPlan,
) -> Result<ExitCode, ExitCode> {
    let parsed = load(spec)?;
    let exe = std::env::current_exe().map_err(|_| ExitCode::from(2))?;
    let kinds: Vec<Kind> = match plan.kind {
        Some(k) if parsed.kinds.contains(&k) => vec![k],
        Some(k) => {
            eprintln!("error: {} does not check kind `{k}`", spec.display());
            return Err(ExitCode::from(2));
        }
        None => parsed.kinds.clone(),
    };
    let mut rows: Vec<BenchRow> = Vec::new();
    let mut disagree = Vec::new();
    if !plan.json {
        println!("{}: {}", parsed.name, parsed.path.display());
        println!(
            "{:<8} {:<13} {:>2} {:>2} {:>2} {:>2} {:>2} {:>12} {:>9} {:>6} {:>11} {:>9}  vs SPIN",
            "kind",
            "checker",
            "S",
            "B",
            "C",
            "Y",
            "F",
            "states",
            "seconds",
            "spread",
            "states/s",
            "peak MiB"
        );
    }
    for &size in series {
        let (s, b, c, y, f) = size;
        for &kind in &kinds {
            let (here, found) = measure(&parsed, spec, &exe, kind, size, plan)?;
            disagree.extend(found);
            for r in &here {
                if !plan.json {
                    let vs = match (r.vs_spin, r.memory_vs_spin, r.symmetry_factor) {
                        (Some(v), Some(m), _) => format!("{v:.2}x the rate, {m:.2}x the memory"),
                        (Some(v), None, Some(sf)) => format!(
                            "{v:.2}x faster (symmetry saves {sf:.2}x); {:.2}x faster than \
                             spin-best to a verdict, {:.2}x its memory",
                            r.vs_spin_best.unwrap_or(0.0),
                            r.memory_vs_spin_best.unwrap_or(0.0)
                        ),
                        _ => String::new(),
                    };
                    println!(
                        "{:<8} {:<13} {:>2} {:>2} {:>2} {:>2} {:>2} {:>12} {:>9.2} {:>5.0}% {:>11.0} {:>9.1}  {vs}",
                        r.kind,
                        r.checker,
                        s, b, c, y, f,
                        r.unique_states,
                        r.seconds,
                        spread(&r.runs, r.seconds),
                        r.states_per_second,
                        r.peak_rss_kib as f64 / 1024.0
                    );
                }
            }
            rows.extend(here);
        }
    }
    if plan.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "machine": machine(),
                "rows": rows,
                "disagreements": disagree,
            }))
            .expect("rows serialise")
        );
    } else {
        println!("machine: {}", machine());
        if plan.repeat > 1 {
            println!(
                "each figure is the median of {} runs; spread: the runs' range over that median",
                plan.repeat
            );
        }
        if rows.iter().any(|r| r.checker == "spin-best") {
            println!(
                "spin-best: SPIN at its best on a rendering with one process per thread \
                 (partial-order reduction on, -DCOLLAPSE); its states may differ by design"
            );
        }
        if rows.iter().any(|r| r.checker.ends_with("(OOM)")) {
            println!(
                "spin (OOM): pan reached its memory cap (90% of RAM) and stopped; its states and \
                 time are how far it got, so the ratios beside it are lower bounds"
            );
        }
        for d in &disagree {
            println!("DISAGREE: {d}");
        }
    }
    Ok(if disagree.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The checkers' runs at one size, gathered round by round.
struct Timings {
    /// (checker, states, seconds, peak RSS in KiB) of each run.
    runs: Vec<(&'static str, u64, f64, u64)>,
}

impl Timings {
    /// The median run of `checker` (the slower middle one for an even count) and
    /// every run's seconds in the order run.
    fn median(&self, checker: &str) -> Option<(u64, f64, u64, Vec<f64>)> {
        let mut mine: Vec<_> = self.runs.iter().filter(|r| r.0 == checker).collect();
        let order: Vec<f64> = mine.iter().map(|r| r.2).collect();
        mine.sort_by(|a, b| a.2.total_cmp(&b.2));
        mine.get(mine.len() / 2).map(|r| (r.1, r.2, r.3, order))
    }
}

/// Measure one kind at one size: `plan.repeat` rounds, each running every
/// checker once in turn, so that a slow spell of the machine falls on all of
/// them alike. SPIN is compiled once. Returns the rows and any disagreement.
fn measure(
    parsed: &quiesce_model::spec::Spec,
    spec: &std::path::Path,
    exe: &std::path::Path,
    kind: Kind,
    size: (u8, u8, u8, u8, u8),
    plan: &BenchPlan,
) -> Result<(Vec<BenchRow>, Vec<String>), ExitCode> {
    use quiesce_codegen::promela::{compile_spin, render_as, Pan, Rendering, SpinOptions, SpinRun};
    let (s, b, c, y, f) = size;
    let mut t = Timings { runs: Vec::new() };
    let mut pans: Option<(Pan, Pan)> = None;
    let mut spin_last: Option<(SpinRun, SpinRun)> = None;
    for round in 0..plan.repeat.max(1) {
        let mut checkers = Vec::new();
        if plan.plain {
            checkers.push(("quiesce", false, "quiesce"));
        }
        if plan.stateright {
            checkers.push(("stateright", false, "stateright"));
        }
        checkers.push(("quiesce+sym", true, "quiesce"));
        for (name, symmetry, engine) in checkers {
            let (n, secs, peak) = bench_quiesce(exe, spec, kind, size, symmetry, engine)?;
            if let Some(first) = t.runs.iter().find(|r| r.0 == name && r.1 != n) {
                eprintln!(
                    "error: {} S{s} B{b} C{c} Y{y} F{f}: {name}'s runs found {} and {n} states",
                    kind.name(),
                    first.1
                );
                return Err(ExitCode::from(2));
            }
            t.runs.push((name, n, secs, peak));
        }
        if !plan.spin {
            continue;
        }
        if round == 0 {
            let bounds = parsed.bounds.with(&Overrides::size(size)).map_err(exit2)?;
            // A hash table with at least twice as many slots as quiesce's states (at
            // least SPIN's default), as a SPIN user sizes -w.
            let expect = t.runs.first().map_or(0, |r| r.1).max(1);
            let bits = (64 - expect.leading_zeros() + 1).clamp(24, 32);
            let opts = SpinOptions {
                hash_bits: Some(bits),
                ..SpinOptions::default()
            };
            let pml = render_as(parsed, kind, bounds, Rendering::StateForState).map_err(exit2)?;
            let exhaustive = compile_spin(&pml, &opts).map_err(exit2)?;
            // SPIN at its best: one process per thread, partial-order reduction,
            // compressed states. Its state count differs by design; its verdict
            // must not.
            let pml = render_as(parsed, kind, bounds, Rendering::PerThread).map_err(exit2)?;
            let best = compile_spin(&pml, &SpinOptions { best: true, ..opts }).map_err(exit2)?;
            pans = Some((exhaustive, best));
        }
        let (exhaustive, best) = pans.as_ref().expect("compiled in the first round");
        let run = exhaustive.run().map_err(exit2)?;
        let best = best.run().map_err(exit2)?;
        let spin = if run.complete { "spin" } else { "spin (OOM)" };
        t.runs
            .push((spin, run.states, run.seconds, run.peak_rss_kib));
        let name = if best.complete {
            "spin-best"
        } else {
            "spin-best (OOM)"
        };
        t.runs
            .push((name, best.states, best.seconds, best.peak_rss_kib));
        spin_last = Some((run, best));
    }

    let row = |checker: &'static str| {
        t.median(checker)
            .map(|(states, secs, peak, runs)| BenchRow {
                kind: kind.name(),
                checker,
                submitters: s,
                bios: b,
                controllers: c,
                cycles: y,
                failures: f,
                unique_states: states,
                seconds: secs,
                runs,
                states_per_second: states as f64 / secs.max(1e-6),
                peak_rss_kib: peak,
                vs_spin: None,
                memory_vs_spin: None,
                symmetry_factor: None,
                vs_spin_best: None,
                memory_vs_spin_best: None,
            })
    };
    let mut here: Vec<BenchRow> = ["quiesce", "stateright", "quiesce+sym"]
        .into_iter()
        .filter_map(row)
        .collect();
    let mut disagree = Vec::new();
    let Some((run, best)) = spin_last else {
        return Ok((here, disagree));
    };
    let sr = row(if run.complete { "spin" } else { "spin (OOM)" }).expect("SPIN ran");
    let br = row(if best.complete {
        "spin-best"
    } else {
        "spin-best (OOM)"
    })
    .expect("SPIN at its best ran");
    for r in &mut here {
        if r.checker == "quiesce" || r.checker == "stateright" {
            r.vs_spin = Some(r.states_per_second / sr.states_per_second.max(1e-9));
            r.memory_vs_spin = Some(r.peak_rss_kib as f64 / sr.peak_rss_kib.max(1) as f64);
            if run.complete && r.unique_states != run.states {
                disagree.push(format!(
                    "{} S{s} B{b} C{c} Y{y} F{f}: quiesce {} states, SPIN {}",
                    kind.name(),
                    r.unique_states,
                    run.states
                ));
            }
        } else {
            r.vs_spin = Some(sr.seconds / r.seconds.max(1e-6));
            r.symmetry_factor = Some(run.states as f64 / r.unique_states.max(1) as f64);
            r.vs_spin_best = Some(br.seconds / r.seconds.max(1e-6));
            r.memory_vs_spin_best = Some(r.peak_rss_kib as f64 / br.peak_rss_kib.max(1) as f64);
        }
    }
    if run.complete && best.complete && best.violated != run.violated {
        disagree.push(format!(
            "{} S{s} B{b} C{c} Y{y} F{f}: SPIN finds {:?} violated, SPIN at its best {:?}",
            kind.name(),
            run.violated,
            best.violated
        ));
    }
    here.push(sr);
    here.push(br);
    Ok((here, disagree))
}

/// The runs' range over their median, in percent (0 for one run).
fn spread(runs: &[f64], median: f64) -> f64 {
    let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = runs.iter().copied().fold(0.0, f64::max);
    if runs.len() < 2 {
        0.0
    } else {
        (hi - lo) / median.max(1e-6) * 100.0
    }
}

/// CPU model, cores and memory, for the figures' context.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = quiesce_codegen::promela::mem_total_kib()
        .map_or("?".into(), |k| format!("{:.0} GiB", k as f64 / 1048576.0));
    format!("{cpu}, {cores} cores, {mem}")
}
