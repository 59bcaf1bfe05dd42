//! `quiesce promela`: render one spec, kind and bounds as Promela; optionally run SPIN.

use crate::{exit2, load, BoundArgs};
use std::process::ExitCode;

pub fn run(
    path: &std::path::Path,
    out: Option<&std::path::Path>,
    spin: bool,
    json: bool,
    keep: Option<std::path::PathBuf>,
    per_thread: bool,
    bounds: &BoundArgs,
) -> Result<ExitCode, ExitCode> {
    let spec = load(path)?;
    let kind = crate::one_kind(&spec, bounds.kind)?;
    let b = spec.bounds.with(&bounds.overrides()).map_err(exit2)?;
    use quiesce_codegen::promela::{render_as, Rendering};
    let rendering = if per_thread {
        Rendering::PerThread
    } else {
        Rendering::StateForState
    };
    let pml = render_as(&spec, kind, b, rendering).map_err(exit2)?;
    match out {
        Some(o) => std::fs::write(o, &pml).map_err(|e| {
            eprintln!("error: {}: {e}", o.display());
            ExitCode::from(2)
        })?,
        None if !spin => print!("{pml}"),
        None => {}
    }
    if !spin {
        return Ok(ExitCode::SUCCESS);
    }
    let opts = quiesce_codegen::promela::SpinOptions {
        hash_bits: None,
        quick_compile: false,
        keep,
        best: per_thread,
    };
    let run = quiesce_codegen::promela::run_spin(&pml, &opts).map_err(exit2)?;
    // The same contract as `check`: exit 0 when SPIN's verdict is the one the spec
    // declares for this kind (SPIN sees the safety properties only), 1 when not.
    // Liveness is the model's own search (`quiesce check`): SPIN's safety run
    // neither finds nor refutes it, so it is left out of the comparison.
    let expect = &spec.expect[&kind];
    let live = quiesce_model::spec::LIVENESS;
    let want: Vec<&str> = expect
        .violated()
        .into_iter()
        .filter(|n| !live.contains(n))
        .collect();
    let mut mismatch: Vec<String> = Vec::new();
    if !run.complete {
        mismatch.push("the search is incomplete: pan reached its memory cap".into());
    }
    for n in run.violated.iter().filter(|n| !want.contains(&n.as_str())) {
        mismatch.push(format!("{n} is violated but expected to hold"));
    }
    for n in want
        .iter()
        .filter(|n| !run.violated.iter().any(|v| v == *n))
    {
        mismatch.push(format!("{n} holds but was expected to be violated"));
    }
    // A spec that restarts a call has cycles: SPIN searches them for fair
    // acceptance cycles too, on the per-thread rendering (its processes are the
    // threads that weak fairness is about).
    let mut lives = Vec::new();
    if spec.protocol.may_loop() {
        let threads = render_as(&spec, kind, b, Rendering::PerThread).map_err(exit2)?;
        for prop in live {
            let claim = quiesce_codegen::promela::liveness_claim(prop, b).map_err(exit2)?;
            let l = quiesce_codegen::promela::run_spin_liveness(&threads, &claim, prop, true)
                .map_err(exit2)?;
            let expected = expect.violated().contains(&prop);
            if l.violated != expected {
                mismatch.push(if l.violated {
                    format!("{prop} is violated (a fair acceptance cycle) but expected to hold")
                } else {
                    format!(
                        "{prop} holds (no fair acceptance cycle) but was expected to be violated"
                    )
                });
            }
            lives.push(l);
        }
    }
    if json {
        let mut v = serde_json::to_value(&run).expect("serialises");
        v["liveness"] = serde_json::json!(lives);
        v["expected"] = serde_json::json!(want);
        v["met"] = serde_json::json!(mismatch.is_empty());
        v["mismatch"] = serde_json::json!(mismatch);
        println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
    } else {
        println!(
            "spin: {} states{}, {} transitions, depth {}, {:.2}s, peak {:.1} MiB, {}",
            run.states,
            if run.complete {
                ""
            } else {
                " (incomplete: pan reached its memory cap)"
            },
            run.transitions,
            run.depth,
            run.seconds,
            run.peak_rss_kib as f64 / 1024.0,
            if run.violated.is_empty() {
                "no errors".to_string()
            } else {
                format!(
                    "{} errors: violates {}",
                    run.errors,
                    run.violated.join(", ")
                )
            }
        );
        for l in &lives {
            println!(
                "spin liveness (pan -a -f): {} {}, {} states, {:.2}s",
                l.property,
                if l.violated {
                    "violated: a fair acceptance cycle"
                } else {
                    "holds"
                },
                l.states,
                l.seconds
            );
        }
        match &mismatch[..] {
            [] => println!("spin: as expected"),
            m => println!("spin: NOT as expected: {}", m.join("; ")),
        }
        if let Some(t) = &run.trail {
            let dir = t.parent().unwrap_or(t);
            println!(
                "spin: trail of the first error: {} (replay: cd {} && spin -t -p model.pml)",
                t.display(),
                dir.display()
            );
        }
    }
    Ok(if mismatch.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
