//! `quiesce`: check protocol specs, browse them in the Stateright Explorer.

mod bench;
mod check_cmd;
mod explore;
mod gate;
mod gen_cmd;
mod promela_cmd;
mod replay_cmd;

use clap::{Args, Parser, Subcommand};
use quiesce_model::check::CheckOptions;
use quiesce_model::check::Engine;
use quiesce_model::spec::{Kind, Overrides, Spec};
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
    #[arg(long, allow_negative_numbers = true)]
    submitters: Option<i64>,
    /// Override the bios each submitter sends.
    #[arg(long, allow_negative_numbers = true)]
    bios: Option<i64>,
    /// Override the number of controller threads.
    #[arg(long, allow_negative_numbers = true)]
    controllers: Option<i64>,
    /// Override attach/detach cycles per controller.
    #[arg(long, allow_negative_numbers = true)]
    cycles: Option<i64>,
    /// Override the number of injected failures.
    #[arg(long, allow_negative_numbers = true)]
    failures: Option<i64>,
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
    /// Search the whole state graph for fair cycles (liveness: every bio
    /// completes, every call returns) even when no run can loop; by default
    /// the search runs only for a spec with a restarting step, a hot path that
    /// restarts its pass, or a backward jump (otherwise every run is finite).
    #[arg(long, conflicts_with = "no_liveness")]
    liveness: bool,
    /// Leave out the liveness search.
    #[arg(long)]
    no_liveness: bool,
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
            liveness: match (self.liveness, self.no_liveness) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => opts.liveness,
            },
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
    Kind::by_name(s).ok_or_else(|| format!("unknown kind `{s}`: use request, bio or bio_sync"))
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
        /// The spec to scale [default: model/specs/04-converged.toml, the review's protocol].
        spec: Option<PathBuf>,
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
        /// Run each checker this many times at each size and report the median run
        /// (runs under a second vary by a third on a small machine).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: u32,
    },
    /// The mutation gate: each mutant of the kernel side is checked by the model and
    /// booted in the kernel as a test-only module build; fails (exit 1) when a mutant
    /// the model condemns survives every kernel check.
    Mutants {
        /// The kernel spec the module runs [default: model/specs/15-filter-module.toml].
        #[arg(long)]
        spec: Option<PathBuf>,
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
        /// The spec to render (it must pass `quiesce check`).
        spec: PathBuf,
        /// Where the crate goes [default: generated].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the kernel patch with the C hook's route goes [default: kmod/patches/,
        /// or the --out folder when --out is given].
        #[arg(long)]
        patch_dir: Option<PathBuf>,
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
        /// The spec to render (flawed specs too: SPIN has to find their violations).
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
        /// With --spin: run SPIN in this directory and keep its files there, with
        /// the first error's trail (`model.pml.trail`; replay it with
        /// `cd DIR && spin -t -p model.pml`).
        #[arg(long, requires = "spin")]
        keep: Option<PathBuf>,
        /// Render one process per thread instead (state counts then differ), and
        /// with --spin run SPIN at its best on it: partial-order reduction on,
        /// states compressed (-DCOLLAPSE).
        #[arg(long)]
        per_thread: bool,
        #[command(flatten)]
        bounds: BoundArgs,
    },
    /// Replay a kernel trace (the blk_interposer trace events, as the ftrace
    /// `trace` file has them) in the model of a spec: every event must be a step
    /// the model can take, and every property must hold. Exit 1 at the first
    /// event it cannot take (with the model state and what it allows there).
    Replay {
        /// The spec the kernel ran (the module's: model/specs/15-filter-module.toml).
        spec: PathBuf,
        /// The trace file.
        trace: PathBuf,
        /// The kind of the traced original (request, bio or bio_sync).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<Kind>,
        /// The traced original, as MAJOR:MINOR (needed when the trace has events of
        /// more than one device).
        #[arg(long)]
        dev: Option<String>,
        /// The disk of a traced partition, as MAJOR:MINOR: the partition's queue
        /// is its disk's, whose freeze events carry the disk's number.
        #[arg(long, requires = "dev")]
        disk: Option<String>,
        /// How many places an event may move earlier than the trace has it (two
        /// tasks' events race to the ring buffer).
        #[arg(long, default_value_t = 24)]
        window: usize,
        /// The trace stops where the run died (the kernel's dump of its trace
        /// buffer at a panic, `ftrace_dump_on_oops`): bios still in flight at its
        /// end are not a divergence.
        #[arg(long)]
        partial: bool,
        /// Print the report as JSON (see docs/replay.md).
        #[arg(long)]
        json: bool,
    },
    /// Serve the Stateright Explorer on one spec.
    Explore {
        /// The spec to explore.
        spec: PathBuf,
        /// The address to serve the Explorer on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
        /// Print the link that opens this violated property's shortest counterexample.
        #[arg(long)]
        counterexample: Option<String>,
        #[command(flatten)]
        bounds: BoundArgs,
    },
}

/// The kernel spec: the protocol the module runs (`mutants` uses it when none is named).
const KERNEL_SPEC: &str = "model/specs/15-filter-module.toml";
/// The spec `bench` scales when none is named: the review's converged protocol.
const BENCH_SPEC: &str = "model/specs/04-converged.toml";

/// The named spec, or the default one; a missing default is said to be the default.
fn default_spec(spec: Option<PathBuf>, default: &str) -> Result<PathBuf, ExitCode> {
    match spec {
        Some(p) => Ok(p),
        None if std::path::Path::new(default).exists() => Ok(default.into()),
        None => {
            eprintln!(
                "error: no spec given, and the default {default} does not exist here \
                 (run from the repository's top, or name a spec)"
            );
            Err(ExitCode::from(2))
        }
    }
}

fn load(path: &std::path::Path) -> Result<Spec, ExitCode> {
    Spec::load(path).map_err(exit2)
}

/// The one kind a command works on: `--kind`, or the spec's only kind. A spec that
/// checks two kinds needs `--kind` (never a silent pick); a kind it does not check
/// is bad input.
fn one_kind(spec: &Spec, kind: Option<Kind>) -> Result<Kind, ExitCode> {
    match kind {
        Some(k) if spec.kinds.contains(&k) => Ok(k),
        Some(k) => {
            eprintln!("error: {} does not check kind `{k}`", spec.path.display());
            Err(ExitCode::from(2))
        }
        None if spec.kinds.len() == 1 => Ok(spec.kinds[0]),
        None => {
            let names: Vec<&str> = spec.kinds.iter().map(|k| k.name()).collect();
            eprintln!(
                "error: {} checks kinds {}; choose one with --kind",
                spec.path.display(),
                names.join(" and ")
            );
            Err(ExitCode::from(2))
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
        } => check_cmd::run(specs, json, no_symmetry, quiet, bounds, engine),
        Cmd::Mutants {
            spec,
            list,
            only,
            model_only,
            json,
        } => {
            let spec = default_spec(spec, KERNEL_SPEC)?;
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
        Cmd::Replay {
            spec,
            trace,
            kind,
            dev,
            disk,
            window,
            partial,
            json,
        } => replay_cmd::run(replay_cmd::Args {
            spec: &spec,
            trace: &trace,
            kind,
            dev: dev.as_deref(),
            disk: disk.as_deref(),
            window,
            partial,
            json,
        }),
        Cmd::Gen {
            spec,
            out,
            patch_dir,
            report,
            check,
        } => {
            let patches = patch_dir.unwrap_or_else(|| match &out {
                Some(o) => o.clone(),
                None => "kmod/patches".into(),
            });
            let out = out.unwrap_or_else(|| "generated".into());
            gen_cmd::run(&spec, &out, &patches, report.as_deref(), check)
        }
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
            repeat,
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
                repeat,
            };
            bench::bench(&default_spec(spec, BENCH_SPEC)?, &series, &plan)
        }
        Cmd::Promela {
            spec,
            out,
            spin,
            json,
            keep,
            per_thread,
            bounds,
        } => promela_cmd::run(&spec, out.as_deref(), spin, json, keep, per_thread, &bounds),
        Cmd::Explore {
            spec,
            addr,
            counterexample,
            bounds,
        } => explore::run(&spec, &addr, counterexample, &bounds),
    }
}

/// Report a bad input or a failed tool, and exit 2.
fn exit2(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand and every argument says what it is for in `--help`.
    #[test]
    fn every_subcommand_and_argument_has_help() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(sub.get_name().to_string());
            }
            for arg in sub.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
