//! Protocol spec files: TOML in, checked step tables out.
//!
//! A spec names one protocol variant: the hot path a bio sent to the original
//! device O takes, the attach and detach procedures built from kernel
//! primitives, the marker that stops re-interposition, the threads and
//! bounds, and the verdict the checker must reach. [`Spec::parse`] turns the
//! text into a [`Protocol`], the step tables that the model interprets and
//! that codegen renders; every error carries the file, line and column.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Names of the safety properties, as printed and as written in `expect`.
pub const SAFETY: [&str; 7] = [
    "no_use_after_free",
    "no_bypass",
    "exactly_once",
    "no_recursion",
    "no_deadlock",
    "clean_exit",
    "single_owner",
];

/// Names of the sanity (`sometimes`) properties.
pub const SANITY: [&str; 3] = ["bio_redirected", "attach_under_io", "attach_unwinds"];

/// A spec error: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}")]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// The kind of the original device O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// blk-mq: a bio holds O's queue reference from `bio_queue_enter` until
    /// its request completes.
    Request,
    /// bio-based device-mapper: the reference is held only during
    /// `->submit_bio`; the bio then lives on inside O until it completes.
    Bio,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Bio => "bio",
        }
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What stops a bio that the interposer sends on to O from being interposed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// `BIO_INTERPOSED` on the bio; clones copy it when `clone_inherits`.
    BioFlag,
    /// A mark on the submitting task, live for the whole top-level
    /// `submit_bio_noacct` call including the bios it queued on `current->bio_list`.
    Task,
    /// No marker at all.
    None,
}

/// One step of the hot path (`submit_bio_noacct` for a bio sent to O).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HotOp {
    /// Take O's `q_usage_counter`; blocks while O is frozen, fails the bio once O is gone.
    QueueEnter,
    /// Drop the reference this pass holds, if any (for blk-mq the request took
    /// it over at `driver_submit`).
    QueueExit,
    /// If the bio (or task) is marked, jump to the target step.
    TestMarker { marked: u8 },
    /// `ip = READ_ONCE(O->bd_interposer)`; if NULL, jump to the target step.
    ReadInterposer { null: u8 },
    /// Mark the bio (`BIO_INTERPOSED`) or the task.
    SetMarker,
    /// `bio_set_dev(bio, ip); ip->submit_bio(bio)`: hand the bio to I.
    Redirect,
    /// O's own path: `blk_mq_submit_bio` or `O->submit_bio`.
    DriverSubmit,
    /// Return from the hook.
    Return,
    /// Resubmit the bio from the top of `submit_bio_noacct` if it was not handed off.
    Restart,
}

impl HotOp {
    pub fn name(self) -> &'static str {
        match self {
            HotOp::QueueEnter => "bio_queue_enter",
            HotOp::QueueExit => "blk_queue_exit",
            HotOp::TestMarker { .. } => "test_marker",
            HotOp::ReadInterposer { .. } => "read_interposer",
            HotOp::SetMarker => "set_marker",
            HotOp::Redirect => "redirect",
            HotOp::DriverSubmit => "driver_submit",
            HotOp::Return => "return",
            HotOp::Restart => "restart",
        }
    }
}

/// Which resource an acquiring primitive takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Res {
    Mutex,
    ICreated,
    IOpen,
    FsFrozen,
    QFrozen,
    OSuspended,
    ISuspended,
    Pointer,
}

/// A control primitive, named as in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prim {
    MutexLock,
    MutexUnlock,
    DmCreate,
    DmDestroy,
    BlkdevGetExcl,
    BlkdevPut,
    FreezeBdev,
    ThawBdev,
    FreezeQueue,
    UnfreezeQueue,
    DmInternalSuspendFast,
    DmInternalResumeFast,
    DmSuspend,
    DmResume,
    StoreInterposer,
    CmpxchgInterposer,
    ClearInterposer,
    AssertFrozen,
    CheckAlive,
}

/// Static facts about a primitive.
pub struct PrimInfo {
    pub prim: Prim,
    pub name: &'static str,
    pub args: &'static str,
    /// Sub-steps, each an atomic action of the model (for traces).
    pub phases: &'static [&'static str],
    /// The resource it takes, for acquiring primitives.
    pub acquires: Option<Res>,
    /// The resource it gives back, for releasing primitives.
    pub releases: Option<Res>,
    /// Errno when a failure is injected; `None` if it cannot fail that way in the kernel.
    pub injectable: Option<&'static str>,
    /// Every errno the model can return from it (natural and injected); empty: it cannot fail.
    pub errors: &'static [&'static str],
    pub doc: &'static str,
}

pub const PRIMS: &[PrimInfo] = &[
    PrimInfo { prim: Prim::MutexLock, name: "mutex_lock", args: "open_mutex", phases: &["mutex_lock(open_mutex)"], acquires: Some(Res::Mutex), releases: None, injectable: None, errors: &[], doc: "take O's open_mutex; blocks while another thread holds it" },
    PrimInfo { prim: Prim::MutexUnlock, name: "mutex_unlock", args: "open_mutex", phases: &["mutex_unlock(open_mutex)"], acquires: None, releases: Some(Res::Mutex), injectable: None, errors: &[], doc: "release O's open_mutex" },
    PrimInfo { prim: Prim::DmCreate, name: "dm_create", args: "I", phases: &["dm_create(I)"], acquires: Some(Res::ICreated), releases: None, injectable: Some("ENOMEM"), errors: &["EEXIST", "ENOMEM"], doc: "allocate the interposer device I and load its table (EEXIST if it exists)" },
    PrimInfo { prim: Prim::DmDestroy, name: "dm_destroy", args: "I", phases: &["dm_destroy(I)"], acquires: None, releases: Some(Res::ICreated), injectable: None, errors: &[], doc: "free I; anything that touches it afterwards is a use after free" },
    PrimInfo { prim: Prim::BlkdevGetExcl, name: "blkdev_get_excl", args: "I", phases: &["blkdev_get_excl(I)"], acquires: Some(Res::IOpen), releases: None, injectable: Some("EBUSY"), errors: &["ENXIO", "EBUSY"], doc: "open I exclusively (ENXIO if not created, EBUSY if already held)" },
    PrimInfo { prim: Prim::BlkdevPut, name: "blkdev_put", args: "I", phases: &["blkdev_put(I)"], acquires: None, releases: Some(Res::IOpen), injectable: None, errors: &[], doc: "close I" },
    PrimInfo { prim: Prim::FreezeBdev, name: "freeze_bdev", args: "O", phases: &["freeze_bdev(O): sb_wait_write", "freeze_bdev(O): writers drained", "freeze_bdev(O): sync_filesystem"], acquires: Some(Res::FsFrozen), releases: None, injectable: Some("EBUSY"), errors: &["EBUSY"], doc: "freeze the filesystem on O: block new writes, wait for writers, write the superblock through the normal I/O path and wait for all filesystem I/O; a no-op without a filesystem" },
    PrimInfo { prim: Prim::ThawBdev, name: "thaw_bdev", args: "O", phases: &["thaw_bdev(O)"], acquires: None, releases: Some(Res::FsFrozen), injectable: None, errors: &[], doc: "thaw the filesystem on O" },
    PrimInfo { prim: Prim::FreezeQueue, name: "blk_mq_freeze_queue", args: "O", phases: &["blk_freeze_queue_start(O)", "blk_mq_freeze_queue_wait(O)"], acquires: Some(Res::QFrozen), releases: None, injectable: None, errors: &[], doc: "no new queue references on O; wait until O's references drain" },
    PrimInfo { prim: Prim::UnfreezeQueue, name: "blk_mq_unfreeze_queue", args: "O", phases: &["blk_mq_unfreeze_queue(O)"], acquires: None, releases: Some(Res::QFrozen), injectable: None, errors: &[], doc: "drop this thread's freeze of O" },
    PrimInfo { prim: Prim::DmInternalSuspendFast, name: "dm_internal_suspend_fast", args: "O", phases: &["dm_internal_suspend_fast(O): block I/O", "dm_internal_suspend_fast(O): dm_wait_for_completion"], acquires: Some(Res::OSuspended), releases: None, injectable: None, errors: &["EINVAL"], doc: "block new bios at O's entry (deferred, resubmitted on resume) and wait until every bio inside O completes; EINVAL for a blk-mq original" },
    PrimInfo { prim: Prim::DmInternalResumeFast, name: "dm_internal_resume_fast", args: "O", phases: &["dm_internal_resume_fast(O)"], acquires: None, releases: Some(Res::OSuspended), injectable: None, errors: &[], doc: "resume O; deferred bios are resubmitted through submit_bio_noacct by a kworker" },
    PrimInfo { prim: Prim::DmSuspend, name: "dm_suspend", args: "I", phases: &["dm_suspend(I): block I/O", "dm_suspend(I): dm_wait_for_completion"], acquires: Some(Res::ISuspended), releases: None, injectable: Some("EINTR"), errors: &["EINVAL", "EINTR"], doc: "block new bios at I's entry (deferred) and wait until every bio inside I completes" },
    PrimInfo { prim: Prim::DmResume, name: "dm_resume", args: "I", phases: &["dm_resume(I)"], acquires: None, releases: Some(Res::ISuspended), injectable: None, errors: &[], doc: "resume I; a kworker clones its deferred bios to O" },
    PrimInfo { prim: Prim::StoreInterposer, name: "store_interposer", args: "O, I", phases: &["WRITE_ONCE(O->bd_interposer, I)"], acquires: Some(Res::Pointer), releases: None, injectable: None, errors: &[], doc: "a plain store of I into O's interposer pointer; replaces whatever was there" },
    PrimInfo { prim: Prim::CmpxchgInterposer, name: "cmpxchg_interposer", args: "O, I", phases: &["cmpxchg(O->bd_interposer, NULL, I)"], acquires: Some(Res::Pointer), releases: None, injectable: None, errors: &["EBUSY"], doc: "set O's interposer pointer only if it is NULL; EBUSY otherwise" },
    PrimInfo { prim: Prim::ClearInterposer, name: "clear_interposer", args: "O", phases: &["WRITE_ONCE(O->bd_interposer, NULL)"], acquires: None, releases: Some(Res::Pointer), injectable: None, errors: &[], doc: "clear O's interposer pointer" },
    PrimInfo { prim: Prim::AssertFrozen, name: "assert_frozen", args: "O", phases: &["WARN_ON(!blk_mq_is_queue_frozen(O))"], acquires: None, releases: None, injectable: None, errors: &["EPERM"], doc: "EPERM unless O is frozen and drained at this instant; owns nothing" },
    PrimInfo { prim: Prim::CheckAlive, name: "bdev_check_alive", args: "O", phases: &["disk_live(O)"], acquires: None, releases: None, injectable: None, errors: &["ENODEV"], doc: "ENODEV once O has been removed" },
];

impl Prim {
    pub fn info(self) -> &'static PrimInfo {
        PRIMS
            .iter()
            .find(|p| p.prim == self)
            .expect("every prim has info")
    }
    pub fn name(self) -> &'static str {
        self.info().name
    }
    /// The call as written in a spec and printed in traces: `dm_suspend(I)`.
    pub fn call(self) -> String {
        let i = self.info();
        format!("{}({})", i.name, i.args)
    }
    /// The releasing primitive that undoes this acquiring one.
    pub fn inverse(self) -> Option<Prim> {
        let res = self.info().acquires?;
        PRIMS
            .iter()
            .find(|p| p.releases == Some(res))
            .map(|p| p.prim)
    }
    fn by_name(name: &str) -> Option<Prim> {
        PRIMS.iter().find(|p| p.name == name).map(|p| p.prim)
    }
}

/// One step of attach or detach.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CtlStep {
    pub prim: Prim,
    /// Run only for this kind of original (the step is skipped otherwise).
    pub only: Option<Kind>,
    /// A hand-written error path replacing the default unwind.
    pub on_error: Option<Vec<Prim>>,
}

/// The bounds of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Bounds {
    pub submitters: u8,
    pub bios: u8,
    pub controllers: u8,
    pub cycles: u8,
    pub failures: u8,
    pub freezers: u8,
    pub remover: bool,
}

/// What the checker must find for one kind of original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Pass,
    Violates(Vec<&'static str>),
}

/// A compiled spec: the step tables the model interprets and codegen renders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Protocol {
    pub hot_path: Vec<HotOp>,
    pub attach: Vec<CtlStep>,
    pub detach: Vec<CtlStep>,
    pub marker: MarkerKind,
    pub clone_inherits: bool,
    pub filesystem: bool,
    /// Primitives whose failure may be injected.
    pub inject: Vec<Prim>,
}

/// A parsed, validated spec file.
#[derive(Debug, Clone)]
pub struct Spec {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub sha256: String,
    pub kinds: Vec<Kind>,
    pub expect: BTreeMap<Kind, Expect>,
    /// Sanity properties the spec expects never to reach (say why in a comment).
    pub unreached: Vec<&'static str>,
    pub bounds: Bounds,
    pub protocol: Protocol,
}

// ---------------------------------------------------------------------------
// Raw TOML shape.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    original: RawOriginal,
    marker: RawMarker,
    bounds: RawBounds,
    #[serde(default)]
    failures: Option<RawFailures>,
    protocol: RawProtocol,
    expect: BTreeMap<Spanned<String>, Spanned<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOriginal {
    kinds: Spanned<Vec<Kind>>,
    #[serde(default)]
    filesystem: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarker {
    kind: MarkerKind,
    #[serde(default)]
    clone_inherits: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounds {
    submitters: Spanned<u8>,
    bios: Spanned<u8>,
    controllers: Spanned<u8>,
    cycles: Spanned<u8>,
    #[serde(default)]
    freezers: Option<Spanned<u8>>,
    #[serde(default)]
    remover: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailures {
    inject: Vec<Spanned<String>>,
    max: Spanned<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtocol {
    hot_path: Spanned<Vec<Spanned<RawHot>>>,
    attach: Spanned<Vec<Spanned<RawCtl>>>,
    detach: Spanned<Vec<Spanned<RawCtl>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawHot {
    Name(String),
    Table {
        step: String,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        marked: Option<String>,
        #[serde(default)]
        null: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCtl {
    Call(String),
    Table {
        call: String,
        #[serde(default)]
        only: Option<Kind>,
        #[serde(default)]
        on_error: Option<Vec<String>>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawExpect {
    Word(String),
    List(Vec<String>),
}

// ---------------------------------------------------------------------------

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

struct Ctx<'a> {
    file: String,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> SpecError {
        let (line, col) = line_col(self.text, span.start);
        SpecError {
            file: self.file.clone(),
            line,
            col,
            msg: msg.into(),
        }
    }
}

/// Parse one call such as `blk_mq_freeze_queue(O)`.
fn parse_call(ctx: &Ctx, span: Range<usize>, text: &str) -> Result<Prim, SpecError> {
    let t = text.trim();
    let (name, args) = match t.find('(') {
        Some(i) if t.ends_with(')') => (&t[..i], &t[i + 1..t.len() - 1]),
        _ => (t, ""),
    };
    let Some(prim) = Prim::by_name(name.trim()) else {
        let known: Vec<_> = PRIMS.iter().map(|p| p.name).collect();
        return Err(ctx.err(
            span,
            format!(
                "unknown step `{}`; known primitives: {}",
                name.trim(),
                known.join(", ")
            ),
        ));
    };
    let want = prim.info().args;
    let norm = |s: &str| {
        s.split(',')
            .map(|a| a.trim().to_string())
            .collect::<Vec<_>>()
    };
    if norm(args) != norm(want) {
        return Err(ctx.err(
            span,
            format!("`{}` takes ({want}), not ({})", prim.name(), args.trim()),
        ));
    }
    Ok(prim)
}

fn compile_ctl(
    ctx: &Ctx,
    list: &Spanned<Vec<Spanned<RawCtl>>>,
    what: &str,
) -> Result<Vec<CtlStep>, SpecError> {
    if list.get_ref().is_empty() {
        return Err(ctx.err(list.span(), format!("`{what}` has no steps")));
    }
    let mut out = Vec::new();
    for step in list.get_ref() {
        let span = step.span();
        out.push(match step.get_ref() {
            RawCtl::Call(c) => CtlStep {
                prim: parse_call(ctx, span, c)?,
                only: None,
                on_error: None,
            },
            RawCtl::Table {
                call,
                only,
                on_error,
            } => CtlStep {
                prim: parse_call(ctx, span.clone(), call)?,
                only: *only,
                on_error: match on_error {
                    None => None,
                    Some(v) => Some(
                        v.iter()
                            .map(|c| parse_call(ctx, span.clone(), c))
                            .collect::<Result<_, _>>()?,
                    ),
                },
            },
        });
    }
    Ok(out)
}

fn compile_hot(ctx: &Ctx, list: &Spanned<Vec<Spanned<RawHot>>>) -> Result<Vec<HotOp>, SpecError> {
    let steps = list.get_ref();
    if steps.is_empty() {
        return Err(ctx.err(list.span(), "`hot_path` has no steps"));
    }
    if steps.len() > 60 {
        return Err(ctx.err(list.span(), "`hot_path` has more than 60 steps"));
    }
    let mut labels: BTreeMap<&str, u8> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        if let RawHot::Table { label: Some(l), .. } = s.get_ref() {
            if labels.insert(l.as_str(), i as u8).is_some() {
                return Err(ctx.err(s.span(), format!("label `{l}` is defined twice")));
            }
        }
    }
    let target = |span: Range<usize>, l: &Option<String>, what: &str| -> Result<u8, SpecError> {
        match l {
            None => Err(ctx.err(
                span,
                format!(
                    "`{what}` needs a jump target, e.g. {{ step = \"{what}\", {} = \"submit\" }}",
                    if what == "test_marker" {
                        "marked"
                    } else {
                        "null"
                    }
                ),
            )),
            Some(l) => labels
                .get(l.as_str())
                .copied()
                .ok_or_else(|| ctx.err(span, format!("jump to unknown label `{l}`"))),
        }
    };
    let mut ops = Vec::new();
    for s in steps {
        let span = s.span();
        let (name, marked, null) = match s.get_ref() {
            RawHot::Name(n) => (n.as_str(), &None, &None),
            RawHot::Table {
                step, marked, null, ..
            } => (step.as_str(), marked, null),
        };
        let op = match name {
            "bio_queue_enter" => HotOp::QueueEnter,
            "blk_queue_exit" => HotOp::QueueExit,
            "test_marker" => HotOp::TestMarker { marked: target(span.clone(), marked, name)? },
            "read_interposer" => HotOp::ReadInterposer { null: target(span.clone(), null, name)? },
            "set_marker" => HotOp::SetMarker,
            "redirect" => HotOp::Redirect,
            "driver_submit" => HotOp::DriverSubmit,
            "return" => HotOp::Return,
            "restart" => HotOp::Restart,
            other => {
                return Err(ctx.err(
                    span,
                    format!("unknown hot-path step `{other}`; known steps: bio_queue_enter, blk_queue_exit, test_marker, read_interposer, set_marker, redirect, driver_submit, return, restart"),
                ))
            }
        };
        if (marked.is_some() && name != "test_marker")
            || (null.is_some() && name != "read_interposer")
        {
            return Err(ctx.err(span, format!("`{name}` takes no jump target")));
        }
        ops.push(op);
    }
    let spans: Vec<_> = steps.iter().map(|s| s.span()).collect();
    check_hot_flow(ctx, &ops, &spans)?;
    Ok(ops)
}

/// What is known at a hot-path step about the pass: (holds a queue reference, pointer loaded).
/// Each is a set of possible values as bits: 1 = false possible, 2 = true possible.
fn check_hot_flow(ctx: &Ctx, ops: &[HotOp], spans: &[Range<usize>]) -> Result<(), SpecError> {
    let n = ops.len();
    let mut facts: Vec<Option<(u8, u8)>> = vec![None; n + 1];
    facts[0] = Some((1, 1));
    let mut work = vec![0usize];
    let join = |slot: &mut Option<(u8, u8)>, f: (u8, u8)| -> bool {
        let new = match *slot {
            None => f,
            Some((q, p)) => (q | f.0, p | f.1),
        };
        let changed = *slot != Some(new);
        *slot = Some(new);
        changed
    };
    while let Some(i) = work.pop() {
        if i >= n {
            continue;
        }
        let (q, p) = facts[i].expect("visited");
        let mut succ: Vec<(usize, (u8, u8))> = Vec::new();
        match ops[i] {
            HotOp::QueueEnter => {
                if q & 2 != 0 {
                    return Err(ctx.err(spans[i].clone(), "`bio_queue_enter` while this pass may already hold O's queue reference; a nested enter blocks behind a pending freeze"));
                }
                succ.push((i + 1, (2, p)));
            }
            HotOp::QueueExit => succ.push((i + 1, (1, p))),
            HotOp::TestMarker { marked } => {
                succ.push((i + 1, (q, p)));
                succ.push((marked as usize, (q, p)));
            }
            HotOp::ReadInterposer { null } => {
                succ.push((i + 1, (q, 2)));
                succ.push((null as usize, (q, 1)));
            }
            HotOp::Redirect => {
                if p != 2 {
                    return Err(ctx.err(spans[i].clone(), "`redirect` may run without a non-NULL interposer pointer; put `read_interposer` before it on every path"));
                }
                succ.push((i + 1, (q, p)));
            }
            HotOp::DriverSubmit => {
                if q != 2 {
                    return Err(ctx.err(spans[i].clone(), "`driver_submit` may run without O's queue reference; put `bio_queue_enter` before it on every path"));
                }
                succ.push((i + 1, (q, p)));
            }
            HotOp::SetMarker => succ.push((i + 1, (q, p))),
            HotOp::Return => {}
            HotOp::Restart => {
                if q & 2 != 0 {
                    return Err(ctx.err(spans[i].clone(), "`restart` while this pass may hold O's queue reference; drop it with `blk_queue_exit` first"));
                }
                succ.push((0, (1, 1)));
            }
        }
        for (j, f) in succ {
            if join(&mut facts[j], f) {
                work.push(j);
            }
        }
    }
    if !ops.contains(&HotOp::DriverSubmit) {
        return Err(ctx.err(
            spans[0].clone(),
            "`hot_path` never reaches `driver_submit`: no bio could reach O",
        ));
    }
    Ok(())
}

fn all_properties() -> impl Iterator<Item = &'static str> {
    SAFETY.iter().chain(SANITY.iter()).copied()
}

impl Spec {
    /// Read and parse a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            msg: format!("cannot read spec: {e}"),
        })?;
        Spec::parse(path, &text)
    }

    /// Parse spec text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecError> {
        let ctx = Ctx {
            file: path.display().to_string(),
            text,
        };
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.err(span, e.message().trim().to_string())
        })?;

        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ctx.err(
                raw.name.span(),
                "`name` must be a non-empty identifier of letters, digits, `_` and `-`",
            ));
        }

        let mut kinds = raw.original.kinds.get_ref().clone();
        kinds.sort();
        kinds.dedup();
        if kinds.is_empty() {
            return Err(ctx.err(
                raw.original.kinds.span(),
                "`kinds` must name at least one of \"request\", \"bio\"",
            ));
        }

        let b = &raw.bounds;
        let bounds = Bounds {
            submitters: *b.submitters.get_ref(),
            bios: *b.bios.get_ref(),
            controllers: *b.controllers.get_ref(),
            cycles: *b.cycles.get_ref(),
            failures: raw.failures.as_ref().map_or(0, |f| *f.max.get_ref()),
            freezers: b.freezers.as_ref().map_or(0, |f| *f.get_ref()),
            remover: b.remover,
        };
        for (v, span, what, lo, hi) in [
            (bounds.submitters, b.submitters.span(), "submitters", 1, 4),
            (bounds.bios, b.bios.span(), "bios", 1, 4),
            (
                bounds.controllers,
                b.controllers.span(),
                "controllers",
                1,
                3,
            ),
            (bounds.cycles, b.cycles.span(), "cycles", 1, 4),
            (
                bounds.freezers,
                b.freezers.as_ref().map_or(0..0, |f| f.span()),
                "freezers",
                0,
                2,
            ),
        ] {
            if v < lo || v > hi {
                return Err(ctx.err(
                    span,
                    format!("impossible bound: {what} = {v}; it must be between {lo} and {hi}"),
                ));
            }
        }

        let mut inject = Vec::new();
        if let Some(f) = &raw.failures {
            if *f.max.get_ref() > 4 {
                return Err(ctx.err(
                    f.max.span(),
                    "impossible bound: failures.max must be at most 4",
                ));
            }
            for s in &f.inject {
                let prim = Prim::by_name(s.get_ref()).ok_or_else(|| {
                    ctx.err(
                        s.span(),
                        format!("unknown primitive `{}` in failures.inject", s.get_ref()),
                    )
                })?;
                if prim.info().injectable.is_none() {
                    let can: Vec<_> = PRIMS
                        .iter()
                        .filter(|p| p.injectable.is_some())
                        .map(|p| p.name)
                        .collect();
                    return Err(ctx.err(
                        s.span(),
                        format!(
                            "`{}` cannot fail in the kernel; injectable: {}",
                            prim.name(),
                            can.join(", ")
                        ),
                    ));
                }
                inject.push(prim);
            }
            inject.sort();
            inject.dedup();
        }

        let hot_path = compile_hot(&ctx, &raw.protocol.hot_path)?;
        let attach = compile_ctl(&ctx, &raw.protocol.attach, "attach")?;
        let detach = compile_ctl(&ctx, &raw.protocol.detach, "detach")?;
        if raw.marker.kind == MarkerKind::None && hot_path.contains(&HotOp::SetMarker) {
            return Err(ctx.err(raw.protocol.hot_path.span(), "`set_marker` with marker.kind = \"none\": choose \"bio_flag\" or \"task\", or drop the step"));
        }

        let mut expect = BTreeMap::new();
        let mut unreached = Vec::new();
        for (k, v) in &raw.expect {
            if k.get_ref() == "unreached" {
                let RawExpect::List(props) = v.get_ref() else {
                    return Err(ctx.err(v.span(), "`unreached` is a list of sanity properties"));
                };
                for p in props {
                    let Some(n) = SANITY.iter().find(|s| *s == p) else {
                        return Err(ctx.err(
                            v.span(),
                            format!(
                                "unknown sanity property `{p}`; sanity properties: {}",
                                SANITY.join(", ")
                            ),
                        ));
                    };
                    unreached.push(*n);
                }
                continue;
            }
            let kinds_here: Vec<Kind> = match k.get_ref().as_str() {
                "all" => kinds.clone(),
                "request" => vec![Kind::Request],
                "bio" => vec![Kind::Bio],
                other => return Err(ctx.err(k.span(), format!("unknown key `{other}` in [expect]; use \"all\", \"request\", \"bio\" or \"unreached\""))),
            };
            let e = match v.get_ref() {
                RawExpect::Word(w) if w == "pass" => Expect::Pass,
                RawExpect::Word(w) => {
                    return Err(ctx.err(
                        v.span(),
                        format!("expected \"pass\" or a list of properties, found \"{w}\""),
                    ))
                }
                RawExpect::List(props) => {
                    if props.is_empty() {
                        return Err(ctx.err(
                            v.span(),
                            "an empty list of violations: write \"pass\" instead",
                        ));
                    }
                    let mut names = Vec::new();
                    for p in props {
                        let Some(n) = SAFETY.iter().find(|s| *s == p) else {
                            let known: Vec<_> = all_properties().collect();
                            return Err(ctx.err(
                                v.span(),
                                format!(
                                    "unknown property `{p}`; safety properties: {}",
                                    known[..SAFETY.len()].join(", ")
                                ),
                            ));
                        };
                        names.push(*n);
                    }
                    names.sort();
                    names.dedup();
                    Expect::Violates(names)
                }
            };
            for kind in kinds_here {
                if !kinds.contains(&kind) {
                    return Err(ctx.err(
                        k.span(),
                        format!(
                            "[expect] names kind `{kind}`, which [original] kinds does not check"
                        ),
                    ));
                }
                expect.insert(kind, e.clone());
            }
        }
        for kind in &kinds {
            if !expect.contains_key(kind) {
                return Err(ctx.err(0..0, format!("[expect] gives no verdict for kind `{kind}`")));
            }
        }

        Ok(Spec {
            path: path.to_path_buf(),
            name,
            description: raw.description.trim().to_string(),
            sha256: hex(&Sha256::digest(text.as_bytes())),
            kinds,
            expect,
            unreached,
            bounds,
            protocol: Protocol {
                hot_path,
                attach,
                detach,
                marker: raw.marker.kind,
                clone_inherits: raw.marker.clone_inherits,
                filesystem: raw.original.filesystem,
                inject,
            },
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Command-line overrides of a spec's bounds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub submitters: Option<u8>,
    pub bios: Option<u8>,
    pub controllers: Option<u8>,
    pub cycles: Option<u8>,
    pub failures: Option<u8>,
}

impl Overrides {
    /// All five bounds of one benchmark-series size:
    /// (submitters, bios, controllers, cycles, failures).
    pub fn size((s, b, c, y, f): (u8, u8, u8, u8, u8)) -> Self {
        Overrides {
            submitters: Some(s),
            bios: Some(b),
            controllers: Some(c),
            cycles: Some(y),
            failures: Some(f),
        }
    }
}

impl Bounds {
    /// Apply overrides; an impossible bound is an error naming the option.
    pub fn with(mut self, o: &Overrides) -> Result<Bounds, String> {
        let check = |v: u8, what: &str, lo: u8, hi: u8| {
            if v < lo || v > hi {
                Err(format!(
                    "impossible bound: --{what} {v}; it must be between {lo} and {hi}"
                ))
            } else {
                Ok(v)
            }
        };
        if let Some(v) = o.submitters {
            self.submitters = check(v, "submitters", 1, 4)?;
        }
        if let Some(v) = o.bios {
            self.bios = check(v, "bios", 1, 4)?;
        }
        if let Some(v) = o.controllers {
            self.controllers = check(v, "controllers", 1, 3)?;
        }
        if let Some(v) = o.cycles {
            self.cycles = check(v, "cycles", 1, 4)?;
        }
        if let Some(v) = o.failures {
            self.failures = check(v, "failures", 0, 4)?;
        }
        Ok(self)
    }
}
