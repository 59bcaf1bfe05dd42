//! `quiesce gen`: render a spec that passed into the no_std crate and the kernel
//! patch with the C hook's route, or check either for drift.

use crate::load;
use std::process::ExitCode;

pub fn run(
    spec: &std::path::Path,
    out: &std::path::Path,
    patches: &std::path::Path,
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
    // Render everything before writing anything: a refusal leaves no file changed.
    let files = cg::render(&spec, &report).map_err(fail)?;
    let patch = vec![(
        std::path::PathBuf::from(cg::chook::PATCH_NAME),
        cg::chook::render_patch(&spec, &report).map_err(fail)?,
    )];
    let outputs = [(out, &files), (patches, &patch)];
    if check {
        let mut stale = false;
        for (dir, f) in outputs {
            let diffs = cg::drift(dir, f);
            for d in &diffs {
                print!("{d}");
            }
            if diffs.is_empty() {
                println!(
                    "{} is up to date with {}",
                    f.iter()
                        .map(|(p, _)| dir.join(p).display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    spec.path.display()
                );
            } else {
                stale = true;
                eprintln!(
                    "error: {} differs from what {} renders; run `quiesce gen {}`",
                    dir.display(),
                    spec.path.display(),
                    spec.path.display()
                );
            }
        }
        return Ok(if stale {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    for (dir, f) in outputs {
        cg::write(dir, f).map_err(fail)?;
        println!("wrote {} files to {}", f.len(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
