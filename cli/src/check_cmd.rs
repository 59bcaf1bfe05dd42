//! `quiesce check`: check specs, print one line per spec and kind, then the counterexamples.

use crate::{BoundArgs, EngineArgs};
use quiesce_model::check::{
    check_spec_with, CheckOptions, Estimator, Progress, SpecReport, REPORT_SCHEMA,
};
use quiesce_model::spec::{Kind, Spec, SpecError};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Run `quiesce check`.
pub fn run(
    paths: Vec<PathBuf>,
    json: bool,
    no_symmetry: bool,
    quiet: bool,
    bounds: BoundArgs,
    engine: EngineArgs,
) -> Result<ExitCode, ExitCode> {
    // Parse every spec first. A bad file is reported and the good ones still run;
    // the exit code is then 2.
    let mut specs = Vec::new();
    let mut errors: Vec<SpecError> = Vec::new();
    for p in &paths {
        match Spec::load(p) {
            Ok(s) => specs.push(s),
            Err(e) => {
                eprintln!("error: {e}");
                errors.extend(e.0);
            }
        }
    }
    let opts = engine.apply(CheckOptions {
        overrides: bounds.overrides(),
        symmetry: !no_symmetry,
        kinds: bounds.kind.into_iter().collect(),
        ..CheckOptions::default()
    });
    // A bad override is bad input for every spec: say so once, before any work.
    if let Some(s) = specs.first() {
        s.bounds.with(&opts.overrides).map_err(crate::exit2)?;
    }
    let selected = |s: &Spec| -> Vec<Kind> {
        s.kinds
            .iter()
            .copied()
            .filter(|k| opts.kinds.is_empty() || opts.kinds.contains(k))
            .collect()
    };
    if !specs.is_empty() && specs.iter().all(|s| selected(s).is_empty()) {
        let k = bounds.kind.map_or(String::new(), |k| k.to_string());
        for s in &specs {
            eprintln!(
                "error: {}: --kind {k} selects nothing: the spec checks {} only",
                s.path.display(),
                kind_list(&s.kinds)
            );
        }
        return Err(ExitCode::from(2));
    }
    let mut notes: Vec<(String, Vec<String>)> = Vec::new();
    for s in &specs {
        let n = override_notes(s, &bounds);
        for line in &n {
            eprintln!("note: {}: {line}", s.path.display());
        }
        notes.push((s.path.display().to_string(), n));
    }

    // Ctrl-C ends quiesce's engine at its next batch; the partial result is
    // printed, marked incomplete. A second Ctrl-C exits at once.
    let _ = ctrlc::set_handler(|| {
        if quiesce_model::engine::STOP.swap(true, std::sync::atomic::Ordering::Relaxed) {
            std::process::exit(130);
        }
    });
    let table = Table::new(&specs, &opts);
    // A spinner on a terminal (never with --json); elsewhere a heartbeat line now
    // and then, so that a CI log shows a long check is alive.
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("template"));
        b
    });
    let heartbeat = heartbeat_interval();
    let mut reports = Vec::new();
    for spec in &specs {
        if selected(spec).is_empty() {
            let line = table.skipped(spec);
            match &bar {
                Some(b) => b.suspend(|| println!("{line}")),
                None if !json => println!("{line}"),
                None => {}
            }
            continue;
        }
        let mut last_beat = Instant::now();
        let mut estimator = (Kind::Request, Estimator::default());
        let mut on_progress = |kind: Kind, p: Progress| {
            if estimator.0 != kind {
                estimator = (kind, Estimator::default());
            }
            let guess = match estimator.1.update(&p) {
                Some(e) => format!(
                    "; estimate: about {} states in all, {:.0}s left",
                    e.total_states, e.seconds_left
                ),
                None if p.expanded.is_some() => {
                    "; no estimate yet (new states still come as fast as states are expanded)"
                        .into()
                }
                None => String::new(),
            };
            let msg = format!(
                "{} [{kind}]: {} states, {:.0} states/s, depth {}, {:.1}s{guess}",
                spec.name,
                p.states,
                p.states as f64 / p.seconds.max(1e-3),
                p.depth,
                p.seconds
            );
            match &bar {
                Some(b) => {
                    b.set_message(msg);
                    b.tick();
                }
                None if last_beat.elapsed() >= heartbeat => {
                    last_beat = Instant::now();
                    eprintln!("... still checking {msg}");
                }
                None => {}
            }
        };
        let r = check_spec_with(spec, &opts, &mut on_progress).map_err(|e| {
            eprintln!("error: {}: {e}", spec.path.display());
            ExitCode::from(2)
        })?;
        if !json {
            match &bar {
                Some(b) => b.suspend(|| table.print(&r)),
                None => table.print(&r),
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
        let specs: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("report serialises");
                let n = notes.iter().find(|(f, _)| *f == r.file).map(|(_, n)| n);
                v["notes"] = serde_json::json!(n.cloned().unwrap_or_default());
                v
            })
            .collect();
        let errors: Vec<serde_json::Value> = errors
            .iter()
            .map(|e| {
                // A whole-file error (unreadable, say) has no position: null, not 0:0.
                let pos = |n: usize| (n > 0).then_some(n);
                serde_json::json!({
                    "file": e.file, "line": pos(e.line), "col": pos(e.col), "message": e.msg,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "schema": REPORT_SCHEMA,
            "met": met && errors.is_empty(),
            "peak_rss_kib": peak_rss_kib(),
            "errors": errors,
            "specs": specs,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("report serialises")
        );
    }
    Ok(if !errors.is_empty() {
        ExitCode::from(2)
    } else if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `QUIESCE_HEARTBEAT_SECS` (default 60): how often a check without a terminal
/// prints that it is alive.
fn heartbeat_interval() -> Duration {
    let secs = std::env::var("QUIESCE_HEARTBEAT_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(60.0);
    Duration::from_secs_f64(secs.max(0.0))
}

fn kind_list(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Overrides that change nothing for this spec: they are not errors, but a user
/// who typed them expected an effect.
fn override_notes(spec: &Spec, bounds: &BoundArgs) -> Vec<String> {
    let o = bounds.overrides();
    let b = &spec.bounds;
    let mut notes = Vec::new();
    for (what, v) in o.named() {
        let Some(v) = v else { continue };
        let own = match what {
            "submitters" => b.submitters,
            "bios" => b.bios,
            "controllers" => b.controllers,
            "cycles" => b.cycles,
            _ => b.failures,
        };
        if what == "failures" && spec.protocol.inject.is_empty() && v > 0 {
            notes.push(format!(
                "--failures {v} changes nothing: the spec injects no failures ([failures] inject is empty)"
            ));
        } else if i64::from(own) == v {
            notes.push(format!(
                "--{what} {v} changes nothing: it is the spec's own value"
            ));
        }
    }
    notes
}

/// The summary table: columns sized to the names and bounds of this run, the
/// verdict last so that a long one does not push the others out of line.
struct Table {
    name: usize,
    bounds: usize,
}

impl Table {
    fn new(specs: &[Spec], opts: &CheckOptions) -> Table {
        let name = specs.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
        let bounds = specs
            .iter()
            .filter_map(|s| s.bounds.with(&opts.overrides).ok())
            .map(|b| b.short().len())
            .max()
            .unwrap_or(6)
            .max(6);
        Table { name, bounds }
    }

    fn print(&self, r: &SpecReport) {
        for k in &r.kinds {
            let verdict = if k.violated().is_empty() && k.incomplete.is_some() {
                "incomplete (no violation found so far)".to_string()
            } else if k.violated().is_empty() {
                "pass".to_string()
            } else {
                format!("violates {}", k.violated().join(", "))
            };
            println!(
                "{:<nw$}  {:<8}  {:<bw$}  {:>10} states {:>8.2}s  {:<11}  {}",
                r.name,
                k.kind.name(),
                k.bounds.short(),
                k.unique_states,
                k.seconds,
                if k.met { "as expected" } else { "UNEXPECTED" },
                verdict,
                nw = self.name,
                bw = self.bounds,
            );
            for m in &k.mismatch {
                println!("    {m}");
            }
        }
    }

    fn skipped(&self, s: &Spec) -> String {
        format!(
            "{:<nw$}  not checked: --kind selects nothing (the spec checks {} only)",
            s.name,
            kind_list(&s.kinds),
            nw = self.name
        )
    }
}

/// The counterexamples: a numbered trace per violated property, and why it fails.
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
                if p.loop_start == Some(s.step) {
                    println!(
                        "  --- from here, steps {}-{} repeat forever ---",
                        s.step,
                        t.len()
                    );
                }
                println!("  {:>3}. {}", s.step, s.action);
                println!("       {}", s.state);
            }
            if let Some(why) = &p.reason {
                println!("  why: {why}");
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
