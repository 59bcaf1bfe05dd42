//! `quiesce mutants`: the mutation gate. Each mutant of the kernel side is made
//! twice: to the spec (checked by the model) and to the module (built as a
//! test-only variant and booted under qemu). A mutant the model condemns must be
//! caught by a named kernel check; the gate fails when one survives.

use quiesce_model::check::{check_kind, CheckOptions};
use quiesce_model::mutate::{apply, replace_hot_path, skip_mutants, Mutant, Proc};
use quiesce_model::spec::Spec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// `kmod/mutants.toml`: the mutants beyond one `skip` per primitive of attach and detach.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    mutant: Vec<Extra>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    /// A module mutant (`QUIESCE_MUTANT`), `hot_path:NAME` for a mutant of the C hook,
    /// or `c:NAME` for a mutant of the kernel's C outside the model.
    kernel: String,
    what: String,
    /// For `hot_path:NAME` and `c:NAME`: the patch on top of kmod/patches that makes
    /// it in C ...
    patch: Option<PathBuf>,
    /// ... and the spec's hot path that says the same.
    hot_path: Option<toml::Value>,
    /// The boot test's phase to run first, the one that should catch it
    /// (`QUIESCE_FIRST`; test/init names the phases): it saves the boot the
    /// phases before it, and the whole test still runs after it.
    first: Option<String>,
}

/// One mutant of the gate: of the module, or of the C hook.
enum Target {
    Module(Mutant),
    Hook {
        name: String,
        patch: PathBuf,
        hot_path: toml::Value,
    },
    /// A change to the kernel's C that the model does not describe (its spec is
    /// unchanged, so the model calls it harmless): kernel-only by construction.
    C {
        name: String,
        patch: PathBuf,
    },
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Module(m) => m.to_string(),
            Target::Hook { name, .. } | Target::C { name, .. } => name.clone(),
        }
    }

    fn spec_text(&self, text: &str) -> Result<String, String> {
        match self {
            Target::Module(m) => apply(text, m),
            Target::Hook { hot_path, .. } => replace_hot_path(text, hot_path),
            Target::C { .. } => Ok(text.to_string()),
        }
    }
}

/// One row of the gate's report (`--json` prints a list of these).
#[derive(Serialize)]
pub struct Row {
    /// The mutant, as the module is built with it (`QUIESCE_MUTANT`).
    pub mutant: String,
    pub what: String,
    /// The model's verdict on the mutated spec.
    pub model: ModelVerdict,
    /// The kernel's checks that fired; `None` when the kernel was not run.
    pub kernel: Option<KernelRun>,
    /// `caught`, `survived`, `harmless` (the model proves it safe and no kernel
    /// check fired) or `kernel_only` (a kernel check fired on a mutant the model
    /// proves safe: a finding to explain, not a gate failure).
    pub verdict: &'static str,
}

#[derive(Serialize)]
pub struct ModelVerdict {
    /// The static checks refused the mutated spec (this reason).
    pub refused: Option<String>,
    /// Per kind: the violated safety properties, and `never NAME` for each sanity
    /// property that is no longer reached (the protocol stopped doing its job).
    pub violated: BTreeMap<String, Vec<String>>,
}

impl ModelVerdict {
    fn condemns(&self) -> bool {
        self.refused.is_some() || self.violated.values().any(|v| !v.is_empty())
    }

    fn text(&self) -> String {
        if let Some(r) = &self.refused {
            return format!("refused statically: {r}");
        }
        let parts: Vec<String> = self
            .violated
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}: {}", v.join(", ")))
            .collect();
        if parts.is_empty() {
            "holds (harmless)".into()
        } else {
            parts.join("; ")
        }
    }
}

#[derive(Serialize)]
pub struct KernelRun {
    /// `check: detail` for each kernel check that fired, in the boot test's order.
    pub caught_by: Vec<String>,
    /// What replaying the run's traces in the model found: `caught` (a trace
    /// diverged), `clean` (every trace replayed), `no trace` (the run ended
    /// before it printed one).
    pub replay: &'static str,
    pub seconds: f64,
}

fn model_verdict(spec_path: &Path, text: &str, m: &Target) -> Result<ModelVerdict, String> {
    let mutated = m.spec_text(text)?;
    let path = PathBuf::from(format!("{} [{}]", spec_path.display(), m.name()));
    let spec = match Spec::parse(&path, &mutated) {
        Ok(s) => s,
        Err(e) => {
            return Ok(ModelVerdict {
                refused: Some(e.first().msg.clone()),
                violated: BTreeMap::new(),
            })
        }
    };
    let mut violated = BTreeMap::new();
    for &kind in &spec.kinds {
        let opts = CheckOptions {
            traces: false,
            ..CheckOptions::default()
        };
        let r = check_kind(&spec, kind, &opts)?;
        let mut v: Vec<String> = r.violated().iter().map(|p| p.to_string()).collect();
        v.extend(
            r.properties
                .iter()
                .filter(|p| p.verdict == "not_reached")
                .map(|p| format!("never {}", p.name)),
        );
        violated.insert(kind.name().to_string(), v);
    }
    Ok(ModelVerdict {
        refused: None,
        violated,
    })
}

/// Boot the kernel with mutant `m` built in; the checks that fired.
fn kernel_run(root: &Path, m: &Target, first: Option<&str>) -> Result<KernelRun, String> {
    let start = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("kmod/scripts/boottest.sh"));
    if let Some(f) = first {
        cmd.env("QUIESCE_FIRST", f);
    }
    match m {
        Target::Module(mm) => cmd.env("QUIESCE_MUTANT", mm.to_string()),
        Target::Hook { patch, .. } | Target::C { patch, .. } => {
            cmd.env("QUIESCE_EXTRA_PATCHES", root.join(patch))
        }
    };
    let m = m.name();
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the boot test: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("boottest: built ") {
        return Err(format!(
            "the boot test for mutant {m} did not get to boot:\n{stdout}"
        ));
    }
    if let Some(why) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("boottest: setup failed: "))
    {
        return Err(format!(
            "the boot test for mutant {m} could not set it up: {why}"
        ));
    }
    let caught_by: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("caught: "))
        .map(str::to_string)
        .collect();
    let replay = if caught_by
        .iter()
        .any(|c| c.starts_with("replay: ") && !c.contains("did not decode"))
    {
        "caught"
    } else if stdout.lines().any(|l| l.starts_with("replay: ")) {
        "clean"
    } else {
        "no trace"
    };
    Ok(KernelRun {
        caught_by,
        replay,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Run the gate; `Err` is bad input or a tool that could not run.
pub fn run(
    root: &Path,
    spec_path: &Path,
    list: &Path,
    only: &[String],
    model_only: bool,
) -> Result<Vec<Row>, String> {
    let text =
        std::fs::read_to_string(spec_path).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    Spec::parse(spec_path, &text).map_err(|e| e.to_string())?;
    let extra: List = toml::from_str(
        &std::fs::read_to_string(list).map_err(|e| format!("{}: {e}", list.display()))?,
    )
    .map_err(|e| format!("{}: {e}", list.display()))?;
    let mut mutants: Vec<(Target, String, Option<String>)> = skip_mutants(&text)?
        .into_iter()
        .map(|m| {
            let (what, first) = match &m {
                // The removal phase catches these first: the removal callback's
                // steps, and the liveness checks that only a removal exercises.
                Mutant::Skip { proc, prim } => (
                    format!("{} without {prim}", proc.name()),
                    (*proc == Proc::Remove || prim == "bdev_check_alive")
                        .then(|| "remove".to_string()),
                ),
                _ => unreachable!("skip_mutants makes skips"),
            };
            (Target::Module(m), what, first)
        })
        .collect();
    for e in extra.mutant {
        let bad = |why: &str| format!("{}: mutant {}: {why}", list.display(), e.kernel);
        if let Some(f) = &e.first {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(bad(&format!(
                    "first = \"{f}\": a phase of the boot test (kmod/test/init), in a-z"
                )));
            }
        }
        let t = match (e.kernel.strip_prefix("hot_path:"), e.patch, e.hot_path) {
            (Some(name), Some(patch), Some(hot_path)) => {
                if !root.join(&patch).is_file() {
                    return Err(bad(&format!("no patch {}", patch.display())));
                }
                Target::Hook {
                    name: format!("hot_path:{name}"),
                    patch,
                    hot_path,
                }
            }
            (Some(_), _, _) => return Err(bad("a hot_path mutant needs `patch` and `hot_path`")),
            (None, Some(patch), None) if e.kernel.starts_with("c:") => {
                if !root.join(&patch).is_file() {
                    return Err(bad(&format!("no patch {}", patch.display())));
                }
                Target::C {
                    name: e.kernel.clone(),
                    patch,
                }
            }
            (None, None, None) if e.kernel.starts_with("c:") => {
                return Err(bad("a c: mutant needs `patch`"))
            }
            (None, None, None) => {
                Target::Module(e.kernel.parse().map_err(|err: String| bad(&err))?)
            }
            (None, _, _) => {
                return Err(bad(
                    "`patch` is for hot_path and c: mutants, `hot_path` for hot_path mutants",
                ))
            }
        };
        mutants.push((t, e.what, e.first));
    }
    for o in only {
        if !mutants.iter().any(|(m, _, _)| m.name() == *o) {
            return Err(format!("--only {o}: no such mutant (see --list)"));
        }
    }
    let mut rows = Vec::new();
    for (m, what, first) in mutants {
        let name = m.name();
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let model = model_verdict(spec_path, &text, &m)?;
        let kernel = if model_only {
            None
        } else {
            eprintln!("mutants: booting {name}");
            Some(kernel_run(root, &m, first.as_deref())?)
        };
        let fired = kernel.as_ref().is_some_and(|k| !k.caught_by.is_empty());
        let verdict = match (model.condemns(), kernel.is_some(), fired) {
            (true, true, true) => "caught",
            (true, true, false) => "survived",
            (true, false, _) => "condemned",
            (false, _, false) => "harmless",
            (false, _, true) => "kernel_only",
        };
        eprintln!(
            "mutants: {name}: model: {}; kernel: {}",
            model.text(),
            match &kernel {
                None => "not run".to_string(),
                Some(k) if k.caught_by.is_empty() => format!("nothing fired ({:.0} s)", k.seconds),
                Some(k) => format!(
                    "{} ({:.0} s); replay: {}",
                    k.caught_by[0], k.seconds, k.replay
                ),
            }
        );
        rows.push(Row {
            mutant: name,
            what,
            model,
            kernel,
            verdict,
        });
    }
    Ok(rows)
}

/// The report a person reads: one row per mutant, then the totals.
pub fn print(rows: &[Row]) {
    let w = rows
        .iter()
        .map(|r| r.mutant.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:w$}  {:10}  model says / kernel check that caught it",
        "mutant", "verdict"
    );
    for r in rows {
        println!(
            "{:w$}  {:10}  model: {}",
            r.mutant,
            r.verdict,
            r.model.text()
        );
        if let Some(k) = &r.kernel {
            let first = k
                .caught_by
                .iter()
                .find(|c| !c.starts_with("replay: "))
                .or(k.caught_by.first())
                .map_or("nothing fired", String::as_str);
            println!("{:w$}  {:10}  kernel: {first}", "", "");
            println!("{:w$}  {:10}  replay: {}", "", "", k.replay);
            if k.caught_by.len() > 1 {
                println!(
                    "{:w$}  {:10}          (+{} more checks)",
                    "",
                    "",
                    k.caught_by.len() - 1
                );
            }
        }
    }
    let n = |v: &str| rows.iter().filter(|r| r.verdict == v).count();
    println!(
        "{} caught, {} survived ({} harmless by the model, {} kernel-only, {} not run in the kernel)",
        n("caught"),
        n("survived"),
        n("harmless"),
        n("kernel_only"),
        n("condemned")
    );
    let replay = |v: &str| {
        rows.iter()
            .filter(|r| r.kernel.as_ref().is_some_and(|k| k.replay == v))
            .count()
    };
    if rows.iter().any(|r| r.kernel.is_some()) {
        println!(
            "replay: {} caught, {} clean, {} ended before a trace",
            replay("caught"),
            replay("clean"),
            replay("no trace")
        );
    }
}
