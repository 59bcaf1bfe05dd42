//! `quiesce explore`: serve the Stateright Explorer on one spec and kind.

use crate::{exit2, load, BoundArgs};
use quiesce_model::check::{explorer_path, shortest_counterexamples};
use quiesce_model::Quiesce;
use stateright::{Checker, Model};
use std::path::Path;
use std::process::ExitCode;

/// Run `quiesce explore`.
pub fn run(
    spec: &Path,
    addr: &str,
    counterexample: Option<String>,
    bounds: &BoundArgs,
) -> Result<ExitCode, ExitCode> {
    let spec = load(spec)?;
    let b = spec.bounds.with(&bounds.overrides()).map_err(exit2)?;
    let kind = bounds.kind.unwrap_or(spec.kinds[0]);
    if !spec.kinds.contains(&kind) {
        eprintln!(
            "error: {} does not check kind `{kind}`",
            spec.path.display()
        );
        return Err(ExitCode::from(2));
    }
    // Bind once ourselves so that a bad address is a clear error, not a panic.
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        eprintln!("error: cannot listen on {addr}: {e}");
        ExitCode::from(2)
    })?;
    let bound = listener.local_addr().map_err(|_| ExitCode::from(2))?;
    drop(listener);
    let model = Quiesce::new(spec.protocol.clone(), kind, b);
    let fragment = match &counterexample {
        None => String::new(),
        Some(name) => {
            let Some(prop) = quiesce_model::spec::SAFETY.iter().find(|p| *p == name) else {
                eprintln!(
                    "error: unknown property `{name}`; safety properties: {}",
                    quiesce_model::spec::SAFETY.join(", ")
                );
                return Err(ExitCode::from(2));
            };
            let found =
                shortest_counterexamples(&model, &std::collections::BTreeSet::from([*prop]));
            match found.get(prop) {
                Some(steps) => format!("#/steps/{}", explorer_path(&model, steps)),
                None => {
                    eprintln!(
                        "error: {} [{kind}] satisfies {prop}: there is no counterexample",
                        spec.name
                    );
                    return Err(ExitCode::from(1));
                }
            }
        }
    };
    // Announce the address once the server really accepts connections, and start
    // the search so that the property panel fills in.
    let name = spec.name.clone();
    std::thread::spawn(move || {
        for _ in 0..600 {
            if let Ok(mut c) = std::net::TcpStream::connect(bound) {
                use std::io::Write;
                let _ =
                    c.write_all(b"POST /.runtocompletion HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
                eprintln!("Explorer for {name} [{kind}] at http://{bound}/{fragment}");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!("error: the Explorer did not start listening on {bound}");
    });
    let checker = model.checker().threads(1).serve(bound);
    let _ = checker.unique_state_count();
    Ok(ExitCode::SUCCESS)
}
