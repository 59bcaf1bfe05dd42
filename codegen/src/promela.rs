//! The Promela backend: the same spec, kind and bounds as one quiesce check, rendered
//! for SPIN. One Stateright action is one `d_step` of a single-process loop, every
//! variable of the Rust `State` is a global, and temporaries are `hidden`, so SPIN's
//! stored states are in one-to-one correspondence with quiesce's unique states
//! (without symmetry reduction). The kernel meaning of each primitive lives in
//! `templates/promela.pml.tera`; this file only turns the spec's step tables into
//! the template's data.
//!
//! Unlike `gen`, this backend renders flawed specs too: SPIN is a second checker,
//! and it must find the same violations.

use crate::GenError;
use quiesce_model::model::{Phase, Quiesce};
use quiesce_model::spec::{Bounds, CtlStep, HotOp, Kind, MarkerKind, Park, Res, Spec, SubmitPath};
use serde::Serialize;
use std::path::Path;

/// The safety properties the template checks after each step, and the macro that
/// holds each; `no_deadlock` is SPIN's own invalid-end-state check.
pub const PROPERTIES: [(&str, &str); 8] = [
    ("no_use_after_free", "NO_USE_AFTER_FREE"),
    ("no_bypass", "NO_BYPASS"),
    ("exactly_once", "EXACTLY_ONCE"),
    ("no_recursion", "NO_RECURSION"),
    ("clean_exit", "CLEAN_EXIT"),
    ("single_owner", "SINGLE_OWNER"),
    ("point_of_no_return", "NO_RETURN_KEPT"),
    ("nowait_never_blocks", "NOWAIT_NEVER_BLOCKS"),
];

/// One place a controller can stand with a primitive to run.
#[derive(Serialize)]
struct Pos {
    /// `ATTACH`, `DETACH`, `ATTACHERR`, `DETACHERR`.
    phase: &'static str,
    /// The failed step, for a hand-written error path.
    failed: Option<u8>,
    pc: u8,
    prim: &'static str,
    /// For the forward phases: the step after this one (`norm(pc + 1)`).
    next: u8,
    /// For the forward phases: the primitive's failure may be injected here.
    inject: bool,
    /// For the forward phases: on failure, the hand-written error path starts
    /// (`true`) or the default unwind runs from this step (`false`).
    on_error: bool,
    /// The error phase this forward phase fails into.
    err_phase: &'static str,
}

/// A step whose resource the default unwind looks for.
#[derive(Serialize)]
struct Acq {
    /// The unwind cursor value resting on this step (its index + 1).
    cursor: u8,
    res: &'static str,
}

/// One phase's table: attach or detach.
#[derive(Serialize)]
struct Table {
    name: &'static str,
    err_phase: &'static str,
    /// Index past the last step.
    len: u8,
    /// The first applicable step.
    first: u8,
    acq: Vec<Acq>,
    /// Steps with a hand-written error path, and that path's length.
    on_error: Vec<(u8, u8)>,
    /// The forward phase (the call a restarting step runs again).
    phase: &'static str,
    /// Steps whose failure restarts the call.
    restart: Vec<u8>,
}

#[derive(Serialize)]
struct Hot {
    idx: u8,
    op: &'static str,
    target: u8,
}

fn res_name(r: Res) -> &'static str {
    match r {
        Res::Mutex => "MUTEX",
        Res::ICreated => "ICREATED",
        Res::IOpen => "IOPEN",
        Res::FsFrozen => "FSFROZEN",
        Res::QFrozen => "QFROZEN",
        Res::OSuspended => "OSUSPENDED",
        Res::ISuspended => "ISUSPENDED",
        Res::Pointer => "POINTER",
        Res::ModRef => "MODREF",
    }
}

fn hot(i: usize, op: HotOp) -> Hot {
    let (op, target) = match op {
        HotOp::QueueEnter => ("queue_enter", 0),
        HotOp::BlkQueueEnter => ("blk_queue_enter", 0),
        HotOp::QueueExit => ("queue_exit", 0),
        HotOp::TestMarker { marked } => ("test_marker", marked),
        HotOp::ReadInterposer { null } => ("read_interposer", null),
        HotOp::TestBioList { set } => ("test_bio_list", set),
        HotOp::SetMarker => ("set_marker", 0),
        HotOp::ClearMarker => ("clear_marker", 0),
        HotOp::Redirect => ("redirect", 0),
        HotOp::DriverSubmit => ("driver_submit", 0),
        HotOp::Return => ("return", 0),
        HotOp::Restart => ("restart", 0),
        HotOp::RcuLock => ("rcu_lock", 0),
        HotOp::RcuUnlock => ("rcu_unlock", 0),
        HotOp::FailBusy => ("fail_busy", 0),
        HotOp::FilterGet => ("filter_get", 0),
        HotOp::FilterTryGet { zero } => ("filter_tryget", zero),
    };
    Hot {
        idx: i as u8,
        op,
        target,
    }
}

/// The forward positions of one table, and its error-path positions.
fn positions(
    q: &Quiesce,
    steps: &[CtlStep],
    phase: Phase,
    names: (&'static str, &'static str),
) -> (Vec<Pos>, Vec<Pos>, Table) {
    let (fwd_name, err_name) = names;
    let mut fwd = Vec::new();
    let mut err = Vec::new();
    let mut acq = Vec::new();
    let mut on_error = Vec::new();
    for (i, st) in steps.iter().enumerate() {
        if !q.applies(st) {
            continue;
        }
        fwd.push(Pos {
            phase: fwd_name,
            failed: None,
            pc: i as u8,
            prim: st.prim.name(),
            next: q.norm(phase, i + 1),
            inject: q.protocol.inject.contains(&st.prim),
            on_error: st.on_error.is_some(),
            err_phase: err_name,
        });
        if let Some(r) = st.prim.info().acquires {
            acq.push(Acq {
                cursor: i as u8 + 1,
                res: res_name(r),
            });
            // The default unwind at cursor i + 1 runs the inverse of step i.
            let inv = st
                .prim
                .inverse()
                .expect("every acquired resource has a release");
            err.push(Pos {
                phase: err_name,
                failed: None,
                pc: i as u8 + 1,
                prim: inv.name(),
                next: 0,
                inject: false,
                on_error: false,
                err_phase: err_name,
            });
        }
        if let Some(list) = &st.on_error {
            on_error.push((i as u8, list.len() as u8));
            for (j, p) in list.iter().enumerate() {
                err.push(Pos {
                    phase: err_name,
                    failed: Some(i as u8),
                    pc: j as u8,
                    prim: p.prim.name(),
                    next: j as u8 + 1,
                    inject: false,
                    on_error: true,
                    err_phase: err_name,
                });
            }
        }
    }
    let table = Table {
        name: if phase == Phase::Attach {
            "attach"
        } else {
            "detach"
        },
        err_phase: err_name,
        len: steps.len() as u8,
        first: q.norm(phase, 0),
        acq,
        on_error,
        phase: fwd_name,
        restart: steps
            .iter()
            .enumerate()
            .filter(|(_, st)| st.restart)
            .map(|(i, _)| i as u8)
            .collect(),
    };
    (fwd, err, table)
}

/// How the model's threads become Promela processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rendering {
    /// One process whose loop holds every action: SPIN stores exactly quiesce's
    /// states (run with `-DNOREDUCE`).
    #[default]
    StateForState,
    /// One process per thread (each submitter, each controller, the kworker, O's
    /// completion, the remover, each freezer), so that SPIN's partial-order
    /// reduction can work; run with it on and `-DCOLLAPSE`.
    PerThread,
}

/// One Promela process: which of the model's actions its loop offers.
#[derive(Serialize)]
struct Proc {
    name: String,
    what: String,
    subs: Vec<u8>,
    /// Bios whose hot-path steps this process runs: all of them (""), those its own
    /// thread carries ("own"), or those a kworker carries ("kworker").
    carries: Vec<usize>,
    carrier_guard: &'static str,
    completes: bool,
    /// Offers I's worker resubmitting parked bios.
    unparks: bool,
    ctls: Vec<u8>,
    remover: bool,
    /// Offers `rmmod` of the filter's owner module.
    rmmod: bool,
    freezers: Vec<u8>,
    /// Offers the ALL_DONE self-loop (the one process not at an end label).
    idle: bool,
}

impl Proc {
    fn new(name: &str, what: String) -> Self {
        Proc {
            name: name.into(),
            what,
            subs: vec![],
            carries: vec![],
            carrier_guard: "",
            completes: false,
            unparks: false,
            ctls: vec![],
            remover: false,
            rmmod: false,
            freezers: vec![],
            idle: false,
        }
    }
}

fn procs(bounds: Bounds, rendering: Rendering) -> Vec<Proc> {
    let k = bounds.bios as usize;
    let nsub = bounds.submitters as usize * k;
    let nb = nsub + bounds.controllers as usize;
    if rendering == Rendering::StateForState {
        return vec![Proc {
            subs: (0..bounds.submitters).collect(),
            carries: (0..nb).collect(),
            completes: true,
            unparks: true,
            ctls: (0..bounds.controllers).collect(),
            remover: bounds.remover,
            rmmod: bounds.rmmod,
            freezers: (0..bounds.freezers).collect(),
            idle: true,
            ..Proc::new("quiesce", "every thread".into())
        }];
    }
    let mut out = Vec::new();
    for s in 0..bounds.submitters {
        let first = s as usize * k;
        out.push(Proc {
            subs: vec![s],
            carries: (first..first + k).collect(),
            carrier_guard: "own",
            ..Proc::new(
                &format!("submitter{}", s + 1),
                format!("submitter {}", s + 1),
            )
        });
    }
    for c in 0..bounds.controllers {
        out.push(Proc {
            ctls: vec![c],
            carries: vec![nsub + c as usize],
            carrier_guard: "own",
            ..Proc::new(
                &format!("controller{}", c + 1),
                format!(
                    "controller {}: attach and detach, and its superblock bio",
                    c + 1
                ),
            )
        });
    }
    out.push(Proc {
        carries: (0..nb).collect(),
        carrier_guard: "kworker",
        unparks: true,
        ..Proc::new(
            "kworker",
            "the kworker: resubmissions of deferred and parked bios".into(),
        )
    });
    out.push(Proc {
        completes: true,
        ..Proc::new("completion", "O's completion: bio_endio".into())
    });
    if bounds.remover {
        out.push(Proc {
            remover: true,
            ..Proc::new("removal", "the remover: del_gendisk(O)".into())
        });
    }
    if bounds.rmmod {
        out.push(Proc {
            rmmod: true,
            ..Proc::new("rmmod", "rmmod of the filter's owner module".into())
        });
    }
    for f in 0..bounds.freezers {
        out.push(Proc {
            freezers: vec![f],
            ..Proc::new(&format!("freezer{}", f + 1), format!("freezer {}", f + 1))
        });
    }
    out.push(Proc {
        idle: true,
        ..Proc::new(
            "finished",
            "not an end state until ALL_DONE: it makes a run that stops early a deadlock".into(),
        )
    });
    out
}

/// Render `spec` for `kind` under `bounds` as a Promela model, state for state.
pub fn render(spec: &Spec, kind: Kind, bounds: Bounds) -> Result<String, GenError> {
    render_as(spec, kind, bounds, Rendering::StateForState)
}

/// Render `spec` for `kind` under `bounds` as a Promela model.
pub fn render_as(
    spec: &Spec,
    kind: Kind,
    bounds: Bounds,
    rendering: Rendering,
) -> Result<String, GenError> {
    let q = Quiesce::new(spec.protocol.clone(), kind, bounds);
    let p = &q.protocol;
    let (mut fwd, mut err, ta) = positions(&q, &p.attach, Phase::Attach, ("ATTACH", "ATTACHERR"));
    let (f2, e2, td) = positions(&q, &p.detach, Phase::Detach, ("DETACH", "DETACHERR"));
    fwd.extend(f2);
    err.extend(e2);
    let nsub = bounds.submitters as usize * bounds.bios as usize;
    let mut ctx = tera::Context::new();
    ctx.insert("name", &spec.name);
    ctx.insert("spec_path", &crate::spec_path_display(&spec.path));
    ctx.insert("sha256", &spec.sha256);
    ctx.insert("kind", kind.name());
    ctx.insert("request", &(kind == Kind::Request));
    ctx.insert("bounds", &bounds);
    ctx.insert("nsub", &nsub);
    ctx.insert("nb", &(nsub + bounds.controllers as usize));
    ctx.insert("submitters", &(0..bounds.submitters).collect::<Vec<_>>());
    ctx.insert("sub_bios", &(0..nsub).collect::<Vec<_>>());
    ctx.insert(
        "bios",
        &(0..nsub + bounds.controllers as usize).collect::<Vec<_>>(),
    );
    ctx.insert("per", &(0..bounds.bios).collect::<Vec<_>>());
    ctx.insert("ctls", &(0..bounds.controllers).collect::<Vec<_>>());
    ctx.insert("freezers", &(0..bounds.freezers).collect::<Vec<_>>());
    ctx.insert(
        "marker",
        match p.marker {
            MarkerKind::BioFlag => "bio",
            MarkerKind::Task => "task",
            MarkerKind::None => "none",
        },
    );
    ctx.insert("clone_inherits", &p.clone_inherits);
    ctx.insert(
        "park",
        match p.park {
            None => "",
            Some(Park::Counted) => "counted",
            Some(Park::Uncounted) => "uncounted",
        },
    );
    // The REQ_NOWAIT bios: a constant of each bio, so no state of its own.
    let k = bounds.bios as usize;
    ctx.insert(
        "nowait_bios",
        &(0..nsub)
            .filter(|&b| p.paths[(b / k) % p.paths.len()] == SubmitPath::Nowait)
            .collect::<Vec<_>>(),
    );
    ctx.insert("explicit_mark", &p.explicit_mark_lifetime());
    ctx.insert("dm_phases", &p.dm_phases());
    ctx.insert(
        "worker_marks",
        &(p.worker_marks && p.marker == MarkerKind::Task),
    );
    ctx.insert("filesystem", &p.filesystem);
    // A byte per bio for a split's front and the bio_list bit, only when used.
    ctx.insert("split", &p.split);
    ctx.insert("bio_list", &p.tests_bio_list());
    ctx.insert("refcounted", &p.refcounted());
    ctx.insert("kfree_rcu", &p.kfree_rcu);
    ctx.insert("reuse", &bounds.reuse);
    ctx.insert("lookup_dev_t", &p.lookup_dev_t);
    ctx.insert(
        "instances",
        &(0..bounds.controllers * bounds.cycles).collect::<Vec<_>>(),
    );
    ctx.insert("xf", &(p.split || p.tests_bio_list() || p.refcounted()));
    ctx.insert(
        "stacked_subs",
        &(0..bounds.submitters as usize)
            .filter(|&s| p.paths[s % p.paths.len()] == SubmitPath::Stacked)
            .collect::<Vec<_>>(),
    );
    let hot_path: Vec<Hot> = p.hot_ops().enumerate().map(|(i, o)| hot(i, o)).collect();
    ctx.insert("hot", &hot_path);
    // The hot path's length: a passthrough request's pass starts there.
    ctx.insert("nhot_bio", &p.hot_path.len());
    ctx.insert(
        "pt_bios",
        &(0..nsub)
            .filter(|&b| p.paths[(b / k) % p.paths.len()] == SubmitPath::Passthrough)
            .collect::<Vec<_>>(),
    );
    // Only a spec with an RCU read side pays for its byte per bio.
    ctx.insert(
        "rcu",
        &p.hot_ops()
            .any(|op| matches!(op, HotOp::RcuLock | HotOp::RcuUnlock)),
    );
    // Each procedure's point of no return, -1 for none.
    let ponr = |detach| p.point_of_no_return(detach).map_or(-1, |j| j as i64);
    ctx.insert("ponr_attach", &ponr(false));
    ctx.insert("ponr_detach", &ponr(true));
    ctx.insert("fwd", &fwd);
    ctx.insert("err", &err);
    ctx.insert("tables", &[ta, td]);
    ctx.insert(
        "prims",
        &quiesce_model::spec::PRIMS
            .iter()
            .map(|i| i.name)
            .collect::<Vec<_>>(),
    );
    let props: Vec<(u8, &str, &str)> = PROPERTIES
        .iter()
        .enumerate()
        .map(|(i, (name, mac))| (1u8 << i, *mac, *name))
        .collect();
    ctx.insert("props", &props);
    ctx.insert("threads", &(rendering == Rendering::PerThread));
    ctx.insert("procs", &procs(bounds, rendering));
    // The removal callback: its steps stand at remover pc 2, 3, ...
    let rm: Vec<(u8, &str)> = p
        .on_remove
        .iter()
        .enumerate()
        .map(|(i, st)| (2 + i as u8, st.prim.meaning().name()))
        .collect();
    ctx.insert("nrm", &rm.len());
    ctx.insert("rm_steps", &rm);
    crate::render_template("promela.pml.tera", &ctx)
}

/// How to run SPIN.
#[derive(Debug, Clone, Default)]
pub struct SpinOptions {
    /// log2 of the hash table's slots (`pan -wN`); SPIN's default is 24.
    pub hash_bits: Option<u32>,
    /// Compile pan with `-O0` (fast to build, for tests) instead of `-O2`.
    pub quick_compile: bool,
    /// Run in this directory and keep what SPIN made there (`model.pml`, `pan`), and,
    /// when a property is violated, `model.pml.trail`: the first error's trail, which
    /// `spin -t -p model.pml` replays. Without it, a private temporary directory is
    /// used and removed.
    pub keep: Option<std::path::PathBuf>,
    /// SPIN at its best, for a [`Rendering::PerThread`] model: partial-order
    /// reduction on and state compression (`-DSAFETY -DCOLLAPSE`). Without it, the
    /// exhaustive search (`-DSAFETY -DNOREDUCE`).
    pub best: bool,
}

/// SPIN's figures for one run.
#[derive(Debug, Clone, Serialize)]
pub struct SpinRun {
    /// Unique states stored.
    pub states: u64,
    /// False when pan stopped early (it reached its memory cap): `states` is then
    /// only how far it got.
    pub complete: bool,
    pub transitions: u64,
    pub depth: u64,
    pub state_vector_bytes: u64,
    pub errors: u64,
    /// The safety properties SPIN found violated, by quiesce's names.
    pub violated: Vec<String>,
    /// Wall time of the search (`./pan`) alone.
    pub seconds: f64,
    /// Wall time of `spin -a` and the C compile.
    pub compile_seconds: f64,
    /// Peak resident set of the `pan` process.
    pub peak_rss_kib: u64,
    /// With [`SpinOptions::keep`] and a violation: the trail of SPIN's first error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trail: Option<std::path::PathBuf>,
    /// SPIN's own count of the memory it used ("total actual memory usage").
    pub pan_memory_mib: f64,
}

fn spin_err(msg: impl Into<String>) -> GenError {
    GenError::Spin(msg.into())
}

fn run_tool(cmd: &mut std::process::Command, what: &str) -> Result<String, GenError> {
    let out = cmd.output().map_err(|e| {
        spin_err(format!(
            "cannot run {what}: {e} (is SPIN installed? run scripts/setup.sh)"
        ))
    })?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(spin_err(format!("{what} failed: {}", tail.join("\n"))));
    }
    Ok(text)
}

/// Run `pan` and measure its wall time and peak resident set.
fn run_pan(dir: &Path, args: &[String]) -> Result<(String, f64, u64), GenError> {
    use std::io::Read;
    let start = std::time::Instant::now();
    let mut child = std::process::Command::new(dir.join("pan"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| spin_err(format!("cannot run pan: {e}")))?;
    let mut text = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut text)
        .map_err(|e| spin_err(format!("reading pan's output: {e}")))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `child.id()` is our own unreaped child; `status` and `usage` are valid
    // out-pointers for the duration of the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if pid < 0 {
        return Err(spin_err("waiting for pan failed"));
    }
    Ok((text, seconds, usage.ru_maxrss.max(0) as u64))
}

fn field(text: &str, suffix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.trim_end().ends_with(suffix))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// This machine's memory (`MemTotal`), in KiB.
pub fn mem_total_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<u64>().ok())
    })
}

/// A new directory of this process's own under the temporary directory.
fn private_dir(prefix: &str) -> Result<std::path::PathBuf, GenError> {
    let base = std::env::temp_dir();
    (0..1000u32)
        .map(|i| base.join(format!("{prefix}-{}-{i}", std::process::id())))
        .find(|d| std::fs::create_dir(d).is_ok())
        .ok_or_else(|| spin_err(format!("cannot create a directory in {}", base.display())))
}

/// SPIN's memory cap: 90% of this machine's memory, in MiB (pan stops at its cap).
fn memlim_mib() -> u64 {
    mem_total_kib().map_or(16_384, |kib| kib / 1024 * 9 / 10)
}

/// Compile `pml` with SPIN in a private temporary directory (removed afterwards) and
/// run the safety search: exhaustive (`-DSAFETY -DNOREDUCE`), or with
/// [`SpinOptions::best`] reduced and compressed (`-DSAFETY -DCOLLAPSE`).
pub fn run_spin(pml: &str, opts: &SpinOptions) -> Result<SpinRun, GenError> {
    compile_spin(pml, opts)?.run()
}

/// `pan`, compiled from a Promela model, ready to search as often as asked
/// (a benchmark runs it between the other checkers' runs). Its directory is
/// removed when it is dropped, unless [`SpinOptions::keep`] named it.
pub struct Pan {
    dir: std::path::PathBuf,
    remove: bool,
    opts: SpinOptions,
    compile_seconds: f64,
}

impl Drop for Pan {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Compile `pml` with SPIN (`spin -a`, then the C compiler) into a [`Pan`].
pub fn compile_spin(pml: &str, opts: &SpinOptions) -> Result<Pan, GenError> {
    let pan = match &opts.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| spin_err(format!("cannot create {}: {e}", dir.display())))?;
            Pan {
                dir: dir.clone(),
                remove: false,
                opts: opts.clone(),
                compile_seconds: 0.0,
            }
        }
        None => Pan {
            dir: private_dir("quiesce-spin")?,
            remove: true,
            opts: opts.clone(),
            compile_seconds: 0.0,
        },
    };
    pan.compile(pml)
}

impl Pan {
    fn compile(mut self, pml: &str) -> Result<Pan, GenError> {
        let (dir, opts) = (&self.dir, &self.opts);
        let model = dir.join("model.pml");
        std::fs::write(&model, pml).map_err(|e| spin_err(format!("{}: {e}", model.display())))?;
        let t0 = std::time::Instant::now();
        run_tool(
            std::process::Command::new("spin")
                .args(["-a", "-o2", "model.pml"])
                .current_dir(dir),
            "spin -a",
        )?;
        run_tool(
            std::process::Command::new("cc")
                .arg(if opts.quick_compile { "-O0" } else { "-O2" })
                .args(["-w", "-DSAFETY"])
                .arg(if opts.best {
                    "-DCOLLAPSE"
                } else {
                    "-DNOREDUCE"
                })
                .arg(format!("-DMEMLIM={}", memlim_mib()))
                .args(["-o", "pan", "pan.c"])
                .current_dir(dir),
            "cc pan.c",
        )?;
        self.compile_seconds = t0.elapsed().as_secs_f64();
        Ok(self)
    }

    /// One safety search; each call runs `pan` anew.
    pub fn run(&self) -> Result<SpinRun, GenError> {
        let (dir, opts, compile_seconds) = (&self.dir, &self.opts, self.compile_seconds);
        let mut depth_limit: u64 = 100_000;
        loop {
            let mut args = vec![format!("-m{depth_limit}")];
            if let Some(w) = opts.hash_bits {
                args.push(format!("-w{w}"));
            }
            // Go on past errors: every state is counted and every violation named.
            args.push("-c0".into());
            let (text, seconds, peak_rss_kib) = run_pan(dir, &args)?;
            if text.contains("max search depth too small") && depth_limit < 100_000_000 {
                depth_limit *= 10;
                continue;
            }
            let head = text
                .lines()
                .find(|l| l.starts_with("State-vector"))
                .ok_or_else(|| spin_err(format!("unexpected pan output:\n{text}")))?;
            let num = |key: &str| -> u64 {
                head.split(',')
                    .find_map(|part| {
                        let part = part.trim();
                        part.strip_prefix(key)
                            .map(|rest| rest.split_whitespace().next().unwrap_or("0"))
                            .and_then(|n| n.parse().ok())
                    })
                    .unwrap_or(0)
            };
            // Each violated property is asserted once, by name: "pan:1: assertion
            // violated no_bypass (at depth 12)".
            let mut violated: Vec<String> = text
                .lines()
                .filter_map(|l| l.split_once(": assertion violated "))
                .filter_map(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_string)
                .collect();
            if text
                .lines()
                .any(|l| l.starts_with("pan:") && l.contains("invalid end state"))
            {
                violated.push("no_deadlock".into());
            }
            violated.sort();
            violated.dedup();
            let errors = num("errors:");
            // A kept run with errors: search again, stopping at the first error, so that
            // pan writes its trail (pan -c0 writes none).
            let trail = match &opts.keep {
                Some(_) if errors > 0 => {
                    let _ = std::fs::remove_file(dir.join("model.pml.trail"));
                    run_pan(dir, &[format!("-m{depth_limit}"), "-c1".into()])?;
                    let t = dir.join("model.pml.trail");
                    t.exists().then_some(t)
                }
                _ => None,
            };
            return Ok(SpinRun {
                states: field(&text, "states, stored").unwrap_or(0.0) as u64,
                complete: !text.contains("Search not completed"),
                transitions: field(&text, "transitions (= stored+matched)").unwrap_or(0.0) as u64,
                depth: num("depth reached"),
                state_vector_bytes: num("State-vector"),
                errors,
                violated,
                seconds,
                compile_seconds,
                peak_rss_kib,
                trail,
                pan_memory_mib: field(&text, "total actual memory usage").unwrap_or(0.0),
            });
        }
    }
}

/// A never claim for SPIN that accepts a run in which one obligation of a
/// liveness property stays pending forever (`<>[] pending`, for any one of
/// them): for `bios_complete` each bio in flight, for `calls_return` each
/// pass through the hot path, each controller's call and `del_gendisk`. Appended to the per-thread rendering, whose
/// processes are the threads SPIN's weak fairness (`pan -a -f`) is about.
pub fn liveness_claim(prop: &str, bounds: Bounds) -> Result<String, GenError> {
    let nbios = bounds.submitters as usize * bounds.bios as usize + bounds.controllers as usize;
    let pending: Vec<String> = match prop {
        "bios_complete" => (0..nbios)
            .map(|b| format!("(b_loc[{b}] != UNSUB && b_loc[{b}] != DONE && b_loc[{b}] != LOST)"))
            .collect(),
        "calls_return" => {
            let mut v: Vec<String> = (0..nbios).map(|b| format!("HAS({b}, PASS)")).collect();
            v.extend((0..bounds.controllers)
                .map(|c| {
                    format!(
                        "(c_phase[{c}] == ATTACH || c_phase[{c}] == ATTACHERR || c_phase[{c}] == DETACH || c_phase[{c}] == DETACHERR)"
                    )
                }));
            if bounds.remover {
                v.push("(rm_pc < RMLEN)".into());
            }
            v
        }
        other => {
            return Err(GenError::Refused(format!(
                "`{other}` is no liveness property (bios_complete, calls_return)"
            )))
        }
    };
    let mut out = format!(
        "\n/* {prop}: some obligation stays pending forever. */\nnever {{\nT0_init:\n\tdo\n"
    );
    for (i, p) in pending.iter().enumerate() {
        out.push_str(&format!("\t:: {p} -> goto accept_{i}\n"));
    }
    out.push_str("\t:: true -> goto T0_init\n\tod;\n");
    for (i, p) in pending.iter().enumerate() {
        out.push_str(&format!("accept_{i}:\n\tdo\n\t:: {p}\n\tod;\n"));
    }
    out.push_str("}\n");
    Ok(out)
}

/// SPIN's liveness verdict: whether `pan -a -f` (acceptance cycles under weak
/// fairness of the processes) finds a run the claim accepts.
#[derive(Debug, Clone, Serialize)]
pub struct SpinLiveness {
    pub property: String,
    pub violated: bool,
    pub states: u64,
    pub seconds: f64,
}

/// Run SPIN's search for a fair acceptance cycle of `claim` over `pml` (the
/// per-thread rendering); `fair: false` drops weak fairness (any cycle counts).
pub fn run_spin_liveness(
    pml: &str,
    claim: &str,
    prop: &str,
    fair: bool,
) -> Result<SpinLiveness, GenError> {
    let dir = private_dir("quiesce-spin-live")?;
    let run = (|| {
        std::fs::write(dir.join("model.pml"), format!("{pml}{claim}"))
            .map_err(|e| spin_err(format!("model.pml: {e}")))?;
        run_tool(
            std::process::Command::new("spin")
                .args(["-a", "-o2", "model.pml"])
                .current_dir(&dir),
            "spin -a",
        )?;
        run_tool(
            std::process::Command::new("cc")
                .args(["-O2", "-w", "-DNOREDUCE", "-DNFAIR=4"])
                .arg(format!("-DMEMLIM={}", memlim_mib()))
                .args(["-o", "pan", "pan.c"])
                .current_dir(&dir),
            "cc pan.c",
        )?;
        // -E: an end state is no concern of this search (no_deadlock is the
        // safety run's); -a -f: acceptance cycles under weak fairness.
        let mut args: Vec<String> = vec!["-a".into(), "-E".into(), "-m1000000".into()];
        if fair {
            args.push("-f".into());
        }
        let (text, seconds, _) = run_pan(&dir, &args)?;
        if text.contains("max search depth too small") {
            return Err(spin_err(
                "the liveness search needs more than 1000000 steps of depth",
            ));
        }
        let states = text
            .lines()
            .find(|l| l.contains("states, stored"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| spin_err(format!("unexpected pan output:\n{text}")))?;
        Ok(SpinLiveness {
            property: prop.to_string(),
            violated: text.contains("acceptance cycle"),
            states,
            seconds,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    run
}
