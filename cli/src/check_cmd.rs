//! `quiesce check`: check specs, print one line per spec and kind, then the counterexamples.

use crate::{load, BoundArgs, EngineArgs};
use quiesce_model::check::{check_spec_with, CheckOptions, SpecReport};
use quiesce_model::spec::{Kind, Spec};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run `quiesce check`.
pub fn run(
    specs: Vec<PathBuf>,
    json: bool,
    no_symmetry: bool,
    quiet: bool,
    bounds: BoundArgs,
    engine: EngineArgs,
) -> Result<ExitCode, ExitCode> {
    // Parse every spec before checking any: bad input fails fast.
    let specs: Vec<Spec> = specs.iter().map(|p| load(p)).collect::<Result<_, _>>()?;
    let opts = engine.apply(CheckOptions {
        overrides: bounds.overrides(),
        symmetry: !no_symmetry,
        kinds: bounds.kind.into_iter().collect(),
        ..CheckOptions::default()
    });
    // Ctrl-C ends quiesce's engine at its next batch; the partial result is
    // printed, marked incomplete. A second Ctrl-C exits at once.
    let _ = ctrlc::set_handler(|| {
        if quiesce_model::engine::STOP.swap(true, std::sync::atomic::Ordering::Relaxed) {
            std::process::exit(130);
        }
    });
    let mut reports = Vec::new();
    // Progress on a terminal only, and never with --json.
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("template"));
        b
    });
    for spec in &specs {
        let mut on_progress = |kind: Kind, p: quiesce_model::check::Progress| {
            if let Some(b) = &bar {
                b.set_message(format!(
                    "{} [{kind}]: {} states, {:.0} states/s, depth {}, {:.1}s",
                    spec.name,
                    p.states,
                    p.states as f64 / p.seconds.max(1e-3),
                    p.depth,
                    p.seconds
                ));
                b.tick();
            }
        };
        let r = check_spec_with(spec, &opts, &mut on_progress).map_err(|e| {
            eprintln!("error: {}: {e}", spec.path.display());
            ExitCode::from(2)
        })?;
        if !json {
            match &bar {
                Some(b) => b.suspend(|| print_summary(&r)),
                None => print_summary(&r),
            }
        }
        reports.push(r);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if !json && !quiet {
        reports.iter().for_each(print_traces);
    }
    let met = reports.iter().all(|r| r.met);
    if json {
        let doc =
            serde_json::json!({ "met": met, "peak_rss_kib": peak_rss_kib(), "specs": reports });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("report serialises")
        );
    }
    Ok(if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One line per spec and kind.
fn print_summary(r: &SpecReport) {
    for k in &r.kinds {
        let verdict = if k.violated().is_empty() && k.incomplete.is_some() {
            "incomplete (no violation found so far)".to_string()
        } else if k.violated().is_empty() {
            "pass".to_string()
        } else {
            format!("violates {}", k.violated().join(", "))
        };
        println!(
            "{:<22} {:<8} {:<44} {:>9} states {:>7.2}s  {}",
            r.name,
            k.kind.name(),
            verdict,
            k.unique_states,
            k.seconds,
            if k.met { "as expected" } else { "UNEXPECTED" }
        );
        for m in &k.mismatch {
            println!("    {m}");
        }
    }
}

/// The counterexamples: a numbered trace per violated property.
fn print_traces(r: &SpecReport) {
    for k in &r.kinds {
        for p in k.properties.iter().filter(|p| p.trace.is_some()) {
            let t = p.trace.as_ref().expect("filtered");
            println!();
            println!(
                "{} [{}]: {} violated in {} steps:",
                r.name,
                k.kind.name(),
                p.name,
                t.len()
            );
            for s in t {
                println!("  {:>3}. {}", s.step, s.action);
                println!("       {}", s.state);
            }
            if let Some(path) = &p.explorer_path {
                println!(
                    "  explore: quiesce explore {} --kind {} --counterexample {}   (#/steps/{path})",
                    r.file,
                    k.kind.name(),
                    p.name
                );
            }
        }
    }
}

/// This process's peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
