//! `quiesce promela`: render one spec, kind and bounds as Promela; optionally run SPIN.

use crate::{exit2, load, BoundArgs};
use std::process::ExitCode;

pub fn run(
    path: &std::path::Path,
    out: Option<&std::path::Path>,
    spin: bool,
    json: bool,
    bounds: &BoundArgs,
) -> Result<ExitCode, ExitCode> {
    let spec = load(path)?;
    let kind = match bounds.kind {
        Some(k) if spec.kinds.contains(&k) => k,
        Some(k) => {
            eprintln!("error: {} does not check kind `{k}`", path.display());
            return Err(ExitCode::from(2));
        }
        None if spec.kinds.len() == 1 => spec.kinds[0],
        None => {
            eprintln!(
                "error: {} checks {} kinds; choose one with --kind",
                path.display(),
                spec.kinds.len()
            );
            return Err(ExitCode::from(2));
        }
    };
    let b = spec.bounds.with(&bounds.overrides()).map_err(exit2)?;
    let pml = quiesce_codegen::promela::render(&spec, kind, b).map_err(exit2)?;
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
    };
    let run = quiesce_codegen::promela::run_spin(&pml, &opts).map_err(exit2)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&run).expect("serialises")
        );
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
                format!("violates {}", run.violated.join(", "))
            }
        );
    }
    Ok(if !run.violated.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
