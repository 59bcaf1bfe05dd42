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
    let expect = &spec.expect[&kind];
    let want: Vec<&str> = expect.violated().into_iter().collect();
    let mut mismatch: Vec<String> = Vec::new();
    if !run.complete {
        mismatch.push("the search is incomplete: pan reached its memory cap".into());
    }
    mismatch.extend(expect.mismatch(run.violated.iter().map(String::as_str)));
    if json {
        let mut v = serde_json::to_value(&run).expect("serialises");
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
