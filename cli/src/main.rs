//! `quiesce`: check protocol specs, browse them in the Stateright Explorer.

mod bench;
mod gate;

use clap::{Args, Parser, Subcommand};
use quiesce_model::check::Engine;
use quiesce_model::check::{
    check_spec_with, explorer_path, shortest_counterexamples, CheckOptions, SpecReport,
};
use quiesce_model::spec::{Kind, Overrides, Spec};
use quiesce_model::Quiesce;
use stateright::{Checker, Model};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "quiesce",
    version,
    about = "Prove block-device interposer protocols right, then run them"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct BoundArgs {
    /// Override the number of submitter threads.
    #[arg(long)]
    submitters: Option<u8>,
    /// Override the bios each submitter sends.
    #[arg(long)]
    bios: Option<u8>,
    /// Override the number of controller threads.
    #[arg(long)]
    controllers: Option<u8>,
    /// Override attach/detach cycles per controller.
    #[arg(long)]
    cycles: Option<u8>,
    /// Override the number of injected failures.
    #[arg(long)]
    failures: Option<u8>,
    /// Check only this kind of original (request or bio).
    #[arg(long, value_parser = parse_kind)]
    kind: Option<Kind>,
}

#[derive(Args, Clone)]
struct EngineArgs {
    /// The search engine: quiesce's own, or Stateright's checker.
    #[arg(long, value_enum, default_value = "quiesce")]
    engine: EngineName,
    /// quiesce's engine: end the search (marked incomplete) past this many MiB
    /// (default: three quarters of the machine's memory).
    #[arg(long, value_name = "MIB")]
    mem_limit: Option<usize>,
    /// quiesce's engine: preallocate the visited set (8 bytes a state slot) for
    /// this many MiB, for a run whose size is known (default: grow from 8 MiB).
    #[arg(long, value_name = "MIB")]
    table_mib: Option<usize>,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum EngineName {
    Quiesce,
    Stateright,
}

impl EngineArgs {
    fn apply(&self, opts: CheckOptions) -> CheckOptions {
        CheckOptions {
            engine: match self.engine {
                EngineName::Quiesce => Engine::Quiesce,
                EngineName::Stateright => Engine::Stateright,
            },
            mem_limit: self.mem_limit.map_or(opts.mem_limit, |m| m << 20),
            table_bytes: self.table_mib.map_or(opts.table_bytes, |m| m << 20),
            ..opts
        }
    }
}

impl BoundArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            submitters: self.submitters,
            bios: self.bios,
            controllers: self.controllers,
            cycles: self.cycles,
            failures: self.failures,
        }
    }
}

fn parse_size(s: &str) -> Result<(u8, u8, u8, u8, u8), String> {
    let v: Vec<u8> = s
        .split(',')
        .map(|x| x.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad size `{s}`: want five numbers, e.g. 3,3,2,2,2"))?;
    match v[..] {
        [a, b, c, d, e] => Ok((a, b, c, d, e)),
        _ => Err(format!(
            "bad size `{s}`: want SUBMITTERS,BIOS,CONTROLLERS,CYCLES,FAILURES"
        )),
    }
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    match s {
        "request" => Ok(Kind::Request),
        "bio" => Ok(Kind::Bio),
        _ => Err(format!("unknown kind `{s}`: use request or bio")),
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Check specs: exit 0 when every spec meets its expectation, 1 when one does not, 2 on bad input.
    Check {
        /// Spec files (TOML).
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Write a machine-readable report to stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Turn off symmetry reduction (plain BFS over every state).
        #[arg(long)]
        no_symmetry: bool,
        /// Print only the summary lines, not the counterexamples.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        bounds: BoundArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Benchmark the checker on a scaling series of bounds: unique states, states per
    /// second and peak memory for each size (each size runs in its own process);
    /// with --spin, side by side with SPIN on the same protocol.
    Bench {
        /// The spec to scale (default: the converged protocol).
        #[arg(default_value = "model/specs/04-converged.toml")]
        spec: PathBuf,
        /// Also run each size without symmetry reduction.
        #[arg(long)]
        no_symmetry: bool,
        /// Also run SPIN's exhaustive safety search (-DSAFETY -DNOREDUCE) on the
        /// Promela rendering of each size; implies --no-symmetry, for the comparison.
        #[arg(long)]
        spin: bool,
        /// With --spin: leave out quiesce without symmetry (for sizes too big for it).
        #[arg(long)]
        skip_plain: bool,
        /// Also run Stateright's own checker (DFS, no symmetry) at each size.
        #[arg(long)]
        stateright: bool,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        /// Stop the series at this many sizes.
        #[arg(long, default_value_t = 6)]
        sizes: usize,
        /// Run these sizes instead of the series: SUBMITTERS,BIOS,CONTROLLERS,CYCLES,FAILURES.
        #[arg(long = "size", value_parser = parse_size)]
        size: Vec<(u8, u8, u8, u8, u8)>,
        /// Only this kind of original.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<Kind>,
    },
    /// The mutation gate: each mutant of the kernel side is checked by the model and
    /// booted in the kernel as a test-only module build; fails (exit 1) when a mutant
    /// the model condemns survives every kernel check.
    Mutants {
        /// The kernel spec the module runs.
        #[arg(long, default_value = "model/specs/04-converged.toml")]
        spec: PathBuf,
        /// The mutants beyond one per primitive of attach and detach.
        #[arg(long, default_value = "kmod/mutants.toml")]
        list: PathBuf,
        /// Only these mutants (e.g. skip:detach:dm_suspend); repeatable.
        #[arg(long)]
        only: Vec<String>,
        /// Run the model side only (no kernel boots).
        #[arg(long)]
        model_only: bool,
        /// Print the rows as JSON (see cli/README or `gate::Row`).
        #[arg(long)]
        json: bool,
    },
    /// Render a spec that passed the checker into the no_std crate in generated/.
    Gen {
        spec: PathBuf,
        /// Where the crate goes.
        #[arg(long, default_value = "generated")]
        out: PathBuf,
        /// Use this `quiesce check --json` report instead of running the checker.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Do not write: fail with a diff when `--out` differs from what the spec renders.
        #[arg(long)]
        check: bool,
    },
    /// Render one spec, kind and bounds as a Promela model for SPIN (the same
    /// protocol, state for state), and optionally run SPIN on it.
    Promela {
        spec: PathBuf,
        /// Write the model here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run SPIN's exhaustive safety search on it and print its figures.
        #[arg(long)]
        spin: bool,
        /// With --spin: print SPIN's figures as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        bounds: BoundArgs,
    },
    /// Serve the Stateright Explorer on one spec.
    Explore {
        spec: PathBuf,
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
        /// Print the link that opens this violated property's shortest counterexample.
        #[arg(long)]
        counterexample: Option<String>,
        #[command(flatten)]
        bounds: BoundArgs,
    },
}

fn load(path: &std::path::Path) -> Result<Spec, ExitCode> {
    Spec::load(path).map_err(exit2)
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

fn run() -> Result<ExitCode, ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check {
            specs,
            json,
            no_symmetry,
            quiet,
            bounds,
            engine,
        } => {
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
                b.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("template"),
                );
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
                let doc = serde_json::json!({ "met": met, "peak_rss_kib": peak_rss_kib(), "specs": reports });
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
        Cmd::Mutants {
            spec,
            list,
            only,
            model_only,
            json,
        } => {
            let root = std::env::current_dir().map_err(exit2)?;
            let rows = gate::run(&root, &spec, &list, &only, model_only).map_err(exit2)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows).map_err(exit2)?);
            } else {
                gate::print(&rows);
            }
            let survived = rows.iter().any(|r| r.verdict == "survived");
            Ok(if survived {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Gen {
            spec,
            out,
            report,
            check,
        } => gen(&spec, &out, report.as_deref(), check),
        Cmd::Bench {
            spec,
            no_symmetry,
            spin,
            skip_plain,
            stateright,
            json,
            sizes,
            size,
            kind,
        } => {
            let series: Vec<_> = if size.is_empty() {
                quiesce_model::check::SERIES
                    .iter()
                    .copied()
                    .take(sizes)
                    .collect()
            } else {
                size
            };
            let plan = bench::BenchPlan {
                plain: (no_symmetry || spin) && !skip_plain,
                stateright,
                spin,
                json,
                kind,
            };
            bench::bench(&spec, &series, &plan)
        }
        Cmd::Promela {
            spec,
            out,
            spin,
            json,
            bounds,
        } => promela(&spec, out.as_deref(), spin, json, &bounds),
        Cmd::Explore {
            spec,
            addr,
            counterexample,
            bounds,
        } => {
            let spec = load(&spec)?;
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
            let listener = std::net::TcpListener::bind(&addr).map_err(|e| {
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
                    let found = shortest_counterexamples(
                        &model,
                        &std::collections::BTreeSet::from([*prop]),
                    );
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
                        let _ = c.write_all(
                            b"POST /.runtocompletion HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
                        );
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
    }
}

fn gen(
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

fn promela(
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

/// Report a bad input or a failed tool, and exit 2.
fn exit2(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// This process's peak resident set size (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`quiesce check ... | head`), as Unix tools do.
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any
    // other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run() {
        Ok(c) | Err(c) => c,
    }
}
