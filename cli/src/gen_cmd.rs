//! `quiesce gen`: render a spec that passed into the no_std crate, or check for drift.

use crate::load;
use std::process::ExitCode;

pub fn run(
    spec: &std::path::Path,
    out: &std::path::Path,
    report: Option<&std::path::Path>,
    check: bool,
) -> Result<ExitCode, ExitCode> {
    use quiesce_codegen as cg;
    let spec = load(spec)?;
    let fail = |e: cg::GenError| {
        eprintln!("error: {e}");
        match e {
            cg::GenError::Refused(_) => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    };
    let report = match report {
        Some(r) => cg::read_report(r, &spec).map_err(fail)?,
        None => {
            eprintln!("checking {} ...", spec.path.display());
            cg::check(&spec).map_err(fail)?
        }
    };
    let files = cg::render(&spec, &report).map_err(fail)?;
    if check {
        let diffs = cg::drift(out, &files);
        if diffs.is_empty() {
            println!(
                "{} is up to date with {}",
                out.display(),
                spec.path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        for d in &diffs {
            print!("{d}");
        }
        eprintln!(
            "error: {} differs from what {} renders; run `quiesce gen {}`",
            out.display(),
            spec.path.display(),
            spec.path.display()
        );
        return Ok(ExitCode::from(1));
    }
    cg::write(out, &files).map_err(fail)?;
    println!("wrote {} files to {}", files.len(), out.display());
    Ok(ExitCode::SUCCESS)
}
