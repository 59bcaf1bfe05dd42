//! `quiesce replay`: check a kernel trace against the model of a spec.

use crate::{exit2, load, one_kind};
use quiesce_model::replay::{self, Dev, ReplayOptions, Trace};
use quiesce_model::spec::Kind;
use std::path::Path;
use std::process::ExitCode;

pub struct Args<'a> {
    pub spec: &'a Path,
    pub trace: &'a Path,
    pub kind: Option<Kind>,
    pub dev: Option<&'a str>,
    pub disk: Option<&'a str>,
    pub window: usize,
    pub partial: bool,
    pub json: bool,
}

pub fn run(a: Args) -> Result<ExitCode, ExitCode> {
    let spec = load(a.spec)?;
    let kind = one_kind(&spec, a.kind)?;
    let dev = a.dev.map(|d| parse_dev("--dev", d)).transpose()?;
    let disk = a.disk.map(|d| parse_dev("--disk", d)).transpose()?;
    let text = std::fs::read_to_string(a.trace)
        .map_err(|e| exit2(format!("{}: {e}", a.trace.display())))?;
    let trace = Trace::parse(text).map_err(|e| exit2(format!("{}: {e}", a.trace.display())))?;
    let opts = ReplayOptions {
        dev,
        disk,
        window: a.window,
        partial: a.partial,
    };
    let r = replay::replay(&spec, kind, &trace, &opts)
        .map_err(|e| exit2(format!("{}: {e}", a.trace.display())))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(exit2)?);
    } else {
        println!(
            "{}: {} events of {} ({} bios in {} model bios, {} attached, {} redirected) in {:.3} s ({:.2} M events/s){}",
            a.trace.display(),
            r.events,
            r.dev,
            r.bios,
            r.slots,
            r.attached,
            r.redirected,
            r.seconds,
            r.events_per_second / 1e6,
            if r.reordered > 0 {
                format!("; {} places reordered", r.reordered)
            } else {
                String::new()
            }
        );
        match &r.divergence {
            None => println!(
                "replay: ok: every event is a step of {} ({})",
                spec.name, r.kind
            ),
            Some(d) => {
                println!("replay: DIVERGES at line {}: {}", d.line, d.event);
                println!("  {}: {}", d.thread, d.why);
                if !d.state.is_empty() {
                    println!("  model state: {}", d.state);
                }
                if d.allowed.is_empty() {
                    println!("  the model allows that thread nothing here");
                } else {
                    println!("  the model allows that thread: {}", d.allowed.join("; "));
                }
            }
        }
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_dev(flag: &str, d: &str) -> Result<Dev, ExitCode> {
    Dev::parse(d).ok_or_else(|| {
        exit2(format!(
            "{flag} {d}: not MAJOR:MINOR (as /sys/block/*/dev has it)"
        ))
    })
}
