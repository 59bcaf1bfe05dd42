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
pub const SAFETY: [&str; 9] = [
    "no_use_after_free",
    "no_bypass",
    "exactly_once",
    "no_recursion",
    "no_deadlock",
    "clean_exit",
    "single_owner",
    "point_of_no_return",
    "nowait_never_blocks",
];

pub use crate::live::LIVENESS;

/// Names of the sanity (`sometimes`) properties.
pub const SANITY: [&str; 3] = ["bio_redirected", "attach_under_io", "attach_unwinds"];

/// A spec error: where, and why. `line` 0 is an error about the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
    /// The source line, and how many columns of it the error covers.
    pub source: Option<(String, usize)>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.msg);
        }
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.msg)?;
        if let Some((text, width)) = &self.source {
            let n = self.line.to_string();
            let pad = " ".repeat(n.len());
            // The caret under the column: count characters, not bytes.
            let lead: String = text
                .chars()
                .take(self.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n {n} | {text}\n {pad} | {lead}{}",
                "^".repeat((*width).max(1))
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Every error found in one spec, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{}: {} errors", self.0[0].file, self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl SpecErrors {
    /// The first error (there is always one).
    pub fn first(&self) -> &SpecError {
        &self.0[0]
    }
}

/// ` (did you mean `x`?)` when a known name is close to `name`, else nothing.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let best = known
        .into_iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .min();
    match best {
        Some((d, k)) if d > 0 && d <= (name.len() / 3).max(2) => format!(" (did you mean `{k}`?)"),
        _ => String::new(),
    }
}

/// The range of each bound: (name, lowest, highest).
pub const BOUND_RANGES: [(&str, i64, i64); 6] = [
    ("submitters", 1, 4),
    ("bios", 1, 4),
    ("controllers", 1, 3),
    ("cycles", 1, 4),
    ("freezers", 0, 2),
    ("failures", 0, 4),
];

/// A bound's value, or the one message used for a spec's value and a command-line
/// override alike: `submitters must be between 1 and 4, not 9`.
pub fn check_bound(what: &str, v: i64) -> Result<u8, String> {
    let (_, lo, hi) = BOUND_RANGES
        .iter()
        .find(|(n, _, _)| *n == what)
        .copied()
        .expect("a known bound");
    if v < lo || v > hi {
        Err(format!("{what} must be between {lo} and {hi}, not {v}"))
    } else {
        Ok(v as u8)
    }
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
    /// bio-based, not device-mapper, and every bio completes inside O's
    /// `->submit_bio` (brd): the queue reference covers the bio's whole life.
    BioSync,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Bio => "bio",
            Kind::BioSync => "bio_sync",
        }
    }
    /// Every kind, in the order specs list them.
    pub const ALL: [Kind; 3] = [Kind::Request, Kind::Bio, Kind::BioSync];
    /// The kind a spec or a command line names.
    pub fn by_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
    /// The Rust variant the generated code names it by.
    pub fn variant(self) -> &'static str {
        match self {
            Kind::Request => "Request",
            Kind::Bio => "Bio",
            Kind::BioSync => "BioSync",
        }
    }
}

/// What the interposer I is, and so which primitives create, hold and drain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IKind {
    /// A device-mapper device: `dm_create`, `blkdev_get_excl`, `dm_suspend`, ...
    #[default]
    Dm,
    /// A filter object with ops and an owner module, allocated by its user:
    /// `filter_alloc`, `try_module_get`, `filter_block`, ...
    Filter,
}

/// How a submitter sends its bios to O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubmitPath {
    /// `submit_bio()`: may wait for a frozen queue.
    #[default]
    SubmitBio,
    /// `submit_bio()` of a `REQ_NOWAIT` bio (io_uring, `RWF_NOWAIT`): it must
    /// fail with `EAGAIN` rather than wait for a frozen queue.
    Nowait,
    /// A passthrough request (`SG_IO`, NVMe passthrough): allocated with
    /// `blk_mq_alloc_request()` and run with `blk_execute_rq()`, it never enters
    /// `submit_bio_noacct()`, so the bio hook never sees it. Its steps are the
    /// protocol's `passthrough` list.
    Passthrough,
    /// A bio sent to a device S stacked on O (dm-linear over O, a partition
    /// table driver): S's `->submit_bio` sends its clone on to O, from inside
    /// its own submission, so the clone passes O's hook with `current->bio_list`
    /// set. It carries none of the bio's flags.
    Stacked,
}

impl SubmitPath {
    pub fn name(self) -> &'static str {
        match self {
            SubmitPath::SubmitBio => "submit_bio",
            SubmitPath::Nowait => "nowait",
            SubmitPath::Passthrough => "passthrough",
            SubmitPath::Stacked => "stacked",
        }
    }
}

/// Whether I may hold a bio it was handed and resubmit it later from a worker,
/// as a copy-on-write filter does while it reads the old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Park {
    /// A parked bio stays in I's in-flight count until its clone completes:
    /// `dm_suspend(I)` and `filter_block(I)` wait for it.
    Counted,
    /// The count drops when I's `->submit_bio` returns with the bio parked:
    /// the drain does not wait for it.
    Uncounted,
}

impl IKind {
    pub fn name(self) -> &'static str {
        match self {
            IKind::Dm => "dm",
            IKind::Filter => "filter",
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
    /// Take O's `q_usage_counter`; blocks while O is frozen (a `REQ_NOWAIT`
    /// bio fails with `EAGAIN` instead), fails the bio once O is gone.
    QueueEnter,
    /// `blk_queue_enter(q, 0)`: the same reference taken by the hook itself,
    /// blocking while O is frozen whatever the bio's `REQ_NOWAIT` says.
    BlkQueueEnter,
    /// Drop the reference this pass holds, if any (for blk-mq the request took
    /// it over at `driver_submit`).
    QueueExit,
    /// If the bio (or task) is marked, jump to the target step.
    TestMarker { marked: u8 },
    /// `ip = READ_ONCE(O->bd_interposer)`; if NULL, jump to the target step.
    ReadInterposer { null: u8 },
    /// If `current->bio_list` is set (the bio was submitted from inside a
    /// `->submit_bio`: I's clone, a split remainder), jump to the target step.
    TestBioList { set: u8 },
    /// Mark the bio (`BIO_INTERPOSED`) or the task.
    SetMarker,
    /// Clear the task's marker. A hot path that has this step owns the task
    /// marker's lifetime: the core no longer drops it when the call returns.
    ClearMarker,
    /// `bio_set_dev(bio, ip); ip->submit_bio(bio)`: hand the bio to I.
    Redirect,
    /// O's own path: `blk_mq_submit_bio` or `O->submit_bio`.
    DriverSubmit,
    /// Return from the hook.
    Return,
    /// Resubmit the bio from the top of `submit_bio_noacct` if it was not handed off.
    Restart,
    /// `rcu_read_lock()`: enter an RCU read-side critical section.
    RcuLock,
    /// `rcu_read_unlock()`: leave it; a grace period waits for no more.
    RcuUnlock,
    /// `refcount_inc(&ip->refs)` on the filter the pass read: the pass, then
    /// I's clone, holds a reference until the clone completes (I's end_io
    /// drops it). Taken on a freed filter, it is a use after free.
    FilterGet,
    /// `refcount_inc_not_zero(&ip->refs)`: take a reference unless the
    /// filter's count already reached zero (its release has run and its
    /// memory awaits an RCU grace period, `kfree_rcu`); then jump to the
    /// target step. Memory already freed is a use after free.
    FilterTryGet { zero: u8 },
    /// Passthrough only: the caller gets `-EBUSY` and the pass ends; a request
    /// already allocated is freed unissued (`blk_mq_free_request()` drops the
    /// queue reference the allocation took).
    FailBusy,
}

impl HotOp {
    pub fn name(self) -> &'static str {
        match self {
            HotOp::QueueEnter => "bio_queue_enter",
            HotOp::BlkQueueEnter => "blk_queue_enter",
            HotOp::QueueExit => "blk_queue_exit",
            HotOp::TestMarker { .. } => "test_marker",
            HotOp::ReadInterposer { .. } => "read_interposer",
            HotOp::TestBioList { .. } => "test_bio_list",
            HotOp::SetMarker => "set_marker",
            HotOp::ClearMarker => "clear_marker",
            HotOp::Redirect => "redirect",
            HotOp::DriverSubmit => "driver_submit",
            HotOp::Return => "return",
            HotOp::Restart => "restart",
            HotOp::RcuLock => "rcu_read_lock",
            HotOp::RcuUnlock => "rcu_read_unlock",
            HotOp::FailBusy => "fail_busy",
            HotOp::FilterGet => "filter_get",
            HotOp::FilterTryGet { .. } => "filter_tryget",
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
    /// A reference on the module that owns I's ops.
    ModRef,
}

/// A control primitive, named as in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prim {
    MutexLock,
    /// Take `open_mutex` only if it is free; `EBUSY` otherwise.
    MutexTrylock,
    MutexUnlock,
    DmCreate,
    DmDestroy,
    BlkdevGetExcl,
    BlkdevPut,
    FreezeBdev,
    ThawBdev,
    /// `freeze_bdev` under its name since Linux 6.8.
    BdevFreeze,
    /// `thaw_bdev` under its name since Linux 6.8.
    BdevThaw,
    FreezeQueue,
    UnfreezeQueue,
    DmInternalSuspendFast,
    DmInternalResumeFast,
    DmSuspend,
    DmResume,
    /// `DM_TABLE_LOAD`: build I's table into its inactive slot.
    DmTableLoad,
    /// The targets' preresume hooks on the inactive table, before it goes live.
    DmPreresume,
    /// The pointer test of a check-then-set written in two steps.
    TestInterposer,
    /// Wait for a grace period: every RCU reader that began before it has left.
    SynchronizeRcu,
    StoreInterposer,
    CmpxchgInterposer,
    ClearInterposer,
    AssertFrozen,
    CheckAlive,
    FilterAlloc,
    FilterFree,
    /// Drop the attachment's reference on a refcounted filter; the last
    /// reference, maybe a bio's, frees it. (After `FilterFree` in [`PRIMS`]:
    /// `filter_alloc`'s default unwind is `filter_free`.)
    FilterPut,
    TryModuleGet,
    ModulePut,
    /// Hand the attach's module reference to the filter: its release, at the
    /// last reference, drops it. (After `ModulePut` in [`PRIMS`]:
    /// `try_module_get`'s default unwind stays `module_put`.)
    FilterOwnModule,
    FilterBlock,
    FilterUnblock,
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
    PrimInfo { prim: Prim::MutexTrylock, name: "mutex_trylock", args: "open_mutex", phases: &["mutex_trylock(open_mutex)"], acquires: Some(Res::Mutex), releases: None, injectable: None, errors: &["EBUSY"], doc: "take O's open_mutex if no thread holds it; EBUSY at once otherwise (the caller does not wait)" },
    PrimInfo { prim: Prim::MutexUnlock, name: "mutex_unlock", args: "open_mutex", phases: &["mutex_unlock(open_mutex)"], acquires: None, releases: Some(Res::Mutex), injectable: None, errors: &[], doc: "release O's open_mutex" },
    PrimInfo { prim: Prim::DmCreate, name: "dm_create", args: "I", phases: &["dm_create(I)"], acquires: Some(Res::ICreated), releases: None, injectable: Some("ENOMEM"), errors: &["EEXIST", "ENOMEM"], doc: "allocate the interposer device I and load its table (EEXIST if it exists)" },
    PrimInfo { prim: Prim::DmDestroy, name: "dm_destroy", args: "I", phases: &["dm_destroy(I)"], acquires: None, releases: Some(Res::ICreated), injectable: None, errors: &[], doc: "free I; anything that touches it afterwards is a use after free" },
    PrimInfo { prim: Prim::BlkdevGetExcl, name: "blkdev_get_excl", args: "I", phases: &["blkdev_get_excl(I)"], acquires: Some(Res::IOpen), releases: None, injectable: Some("EBUSY"), errors: &["ENXIO", "EBUSY"], doc: "open I exclusively (ENXIO if not created, EBUSY if already held)" },
    PrimInfo { prim: Prim::BlkdevPut, name: "blkdev_put", args: "I", phases: &["blkdev_put(I)"], acquires: None, releases: Some(Res::IOpen), injectable: None, errors: &[], doc: "close I" },
    PrimInfo { prim: Prim::FreezeBdev, name: "freeze_bdev", args: "O", phases: &["freeze_bdev(O): sb_wait_write", "freeze_bdev(O): writers drained", "freeze_bdev(O): sync_filesystem"], acquires: Some(Res::FsFrozen), releases: None, injectable: Some("EBUSY"), errors: &["EBUSY"], doc: "freeze the filesystem on O: block new writes, wait for writers, write the superblock through the normal I/O path and wait for all filesystem I/O; a no-op without a filesystem" },
    PrimInfo { prim: Prim::ThawBdev, name: "thaw_bdev", args: "O", phases: &["thaw_bdev(O)"], acquires: None, releases: Some(Res::FsFrozen), injectable: None, errors: &[], doc: "thaw the filesystem on O" },
    PrimInfo { prim: Prim::BdevFreeze, name: "bdev_freeze", args: "O", phases: &["bdev_freeze(O): sb_wait_write", "bdev_freeze(O): writers drained", "bdev_freeze(O): sync_filesystem"], acquires: Some(Res::FsFrozen), releases: None, injectable: Some("EBUSY"), errors: &["EBUSY"], doc: "freeze_bdev under its name since Linux 6.8: freeze the filesystem mounted on O (through its holder's ops) or, with none, sync O; nests" },
    PrimInfo { prim: Prim::BdevThaw, name: "bdev_thaw", args: "O", phases: &["bdev_thaw(O)"], acquires: None, releases: Some(Res::FsFrozen), injectable: None, errors: &[], doc: "thaw_bdev under its name since Linux 6.8: thaw what bdev_freeze(O) froze" },
    PrimInfo { prim: Prim::FreezeQueue, name: "blk_mq_freeze_queue", args: "O", phases: &["blk_freeze_queue_start(O)", "blk_mq_freeze_queue_wait(O)"], acquires: Some(Res::QFrozen), releases: None, injectable: None, errors: &[], doc: "no new queue references on O; wait until O's references drain" },
    PrimInfo { prim: Prim::UnfreezeQueue, name: "blk_mq_unfreeze_queue", args: "O", phases: &["blk_mq_unfreeze_queue(O)"], acquires: None, releases: Some(Res::QFrozen), injectable: None, errors: &[], doc: "drop this thread's freeze of O" },
    PrimInfo { prim: Prim::DmInternalSuspendFast, name: "dm_internal_suspend_fast", args: "O", phases: &["dm_internal_suspend_fast(O): block I/O", "dm_internal_suspend_fast(O): dm_wait_for_completion"], acquires: Some(Res::OSuspended), releases: None, injectable: None, errors: &["EINVAL"], doc: "block new bios at O's entry (deferred, resubmitted on resume) and wait until every bio inside O completes; EINVAL for a blk-mq original" },
    PrimInfo { prim: Prim::DmInternalResumeFast, name: "dm_internal_resume_fast", args: "O", phases: &["dm_internal_resume_fast(O)"], acquires: None, releases: Some(Res::OSuspended), injectable: None, errors: &[], doc: "resume O; deferred bios are resubmitted through submit_bio_noacct by a kworker" },
    PrimInfo { prim: Prim::DmSuspend, name: "dm_suspend", args: "I", phases: &["dm_suspend(I): block I/O", "dm_suspend(I): dm_wait_for_completion"], acquires: Some(Res::ISuspended), releases: None, injectable: Some("EINTR"), errors: &["EINVAL", "EINTR"], doc: "block new bios at I's entry (deferred) and wait until every bio inside I completes" },
    PrimInfo { prim: Prim::DmResume, name: "dm_resume", args: "I", phases: &["dm_resume(I)"], acquires: None, releases: Some(Res::ISuspended), injectable: None, errors: &[], doc: "resume I; a kworker clones its deferred bios to O" },
    PrimInfo { prim: Prim::DmTableLoad, name: "dm_table_load", args: "I", phases: &["dm_table_load(I)"], acquires: None, releases: None, injectable: Some("EINVAL"), errors: &["ENXIO", "EINVAL"], doc: "DM_TABLE_LOAD: run the targets' constructors into I's inactive table (EINVAL or ENOMEM from a constructor; ENXIO without I); I keeps deferring the bios it is handed, and the table is freed with I" },
    PrimInfo { prim: Prim::DmPreresume, name: "dm_preresume", args: "I", phases: &["dm_table_resume_targets(I): preresume"], acquires: None, releases: None, injectable: Some("EINVAL"), errors: &["ENXIO", "EINVAL"], doc: "the targets' preresume hooks on I's loaded table, the last step of a resume that can fail (a snapshot target checks its origin and exception store); I is still not live" },
    PrimInfo { prim: Prim::SynchronizeRcu, name: "synchronize_rcu", args: "", phases: &["synchronize_rcu(): start a grace period", "synchronize_rcu(): wait for the readers before it"], acquires: None, releases: None, injectable: None, errors: &[], doc: "wait until every RCU read-side critical section that began before the call has ended (readers that begin later are not waited for)" },
    PrimInfo { prim: Prim::TestInterposer, name: "test_interposer", args: "O", phases: &["if (READ_ONCE(O->bd_interposer)) return -EBUSY"], acquires: None, releases: None, injectable: None, errors: &["EBUSY"], doc: "EBUSY if O has an interposer at this instant; owns nothing, and another controller may set the pointer right after (a check-then-set written in two steps)" },
    PrimInfo { prim: Prim::StoreInterposer, name: "store_interposer", args: "O, I", phases: &["WRITE_ONCE(O->bd_interposer, I)"], acquires: Some(Res::Pointer), releases: None, injectable: None, errors: &[], doc: "a plain store of I into O's interposer pointer; replaces whatever was there" },
    PrimInfo { prim: Prim::CmpxchgInterposer, name: "cmpxchg_interposer", args: "O, I", phases: &["cmpxchg(O->bd_interposer, NULL, I)"], acquires: Some(Res::Pointer), releases: None, injectable: None, errors: &["EBUSY"], doc: "set O's interposer pointer only if it is NULL; EBUSY otherwise" },
    PrimInfo { prim: Prim::ClearInterposer, name: "clear_interposer", args: "O", phases: &["WRITE_ONCE(O->bd_interposer, NULL)"], acquires: None, releases: Some(Res::Pointer), injectable: None, errors: &[], doc: "clear O's interposer pointer" },
    PrimInfo { prim: Prim::AssertFrozen, name: "assert_frozen", args: "O", phases: &["WARN_ON(!blk_mq_is_queue_frozen(O))"], acquires: None, releases: None, injectable: None, errors: &["EPERM"], doc: "EPERM unless O is frozen and drained at this instant; owns nothing" },
    PrimInfo { prim: Prim::FilterAlloc, name: "filter_alloc", args: "I", phases: &["filter_alloc(I)"], acquires: Some(Res::ICreated), releases: None, injectable: Some("ENOMEM"), errors: &["EEXIST", "ENOMEM"], doc: "allocate the filter I with its ops, bio_set and changed-block map (EEXIST if it exists)" },
    PrimInfo { prim: Prim::FilterFree, name: "filter_free", args: "I", phases: &["filter_free(I)"], acquires: None, releases: Some(Res::ICreated), injectable: None, errors: &[], doc: "free the filter I (bioset_exit, kfree); anything that touches it afterwards is a use after free" },
    PrimInfo { prim: Prim::FilterPut, name: "filter_put", args: "I", phases: &["filter_put(I)"], acquires: None, releases: Some(Res::ICreated), injectable: None, errors: &[], doc: "drop the attachment's reference on the filter I (refcount_dec_and_test); the filter is freed at its last reference, which a bio's completion may drop later" },
    PrimInfo { prim: Prim::TryModuleGet, name: "try_module_get", args: "I->owner", phases: &["try_module_get(I->owner)"], acquires: Some(Res::ModRef), releases: None, injectable: Some("ENODEV"), errors: &["ENODEV"], doc: "take a reference on the module that owns I's ops, so it cannot be unloaded while O's hook may call into it (ENODEV while it is being unloaded)" },
    PrimInfo { prim: Prim::ModulePut, name: "module_put", args: "I->owner", phases: &["module_put(I->owner)"], acquires: None, releases: Some(Res::ModRef), injectable: None, errors: &[], doc: "drop the reference on I's owner module" },
    PrimInfo { prim: Prim::FilterOwnModule, name: "filter_own_module", args: "I", phases: &["filter_own_module(I): I->owner holds the module reference"], acquires: None, releases: Some(Res::ModRef), injectable: None, errors: &[], doc: "hand the module reference try_module_get took to the filter I: the filter's release, at its last reference (detach's filter_put or a clone's end_io), calls module_put(I->owner); the caller no longer holds it" },
    PrimInfo { prim: Prim::FilterBlock, name: "filter_block", args: "I", phases: &["filter_block(I): set I->blocked", "filter_block(I): wait_var_event(I->inflight == 0)"], acquires: Some(Res::ISuspended), releases: None, injectable: None, errors: &[], doc: "from now on I defers the bios it is handed; then wait, uninterruptibly, until every clone I sent to O has completed" },
    PrimInfo { prim: Prim::FilterUnblock, name: "filter_unblock", args: "I", phases: &["filter_unblock(I)"], acquires: None, releases: Some(Res::ISuspended), injectable: None, errors: &[], doc: "I takes bios again; a kworker resubmits the bios it deferred, as clones to O" },
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
    /// The releasing primitive that undoes this acquiring one (of the same
    /// interposer kind).
    pub fn inverse(self) -> Option<Prim> {
        // Under the name it was called by.
        match self {
            Prim::FreezeBdev => return Some(Prim::ThawBdev),
            Prim::BdevFreeze => return Some(Prim::BdevThaw),
            _ => {}
        }
        let res = self.info().acquires?;
        PRIMS
            .iter()
            .find(|p| p.releases == Some(res) && p.prim.ikind() == self.ikind())
            .map(|p| p.prim)
    }
    /// The interposer kind this primitive belongs to; `None` for those that
    /// do not touch I as a device or a filter.
    pub fn ikind(self) -> Option<IKind> {
        match self {
            Prim::DmCreate
            | Prim::DmDestroy
            | Prim::BlkdevGetExcl
            | Prim::BlkdevPut
            | Prim::DmSuspend
            | Prim::DmResume
            | Prim::DmTableLoad
            | Prim::DmPreresume => Some(IKind::Dm),
            Prim::FilterAlloc
            | Prim::FilterFree
            | Prim::FilterPut
            | Prim::TryModuleGet
            | Prim::ModulePut
            | Prim::FilterOwnModule
            | Prim::FilterBlock
            | Prim::FilterUnblock => Some(IKind::Filter),
            _ => None,
        }
    }
    /// The primitive whose model meaning this one has: a filter is created,
    /// freed, blocked and unblocked as a device-mapper I is (the model's state
    /// of I is the same), under its own kernel names.
    pub fn meaning(self) -> Prim {
        match self {
            Prim::FilterAlloc => Prim::DmCreate,
            Prim::FilterFree | Prim::FilterPut => Prim::DmDestroy,
            Prim::FilterBlock => Prim::DmSuspend,
            Prim::FilterUnblock => Prim::DmResume,
            Prim::BdevFreeze => Prim::FreezeBdev,
            Prim::BdevThaw => Prim::ThawBdev,
            p => p,
        }
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
    pub on_error: Option<Vec<ErrStep>>,
    /// The procedure's point of no return: once this step has succeeded, no
    /// later step may fail (`point_of_no_return`).
    pub no_return: bool,
    /// When this step fails, the call restarts from its first step once its
    /// error path has run (`return restart_syscall()`, or `-ERESTARTSYS`): the
    /// caller never sees the error.
    pub restart: bool,
}

/// One step of a hand-written error path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrStep {
    pub prim: Prim,
    /// Run only for this kind of original (left out of the path otherwise).
    pub only: Option<Kind>,
}

impl Protocol {
    /// Step `pc` of a pass: the hot path's steps, then the passthrough list's.
    pub fn hot_op(&self, pc: usize) -> Option<HotOp> {
        let n = self.hot_path.len();
        if pc < n {
            Some(self.hot_path[pc])
        } else {
            self.passthrough.get(pc - n).copied()
        }
    }
    /// The hot path's steps followed by the passthrough list's.
    pub fn hot_ops(&self) -> impl Iterator<Item = HotOp> + '_ {
        self.hot_path.iter().chain(&self.passthrough).copied()
    }
    /// Where a pass that is at step `pc` ends: the end of its list.
    pub fn hot_end(&self, pc: usize) -> usize {
        let n = self.hot_path.len();
        if pc < n {
            n
        } else {
            n + self.passthrough.len()
        }
    }
    /// Whether a step of attach or detach restarts its call when it fails.
    pub fn restarts(&self) -> bool {
        self.attach.iter().chain(&self.detach).any(|st| st.restart)
    }
    /// Whether a run may loop: a call that restarts, a hot path that restarts
    /// its pass, or a hot-path jump back to the same or an earlier step. Without
    /// any of these every run is finite (each thread only moves forward), and
    /// liveness is `no_deadlock`'s.
    pub fn may_loop(&self) -> bool {
        self.restarts()
            || self.hot_ops().enumerate().any(|(i, op)| match op {
                HotOp::Restart => true,
                HotOp::TestMarker { marked: t }
                | HotOp::ReadInterposer { null: t }
                | HotOp::TestBioList { set: t }
                | HotOp::FilterTryGet { zero: t } => t as usize <= i,
                _ => false,
            })
    }
    /// Whether attach brings I up in device-mapper's phases (`dm_table_load`,
    /// `dm_preresume`, `dm_resume`): `dm_create` then makes a device with no
    /// live table, which defers the bios it is handed until `dm_resume`.
    pub fn dm_phases(&self) -> bool {
        self.attach.iter().any(|st| st.prim == Prim::DmTableLoad)
    }
    /// Whether bios hold references on a refcounted filter (`filter_get`).
    pub fn refcounted(&self) -> bool {
        self.hot_path
            .iter()
            .any(|op| matches!(op, HotOp::FilterGet | HotOp::FilterTryGet { .. }))
    }
    /// Whether a pass must remember that it started from `current->bio_list`
    /// (a `test_bio_list` step reads it).
    pub fn tests_bio_list(&self) -> bool {
        self.hot_ops()
            .any(|op| matches!(op, HotOp::TestBioList { .. }))
    }
    /// Whether the hot path clears the task marker itself (`clear_marker`): the
    /// marker then lives until that step, not until the call returns.
    pub fn explicit_mark_lifetime(&self) -> bool {
        self.hot_path.contains(&HotOp::ClearMarker)
    }
    /// The index of attach's (`detach == false`) or detach's point of no return.
    pub fn point_of_no_return(&self, detach: bool) -> Option<usize> {
        let steps = if detach { &self.detach } else { &self.attach };
        steps.iter().position(|st| st.no_return)
    }

    /// The protocol as it runs on one kind of original: the error paths' entries
    /// for other kinds are left out, and a point of no return on a step of
    /// another kind is dropped (the steps' own `only` stays: a step's place in
    /// its procedure is its identity in traces and in generated code).
    pub fn for_kind(&self, kind: Kind) -> Protocol {
        let mut p = self.clone();
        for st in p.attach.iter_mut().chain(p.detach.iter_mut()) {
            if let Some(list) = &mut st.on_error {
                list.retain(|e| e.only.is_none_or(|k| k == kind));
            }
            // A step that does not run for this kind is no point of no return.
            if st.only.is_some_and(|k| k != kind) {
                st.no_return = false;
            }
        }
        p
    }
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
    /// `rmmod` of the filter's owner module may run whenever nothing holds a
    /// reference on it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rmmod: bool,
    /// After `del_gendisk(O)`, a new disk may take O's dev_t (`add_disk`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reuse: bool,
}

/// What the checker must find for one kind of original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Pass,
    Violates(Vec<&'static str>),
}

impl Expect {
    /// The properties expected to be violated, in order.
    pub fn violated(&self) -> std::collections::BTreeSet<&'static str> {
        match self {
            Expect::Pass => Default::default(),
            Expect::Violates(v) => v.iter().copied().collect(),
        }
    }

    /// How a checker's verdict (`violated`, by name) differs from this
    /// expectation, one line a property; empty when it meets it.
    pub fn mismatch<'a>(&self, violated: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let want = self.violated();
        let got: std::collections::BTreeSet<&str> = violated.into_iter().collect();
        let mut out = Vec::new();
        for name in got.iter().filter(|n| !want.contains(*n)) {
            out.push(format!("{name} is violated but expected to hold"));
        }
        for name in want.iter().filter(|n| !got.contains(*n)) {
            out.push(format!("{name} holds but was expected to be violated"));
        }
        out
    }
}

/// A compiled spec: the step tables the model interprets and codegen renders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Protocol {
    pub hot_path: Vec<HotOp>,
    /// The steps of a passthrough request (submitters whose path is
    /// `passthrough`), numbered after the hot path's: step `i` of this list is
    /// step `hot_path.len() + i` of [`Protocol::hot_op`], jump targets included.
    pub passthrough: Vec<HotOp>,
    pub attach: Vec<CtlStep>,
    pub detach: Vec<CtlStep>,
    /// The interposer's removal callback: what `del_gendisk(O)` runs, under O's
    /// `open_mutex` once O is marked dead, when O still has an interposer. It
    /// takes over the I it finds published. Empty: removal does not detach.
    pub on_remove: Vec<CtlStep>,
    pub marker: MarkerKind,
    pub clone_inherits: bool,
    pub filesystem: bool,
    /// O may split a bio at `driver_submit` (`bio_split_to_limits()`, dm's
    /// split): the front goes on into O, chained to the rest, which is
    /// resubmitted with `submit_bio_noacct()` from the same task and passes the
    /// hook again (it is the same bio: its flags stay).
    pub split: bool,
    /// What I is: a device-mapper device or a filter.
    pub interposer: IKind,
    /// Whether (and how) I parks bios for a worker to resubmit.
    pub park: Option<Park>,
    /// How each submitter enters the block layer: submitter `i` uses
    /// `paths[i % paths.len()]`.
    pub paths: Vec<SubmitPath>,
    /// A worker that resubmits bios on I's behalf (I's resume, or a parked bio)
    /// sets the task marker first (`marker.kind = "task"` only).
    pub worker_marks: bool,
    /// Primitives whose failure may be injected.
    pub inject: Vec<Prim>,
    /// The filter's release frees it with `kfree_rcu`: its memory stays until
    /// every RCU reader that began before the release has left (`[interposer]
    /// release = "kfree_rcu"`); otherwise with `kfree`, at once.
    pub kfree_rcu: bool,
    /// Detach finds O by its dev_t (`[protocol] lookup = "dev_t"`), as
    /// blksnap's ioctls do; otherwise it works on the block device the
    /// controller opened for attach (blkfilter's ioctls on O's file).
    pub lookup_dev_t: bool,
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
    #[serde(default)]
    interposer: Option<RawInterposer>,
    marker: RawMarker,
    bounds: RawBounds,
    #[serde(default)]
    failures: Option<RawFailures>,
    #[serde(default)]
    submitters: Option<RawSubmitters>,
    protocol: RawProtocol,
    expect: BTreeMap<Spanned<String>, Spanned<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOriginal {
    kinds: Spanned<Vec<Kind>>,
    #[serde(default)]
    filesystem: bool,
    #[serde(default)]
    split: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterposer {
    kind: IKind,
    #[serde(default)]
    park: Option<Park>,
    /// How the filter's release frees it: `kfree` or `kfree_rcu`.
    #[serde(default)]
    release: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubmitters {
    /// Submitter `i` uses `paths[i % len]`.
    paths: Spanned<Vec<SubmitPath>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarker {
    kind: MarkerKind,
    #[serde(default)]
    clone_inherits: bool,
    #[serde(default)]
    worker_marks: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounds {
    submitters: Spanned<i64>,
    bios: Spanned<i64>,
    controllers: Spanned<i64>,
    cycles: Spanned<i64>,
    #[serde(default)]
    freezers: Option<Spanned<i64>>,
    #[serde(default)]
    remover: bool,
    #[serde(default)]
    rmmod: Option<Spanned<bool>>,
    #[serde(default)]
    reuse: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailures {
    inject: Vec<Spanned<String>>,
    max: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtocol {
    hot_path: Spanned<Vec<Spanned<RawHot>>>,
    attach: Spanned<Vec<Spanned<RawCtl>>>,
    detach: Spanned<Vec<Spanned<RawCtl>>>,
    #[serde(default)]
    on_remove: Option<Spanned<Vec<Spanned<RawCtl>>>>,
    #[serde(default)]
    passthrough: Option<Spanned<Vec<Spanned<RawHot>>>>,
    /// How a call finds O: `file` (the block device the caller opened) or
    /// `dev_t` (looked up by device number at each call).
    #[serde(default)]
    lookup: Option<Spanned<String>>,
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
        #[serde(default)]
        set: Option<String>,
        #[serde(default)]
        zero: Option<String>,
        #[serde(flatten)]
        extra: std::collections::BTreeMap<String, toml::Value>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCtl {
    Call(String),
    Table {
        call: String,
        #[serde(default)]
        only: Option<String>,
        #[serde(default)]
        on_error: Option<Vec<RawErr>>,
        #[serde(default)]
        no_return: bool,
        #[serde(default)]
        restart: bool,
        /// Any other key: reported, never ignored.
        #[serde(flatten)]
        extra: std::collections::BTreeMap<String, toml::Value>,
    },
}

/// An entry of `on_error`: a call, or `{ call = "...", only = "bio" }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawErr {
    Call(String),
    Table {
        call: String,
        #[serde(default)]
        only: Option<String>,
        #[serde(flatten)]
        extra: std::collections::BTreeMap<String, toml::Value>,
    },
}

/// The kind an `only` names; an unknown one is reported at its step.
fn parse_only(
    ctx: &Ctx,
    span: Range<usize>,
    only: &Option<String>,
) -> Result<Option<Kind>, SpecError> {
    let Some(o) = only else {
        return Ok(None);
    };
    Kind::by_name(o).map(Some).ok_or_else(|| {
        let names = Kind::ALL.map(|k| k.name());
        ctx.err(
            span,
            format!(
                "`only = \"{o}\"`: unknown kind of original{}; kinds: {}",
                did_you_mean(o, names.iter().copied()),
                names.join(", ")
            ),
        )
    })
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
    /// Errors found so far; parsing goes on where it can.
    errors: std::cell::RefCell<Vec<SpecError>>,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> SpecError {
        let (line, col) = line_col(self.text, span.start);
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let source = self.text[line_start..line_end].trim_end_matches('\r');
        let width = self.text[start..span.end.clamp(start, line_end)]
            .chars()
            .count();
        SpecError {
            file: self.file.clone(),
            line,
            col,
            msg: msg.into(),
            source: Some((source.to_string(), width)),
        }
    }
    /// Record an error and go on.
    fn report(&self, e: SpecError) {
        self.errors.borrow_mut().push(e);
    }
    /// Record an error at a place and go on.
    fn error(&self, span: Range<usize>, msg: impl Into<String>) {
        self.report(self.err(span, msg));
    }
    /// Keep a value, or record its error and go on without it.
    fn keep<T>(&self, r: Result<T, SpecError>) -> Option<T> {
        r.map_err(|e| self.report(e)).ok()
    }
}

/// The keys of a step table of attach, detach or on_remove.
const CTL_KEYS: [&str; 5] = ["call", "only", "on_error", "no_return", "restart"];

/// A key a table does not know is an error at its step, never ignored.
fn unknown_keys(
    ctx: &Ctx,
    span: Range<usize>,
    extra: &std::collections::BTreeMap<String, toml::Value>,
    known: &[&str],
) {
    for k in extra.keys() {
        ctx.error(
            span.clone(),
            format!(
                "unknown key `{k}` in this step{}; a step takes {}",
                did_you_mean(k, known.iter().copied()),
                known.join(", ")
            ),
        );
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
                "unknown step `{}`{}; known primitives: {}",
                name.trim(),
                did_you_mean(name.trim(), known.iter().copied()),
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

/// Compile attach or detach; each bad step is reported and the rest still read.
fn compile_ctl(ctx: &Ctx, list: &Spanned<Vec<Spanned<RawCtl>>>, what: &str) -> Vec<CtlStep> {
    if list.get_ref().is_empty() {
        ctx.error(list.span(), format!("`{what}` has no steps"));
    }
    let mut out = Vec::new();
    let mut first_no_return: Option<Range<usize>> = None;
    for step in list.get_ref() {
        let span = step.span();
        let compiled = match step.get_ref() {
            RawCtl::Call(c) => ctx.keep(parse_call(ctx, span, c)).map(|prim| CtlStep {
                prim,
                only: None,
                on_error: None,
                no_return: false,
                restart: false,
            }),
            RawCtl::Table {
                call,
                only,
                on_error,
                no_return,
                restart,
                extra,
            } => {
                unknown_keys(ctx, span.clone(), extra, &CTL_KEYS);
                if *no_return {
                    if let Some(first) = first_no_return.replace(span.clone()) {
                        let (line, _) = line_col(ctx.text, first.start);
                        ctx.error(
                            span.clone(),
                            format!("`{what}` has a second point of no return (the first is on line {line}); a procedure has at most one"),
                        );
                    }
                }
                let prim = ctx.keep(parse_call(ctx, span.clone(), call));
                let only = ctx.keep(parse_only(ctx, span.clone(), only));
                let on_error = on_error.as_ref().map(|v| {
                    v.iter()
                        .filter_map(|e| {
                            let (call, only) = match e {
                                RawErr::Call(c) => (c, &None),
                                RawErr::Table { call, only, extra } => {
                                    unknown_keys(ctx, span.clone(), extra, &["call", "only"]);
                                    (call, only)
                                }
                            };
                            let prim = ctx.keep(parse_call(ctx, span.clone(), call));
                            let only = ctx.keep(parse_only(ctx, span.clone(), only));
                            Some(ErrStep {
                                prim: prim?,
                                only: only?,
                            })
                        })
                        .collect::<Vec<_>>()
                });
                if let Some(p) = prim.filter(|p| *restart && p.info().errors.is_empty()) {
                    ctx.error(
                        span.clone(),
                        format!(
                            "`restart = true` on `{}`, which cannot fail: the call would never restart",
                            p.call()
                        ),
                    );
                }
                match (prim, only) {
                    (Some(prim), Some(only)) => Some(CtlStep {
                        prim,
                        only,
                        on_error,
                        no_return: *no_return,
                        restart: *restart,
                    }),
                    _ => None,
                }
            }
        };
        out.extend(compiled);
    }
    out
}

/// attach installs a pointer to its own interposer: I must exist by then. The
/// pointer would otherwise name memory that was never allocated.
fn check_attach_creates(ctx: &Ctx, list: &Spanned<Vec<Spanned<RawCtl>>>, attach: &[CtlStep]) {
    if attach.len() != list.get_ref().len() {
        return; // a step did not compile; its error is reported already
    }
    let mut exists = false;
    for (step, raw) in attach.iter().zip(list.get_ref()) {
        match step.prim.meaning() {
            Prim::DmCreate => exists = true,
            Prim::DmDestroy => exists = false,
            Prim::StoreInterposer | Prim::CmpxchgInterposer if !exists => {
                ctx.error(
                    raw.span(),
                    format!(
                        "`{}` in attach uses I before it is created (or after it is freed): put `dm_create(I)` (`filter_alloc(I)` for a filter) first",
                        step.prim.call()
                    ),
                );
                return;
            }
            _ => {}
        }
    }
}

/// Device-mapper's phases come in order in attach: the table is loaded into a
/// created I, preresume runs on the loaded table, and `dm_resume` (which can no
/// longer fail) comes after preresume.
fn check_dm_phases(ctx: &Ctx, list: &Spanned<Vec<Spanned<RawCtl>>>, attach: &[CtlStep]) {
    if attach.len() != list.get_ref().len() || !attach.iter().any(|st| st.prim == Prim::DmTableLoad)
    {
        return;
    }
    let (mut created, mut loaded, mut preresumed) = (false, false, false);
    for (step, raw) in attach.iter().zip(list.get_ref()) {
        let missing = match step.prim {
            Prim::DmCreate => {
                created = true;
                None
            }
            Prim::DmTableLoad if !created => Some("`dm_create(I)`"),
            Prim::DmTableLoad => {
                loaded = true;
                None
            }
            Prim::DmPreresume if !loaded => Some("`dm_table_load(I)`"),
            Prim::DmPreresume => {
                preresumed = true;
                None
            }
            Prim::DmResume if !preresumed => Some("`dm_preresume(I)`"),
            _ => None,
        };
        if let Some(before) = missing {
            ctx.error(
                raw.span(),
                format!(
                    "`{}` in an attach that loads I's table needs {before} before it (device-mapper's phases: create, load, preresume, resume)",
                    step.prim.call()
                ),
            );
            return;
        }
    }
}

/// Every step that touches I uses the primitives of the spec's interposer kind.
fn check_ikind(ctx: &Ctx, list: &Spanned<Vec<Spanned<RawCtl>>>, steps: &[CtlStep], want: IKind) {
    if steps.len() != list.get_ref().len() {
        return; // a step did not compile; its error is reported already
    }
    for (step, raw) in steps.iter().zip(list.get_ref()) {
        let errs = step.on_error.iter().flatten().map(|e| e.prim);
        for p in std::iter::once(step.prim).chain(errs) {
            if let Some(k) = p.ikind().filter(|&k| k != want) {
                let own: Vec<_> = PRIMS
                    .iter()
                    .filter(|q| q.prim.ikind() == Some(want))
                    .map(|q| q.name)
                    .collect();
                ctx.error(
                    raw.span(),
                    format!(
                        "`{}` is a primitive of a `{}` interposer, but [interposer] kind = \"{}\"; a {} interposer uses {}",
                        p.call(),
                        k.name(),
                        want.name(),
                        want.name(),
                        own.join(", ")
                    ),
                );
            }
        }
    }
}

/// A filter that bios hold references on (`filter_get`) is freed by its last
/// reference: the attachment drops its own with `filter_put`, never with
/// `filter_free`, which would free it under the bios' references.
fn check_refcounted(ctx: &Ctx, raw: &RawProtocol, interposer: IKind) {
    if interposer != IKind::Filter {
        ctx.error(
            raw.hot_path.span(),
            "`filter_get` takes a reference on a filter: it needs [interposer] kind = \"filter\"",
        );
    }
    let lists = [Some(&raw.attach), Some(&raw.detach), raw.on_remove.as_ref()];
    for list in lists.into_iter().flatten() {
        for step in list.get_ref() {
            let call = match step.get_ref() {
                RawCtl::Call(c) => c.as_str(),
                RawCtl::Table { call, .. } => call.as_str(),
            };
            if call.trim() == "filter_free(I)" {
                ctx.error(step.span(), "`filter_free(I)` frees a filter that bios hold references on (`filter_get` in the hot path): drop the attachment's reference with `filter_put(I)`; the last reference frees it");
            }
        }
    }
}

/// The primitives a removal callback may run: it holds no lock of its own
/// (the core holds `open_mutex`), cannot fail (`del_gendisk` returns void),
/// and works on O and on the I it took over.
pub const ON_REMOVE_PRIMS: &[Prim] = &[
    Prim::FreezeQueue,
    Prim::UnfreezeQueue,
    Prim::ClearInterposer,
    Prim::DmResume,
    Prim::DmDestroy,
    Prim::BlkdevPut,
    Prim::FilterBlock,
    Prim::FilterUnblock,
    Prim::FilterFree,
    Prim::FilterPut,
    Prim::ModulePut,
];

/// `on_remove` runs inside `del_gendisk(O)`: only primitives that fit there,
/// with no error paths, and only when the bounds run a remover.
fn check_on_remove(
    ctx: &Ctx,
    list: &Spanned<Vec<Spanned<RawCtl>>>,
    steps: &[CtlStep],
    remover: bool,
) {
    if !remover {
        ctx.error(
            list.span(),
            "`on_remove` is never checked without a remover: set `remover = true` in [bounds]",
        );
    }
    if steps.len() != list.get_ref().len() {
        return; // a step did not compile; its error is reported already
    }
    for (step, raw) in steps.iter().zip(list.get_ref()) {
        if !ON_REMOVE_PRIMS.contains(&step.prim) {
            let ok: Vec<_> = ON_REMOVE_PRIMS.iter().map(|p| p.name()).collect();
            ctx.error(
                raw.span(),
                format!(
                    "`{}` cannot run in `on_remove`: del_gendisk(O) calls it with open_mutex held, it must not fail, and it works on O and the I it takes over; allowed: {}",
                    step.prim.call(),
                    ok.join(", ")
                ),
            );
        } else if step.on_error.is_some() || step.no_return || step.restart || step.only.is_some() {
            ctx.error(
                raw.span(),
                "`on_remove` steps take no `on_error`, `no_return`, `restart` or `only`: the callback cannot fail, and runs for every kind",
            );
        }
    }
}

/// Compile the hot path; `None` when a step is bad (each bad step is reported).
/// Which step list `compile_hot` reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HotList {
    /// `hot_path`: a bio's pass through `submit_bio_noacct()`.
    Bio,
    /// `passthrough`: a passthrough request, from allocation to issue.
    Passthrough,
}

impl HotList {
    fn key(self) -> &'static str {
        match self {
            HotList::Bio => "hot_path",
            HotList::Passthrough => "passthrough",
        }
    }
    fn steps(self) -> &'static [&'static str] {
        match self {
            HotList::Bio => &HOT_STEPS,
            HotList::Passthrough => &PASSTHROUGH_STEPS,
        }
    }
    /// The step that takes O's queue reference on this list.
    fn enter(self) -> &'static str {
        match self {
            HotList::Bio => "bio_queue_enter",
            HotList::Passthrough => "blk_queue_enter",
        }
    }
}

/// `op` with its jump target moved by `by` (a passthrough step's place after the hot path).
fn shifted(op: HotOp, by: u8) -> HotOp {
    match op {
        HotOp::TestMarker { marked } => HotOp::TestMarker {
            marked: marked + by,
        },
        HotOp::ReadInterposer { null } => HotOp::ReadInterposer { null: null + by },
        HotOp::TestBioList { set } => HotOp::TestBioList { set: set + by },
        HotOp::FilterTryGet { zero } => HotOp::FilterTryGet { zero: zero + by },
        other => other,
    }
}

fn compile_hot(
    ctx: &Ctx,
    list: &Spanned<Vec<Spanned<RawHot>>>,
    which: HotList,
) -> Option<Vec<HotOp>> {
    let key = which.key();
    let steps = list.get_ref();
    if steps.is_empty() {
        ctx.error(list.span(), format!("`{key}` has no steps"));
        return None;
    }
    if steps.len() > 60 {
        ctx.error(list.span(), format!("`{key}` has more than 60 steps"));
        return None;
    }
    let before = ctx.errors.borrow().len();
    let mut labels: BTreeMap<&str, u8> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        if let RawHot::Table { label: Some(l), .. } = s.get_ref() {
            if labels.insert(l.as_str(), i as u8).is_some() {
                ctx.error(s.span(), format!("label `{l}` is defined twice"));
            }
        }
    }
    let target = |span: Range<usize>, l: &Option<String>, what: &str| -> Result<u8, SpecError> {
        match l {
            None => Err(ctx.err(
                span,
                format!(
                    "`{what}` needs a jump target, e.g. {{ step = \"{what}\", {} = \"submit\" }}",
                    match what {
                        "test_marker" => "marked",
                        "test_bio_list" => "set",
                        "filter_tryget" => "zero",
                        _ => "null",
                    }
                ),
            )),
            Some(l) => labels.get(l.as_str()).copied().ok_or_else(|| {
                ctx.err(
                    span,
                    format!(
                        "jump to unknown label `{l}`{}",
                        did_you_mean(l, labels.keys().copied())
                    ),
                )
            }),
        }
    };
    let mut ops = Vec::new();
    for s in steps {
        let span = s.span();
        let (name, marked, null, set, zero) = match s.get_ref() {
            RawHot::Name(n) => (n.as_str(), &None, &None, &None, &None),
            RawHot::Table {
                step,
                marked,
                null,
                set,
                zero,
                extra,
                ..
            } => {
                unknown_keys(
                    ctx,
                    span.clone(),
                    extra,
                    &["step", "label", "marked", "null", "set", "zero"],
                );
                (step.as_str(), marked, null, set, zero)
            }
        };
        let allowed = which.steps();
        if !allowed.contains(&name) && (HOT_STEPS.contains(&name) || name == "fail_busy") {
            let why = match which {
                HotList::Bio => format!("`{name}` is a passthrough step: a bio's pass through submit_bio_noacct() cannot fail it; hot-path steps: {}", HOT_STEPS.join(", ")),
                HotList::Passthrough => format!("`{name}` is not a passthrough step: a passthrough request never enters submit_bio_noacct(), so it has no bio to mark or hand to I; passthrough steps: {}", PASSTHROUGH_STEPS.join(", ")),
            };
            ctx.error(span, why);
            continue;
        }
        let op = match name {
            "fail_busy" => Ok(HotOp::FailBusy),
            "filter_get" => Ok(HotOp::FilterGet),
            "filter_tryget" => {
                target(span.clone(), zero, name).map(|zero| HotOp::FilterTryGet { zero })
            }
            "bio_queue_enter" => Ok(HotOp::QueueEnter),
            "blk_queue_enter" => Ok(HotOp::BlkQueueEnter),
            "blk_queue_exit" => Ok(HotOp::QueueExit),
            "test_marker" => {
                target(span.clone(), marked, name).map(|marked| HotOp::TestMarker { marked })
            }
            "read_interposer" => {
                target(span.clone(), null, name).map(|null| HotOp::ReadInterposer { null })
            }
            "test_bio_list" => {
                target(span.clone(), set, name).map(|set| HotOp::TestBioList { set })
            }
            "set_marker" => Ok(HotOp::SetMarker),
            "clear_marker" => Ok(HotOp::ClearMarker),
            "redirect" => Ok(HotOp::Redirect),
            "driver_submit" => Ok(HotOp::DriverSubmit),
            "return" => Ok(HotOp::Return),
            "restart" => Ok(HotOp::Restart),
            "rcu_read_lock" => Ok(HotOp::RcuLock),
            "rcu_read_unlock" => Ok(HotOp::RcuUnlock),
            other => Err(ctx.err(
                span.clone(),
                format!(
                    "unknown {} step `{other}`{}; known steps: {}",
                    match which {
                        HotList::Bio => "hot-path",
                        HotList::Passthrough => "passthrough",
                    },
                    did_you_mean(other, allowed.iter().copied()),
                    allowed.join(", ")
                ),
            )),
        };
        if (marked.is_some() && name != "test_marker")
            || (null.is_some() && name != "read_interposer")
            || (set.is_some() && name != "test_bio_list")
        {
            ctx.error(span, format!("`{name}` takes no jump target"));
        }
        ops.extend(ctx.keep(op));
    }
    if ctx.errors.borrow().len() > before {
        return None;
    }
    let spans: Vec<_> = steps.iter().map(|s| s.span()).collect();
    ctx.keep(check_hot_flow(ctx, &ops, &spans, which))?;
    Some(ops)
}

/// The hot-path step names a spec may use.
pub const HOT_STEPS: [&str; 16] = [
    "bio_queue_enter",
    "blk_queue_enter",
    "blk_queue_exit",
    "test_marker",
    "read_interposer",
    "test_bio_list",
    "set_marker",
    "clear_marker",
    "redirect",
    "driver_submit",
    "return",
    "restart",
    "rcu_read_lock",
    "rcu_read_unlock",
    "filter_get",
    "filter_tryget",
];

/// The step names a `passthrough` list may use.
pub const PASSTHROUGH_STEPS: [&str; 8] = [
    "blk_queue_enter",
    "read_interposer",
    "fail_busy",
    "driver_submit",
    "blk_queue_exit",
    "return",
    "rcu_read_lock",
    "rcu_read_unlock",
];

/// What is known at a hot-path step about the pass: (holds a queue reference,
/// pointer loaded, inside an RCU read-side section). Each is a set of possible
/// values as bits: 1 = false possible, 2 = true possible.
type Facts = (u8, u8, u8);

fn check_hot_flow(
    ctx: &Ctx,
    ops: &[HotOp],
    spans: &[Range<usize>],
    which: HotList,
) -> Result<(), SpecError> {
    let n = ops.len();
    let mut facts: Vec<Option<Facts>> = vec![None; n + 1];
    facts[0] = Some((1, 1, 1));
    let mut work = vec![0usize];
    let join = |slot: &mut Option<Facts>, f: Facts| -> bool {
        let new = match *slot {
            None => f,
            Some((q, p, r)) => (q | f.0, p | f.1, r | f.2),
        };
        let changed = *slot != Some(new);
        *slot = Some(new);
        changed
    };
    let refuse = |i: usize, why: &str| Err(ctx.err(spans[i].clone(), why.to_string()));
    while let Some(i) = work.pop() {
        if i >= n {
            // Falling off the end returns from the hook.
            if facts[n].is_some_and(|(_, _, r)| r & 2 != 0) {
                return refuse(n - 1, &format!("`{}` may end inside an RCU read-side section; put `rcu_read_unlock` before its end on every path", which.key()));
            }
            continue;
        }
        let (q, p, r) = facts[i].expect("visited");
        let mut succ: Vec<(usize, Facts)> = Vec::new();
        match ops[i] {
            HotOp::QueueEnter | HotOp::BlkQueueEnter => {
                let name = ops[i].name();
                if q & 2 != 0 {
                    return refuse(i, &format!("`{name}` while this pass may already hold O's queue reference; a nested enter blocks behind a pending freeze"));
                }
                if r & 2 != 0 {
                    return refuse(i, &format!("`{name}` may sleep (it waits for a frozen queue), but this pass may be inside an RCU read-side section"));
                }
                succ.push((i + 1, (2, p, r)));
            }
            HotOp::QueueExit => succ.push((i + 1, (1, p, r))),
            HotOp::TestMarker { marked: t } | HotOp::TestBioList { set: t } => {
                succ.push((i + 1, (q, p, r)));
                succ.push((t as usize, (q, p, r)));
            }
            HotOp::ReadInterposer { null } => {
                succ.push((i + 1, (q, 2, r)));
                succ.push((null as usize, (q, 1, r)));
            }
            HotOp::Redirect => {
                if p != 2 {
                    return refuse(i, "`redirect` may run without a non-NULL interposer pointer; put `read_interposer` before it on every path");
                }
                succ.push((i + 1, (q, p, r)));
            }
            HotOp::DriverSubmit => {
                if q != 2 {
                    return refuse(i, &format!("`driver_submit` may run without O's queue reference; put `{}` before it on every path", which.enter()));
                }
                if r & 2 != 0 {
                    return refuse(i, "`driver_submit` may sleep (a blk-mq O waits for a tag), but this pass may be inside an RCU read-side section");
                }
                succ.push((i + 1, (q, p, r)));
            }
            HotOp::FilterGet => {
                if p != 2 {
                    return refuse(i, "`filter_get` may run without a non-NULL interposer pointer; put `read_interposer` before it on every path");
                }
                succ.push((i + 1, (q, p, r)));
            }
            HotOp::FilterTryGet { zero } => {
                if p != 2 {
                    return refuse(i, "`filter_tryget` may run without a non-NULL interposer pointer; put `read_interposer` before it on every path");
                }
                succ.push((i + 1, (q, p, r)));
                succ.push((zero as usize, (q, p, r)));
            }
            HotOp::FailBusy => {
                if r & 2 != 0 {
                    return refuse(i, "`fail_busy` ends the pass, which may be inside an RCU read-side section; put `rcu_read_unlock` before it");
                }
            }
            HotOp::SetMarker | HotOp::ClearMarker => succ.push((i + 1, (q, p, r))),
            HotOp::Return => {
                if r & 2 != 0 {
                    return refuse(i, "`return` may leave the hook inside an RCU read-side section; put `rcu_read_unlock` before it");
                }
            }
            HotOp::Restart => {
                if q & 2 != 0 {
                    return refuse(i, "`restart` while this pass may hold O's queue reference; drop it with `blk_queue_exit` first");
                }
                if r & 2 != 0 {
                    return refuse(i, "`restart` while this pass may be inside an RCU read-side section; put `rcu_read_unlock` first");
                }
                succ.push((0, (1, 1, 1)));
            }
            HotOp::RcuLock => {
                if r & 2 != 0 {
                    return refuse(i, "`rcu_read_lock` while this pass may already be inside an RCU read-side section (the model does not nest them)");
                }
                succ.push((i + 1, (q, p, 2)));
            }
            HotOp::RcuUnlock => {
                if r & 1 != 0 {
                    return refuse(
                        i,
                        "`rcu_read_unlock` on a path that may not have taken `rcu_read_lock`",
                    );
                }
                succ.push((i + 1, (q, p, 1)));
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
            format!(
                "`{}` never reaches `driver_submit`: no bio could reach O",
                which.key()
            ),
        ));
    }
    Ok(())
}

impl Spec {
    /// Read and parse a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecErrors(vec![SpecError {
                file: path.display().to_string(),
                line: 0,
                col: 0,
                msg: format!("cannot read spec: {e}"),
                source: None,
            }])
        })?;
        Spec::parse(path, &text)
    }

    /// Parse spec text; `path` names it in errors. Every error the parser can find
    /// is reported, in source order.
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecErrors> {
        let ctx = Ctx {
            file: path.display().to_string(),
            text,
            errors: Default::default(),
        };
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let mut msg = e.message().trim().to_string();
            // serde's "unknown field `x`, expected one of `a`, `b`": suggest the closest.
            if let Some(rest) = msg.strip_prefix("unknown field `") {
                if let Some((name, known)) = rest.split_once('`') {
                    let known: Vec<&str> = known.split('`').skip(1).step_by(2).collect();
                    msg.push_str(&did_you_mean(name, known));
                }
            }
            SpecErrors(vec![ctx.err(span, msg)])
        })?;
        let spec = Self::compile(&ctx, path, text, raw);
        let mut errors = ctx.errors.into_inner();
        if errors.is_empty() {
            return Ok(spec.expect("no errors, so compiled"));
        }
        errors.sort_by_key(|e| (e.line, e.col));
        Err(SpecErrors(errors))
    }

    fn compile(ctx: &Ctx, path: &Path, text: &str, raw: RawSpec) -> Option<Spec> {
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            ctx.error(
                raw.name.span(),
                "`name` must be a non-empty identifier of letters, digits, `_` and `-`",
            );
        }

        let mut kinds = raw.original.kinds.get_ref().clone();
        kinds.sort();
        kinds.dedup();
        if kinds.is_empty() {
            ctx.error(
                raw.original.kinds.span(),
                "`kinds` must name at least one of \"request\", \"bio\", \"bio_sync\"",
            );
        }

        let b = &raw.bounds;
        let bound = |v: &Spanned<i64>, what: &str| {
            ctx.keep(check_bound(what, *v.get_ref()).map_err(|m| ctx.err(v.span(), m)))
                .unwrap_or(1)
        };
        let bounds = Bounds {
            submitters: bound(&b.submitters, "submitters"),
            bios: bound(&b.bios, "bios"),
            controllers: bound(&b.controllers, "controllers"),
            cycles: bound(&b.cycles, "cycles"),
            failures: raw
                .failures
                .as_ref()
                .map_or(0, |f| bound(&f.max, "failures")),
            freezers: b.freezers.as_ref().map_or(0, |f| bound(f, "freezers")),
            remover: b.remover,
            rmmod: b.rmmod.as_ref().is_some_and(|r| {
                let kind = raw.interposer.as_ref().map_or(IKind::Dm, |i| i.kind);
                if *r.get_ref() && kind != IKind::Filter {
                    ctx.error(r.span(), "`rmmod` unloads a filter's owner module: it needs [interposer] kind = \"filter\" (device-mapper pins its own targets' modules)");
                }
                *r.get_ref()
            }),
            reuse: b.reuse.as_ref().is_some_and(|r| {
                if *r.get_ref() && !b.remover {
                    ctx.error(r.span(), "`reuse` lets a new disk take O's dev_t after del_gendisk(O): it needs `remover = true`");
                }
                if *r.get_ref() && raw.original.filesystem {
                    ctx.error(r.span(), "`reuse` with a filesystem on O is not modelled (a mounted filesystem keeps the removed disk's superblock); set filesystem = false");
                }
                *r.get_ref()
            }),
        };

        let mut inject = Vec::new();
        if let Some(f) = &raw.failures {
            for s in &f.inject {
                let Some(prim) = Prim::by_name(s.get_ref()) else {
                    ctx.error(
                        s.span(),
                        format!(
                            "unknown primitive `{}` in failures.inject{}",
                            s.get_ref(),
                            did_you_mean(s.get_ref(), PRIMS.iter().map(|p| p.name))
                        ),
                    );
                    continue;
                };
                if prim.info().injectable.is_none() {
                    let can: Vec<_> = PRIMS
                        .iter()
                        .filter(|p| p.injectable.is_some())
                        .map(|p| p.name)
                        .collect();
                    ctx.error(
                        s.span(),
                        format!(
                            "`{}` cannot fail in the kernel; injectable: {}",
                            prim.name(),
                            can.join(", ")
                        ),
                    );
                    continue;
                }
                inject.push(prim);
            }
            inject.sort();
            inject.dedup();
        }

        let hot_path = compile_hot(ctx, &raw.protocol.hot_path, HotList::Bio);
        let attach = compile_ctl(ctx, &raw.protocol.attach, "attach");
        check_attach_creates(ctx, &raw.protocol.attach, &attach);
        check_dm_phases(ctx, &raw.protocol.attach, &attach);
        let detach = compile_ctl(ctx, &raw.protocol.detach, "detach");
        if let Some(r) = raw.bounds.reuse.as_ref().filter(|r| *r.get_ref()) {
            if attach.iter().chain(&detach).any(|st| st.restart) {
                ctx.error(r.span(), "`reuse` beside a call that restarts is not modelled (a restarted ioctl keeps the file it was called on, which a new disk at O's dev_t does not change); drop `restart` or `reuse`");
            }
        }
        let interposer = raw.interposer.as_ref().map_or(IKind::Dm, |i| i.kind);
        check_ikind(ctx, &raw.protocol.attach, &attach, interposer);
        check_ikind(ctx, &raw.protocol.detach, &detach, interposer);
        let on_remove = raw
            .protocol
            .on_remove
            .as_ref()
            .map_or_else(Vec::new, |list| {
                let steps = compile_ctl(ctx, list, "on_remove");
                check_ikind(ctx, list, &steps, interposer);
                check_on_remove(ctx, list, &steps, bounds.remover);
                steps
            });
        if raw.marker.kind == MarkerKind::None
            && hot_path
                .as_ref()
                .is_some_and(|h| h.contains(&HotOp::SetMarker))
        {
            ctx.error(raw.protocol.hot_path.span(), "`set_marker` with marker.kind = \"none\": choose \"bio_flag\" or \"task\", or drop the step");
        }
        if raw.marker.kind != MarkerKind::Task
            && hot_path
                .as_ref()
                .is_some_and(|h| h.contains(&HotOp::ClearMarker))
        {
            ctx.error(raw.protocol.hot_path.span(), "`clear_marker` clears a task marker: it needs marker.kind = \"task\" (BIO_INTERPOSED stays on its bio)");
        }

        let refcounted = hot_path.as_ref().is_some_and(|h| {
            h.iter()
                .any(|op| matches!(op, HotOp::FilterGet | HotOp::FilterTryGet { .. }))
        });
        if refcounted {
            check_refcounted(ctx, &raw.protocol, interposer);
        }
        let lookup_dev_t = match raw.protocol.lookup.as_ref() {
            None => false,
            Some(l) => match l.get_ref().as_str() {
                "file" => false,
                "dev_t" => true,
                other => {
                    ctx.error(
                        l.span(),
                        format!("unknown lookup `{other}`; known: file (the block device attach opened), dev_t (looked up by device number at each call)"),
                    );
                    false
                }
            },
        };
        let kfree_rcu = match raw.interposer.as_ref().and_then(|i| i.release.as_ref()) {
            None => false,
            Some(r) => match r.get_ref().as_str() {
                "kfree" => false,
                "kfree_rcu" => {
                    if interposer != IKind::Filter {
                        ctx.error(r.span(), "`release` says how a filter is freed: it needs [interposer] kind = \"filter\" (device-mapper frees its devices itself)");
                    }
                    let instances = bounds.controllers * bounds.cycles;
                    if instances > 3 {
                        ctx.error(r.span(), format!("`release = \"kfree_rcu\"` is modelled for at most 3 filters (controllers x cycles); these bounds make {instances}"));
                    }
                    true
                }
                other => {
                    ctx.error(
                        r.span(),
                        format!("unknown release `{other}`; known: kfree, kfree_rcu"),
                    );
                    false
                }
            },
        };

        let worker_marks = raw.marker.worker_marks.as_ref().is_some_and(|w| {
            if *w.get_ref() && raw.marker.kind != MarkerKind::Task {
                ctx.error(w.span(), "`worker_marks` sets the task marker in I's workers: it needs marker.kind = \"task\"");
            }
            *w.get_ref()
        });

        let paths = match &raw.submitters {
            Some(sub) if sub.paths.get_ref().is_empty() => {
                ctx.error(
                    sub.paths.span(),
                    "`paths` is empty: name at least one path (submit_bio, nowait, passthrough, stacked)",
                );
                vec![SubmitPath::SubmitBio]
            }
            Some(sub) => sub.paths.get_ref().clone(),
            None => vec![SubmitPath::SubmitBio],
        };

        let passthrough = Self::compile_passthrough(ctx, &raw, &kinds, &paths, hot_path.as_ref());
        if raw.original.split {
            if let Some(p) = paths
                .iter()
                .find(|p| matches!(p, SubmitPath::Nowait | SubmitPath::Passthrough))
            {
                let span = raw.submitters.as_ref().map_or(0..0, |s| s.paths.span());
                ctx.error(span, format!("[original] split = true with a `{}` submitter is not modelled: the block layer does not split a passthrough request, and a REQ_NOWAIT bio that needs a split may end with EAGAIN instead; split the plain submitters' bios only (paths submit_bio, stacked)", p.name()));
            }
        }

        let (expect, unreached) = Self::compile_expect(ctx, text, &raw.expect, &kinds);

        Some(Spec {
            path: path.to_path_buf(),
            name,
            description: raw.description.trim().to_string(),
            sha256: hex(&Sha256::digest(text.as_bytes())),
            kinds,
            expect,
            unreached,
            bounds,
            protocol: Protocol {
                hot_path: hot_path?,
                passthrough,
                attach,
                detach,
                on_remove,
                marker: raw.marker.kind,
                clone_inherits: raw.marker.clone_inherits,
                filesystem: raw.original.filesystem,
                split: raw.original.split,
                interposer,
                park: raw.interposer.as_ref().and_then(|i| i.park),
                paths,
                worker_marks,
                inject,
                kfree_rcu,
                lookup_dev_t,
            },
        })
    }

    /// `[protocol] passthrough`: the steps of a passthrough request, numbered
    /// after the hot path's. Present exactly when a submitter's path is
    /// `passthrough`; only a request-based O has passthrough requests.
    fn compile_passthrough(
        ctx: &Ctx,
        raw: &RawSpec,
        kinds: &[Kind],
        paths: &[SubmitPath],
        hot_path: Option<&Vec<HotOp>>,
    ) -> Vec<HotOp> {
        let used = paths.contains(&SubmitPath::Passthrough);
        let Some(list) = &raw.protocol.passthrough else {
            if used {
                let span = raw.submitters.as_ref().map_or(0..0, |s| s.paths.span());
                ctx.error(span, "a submitter's path is `passthrough`, but [protocol] has no `passthrough` list: give the steps of its requests (blk_queue_enter, ..., driver_submit)");
            }
            return Vec::new();
        };
        if !used {
            ctx.error(list.span(), "[protocol] `passthrough` is given, but no submitter's path is `passthrough`: add it to [submitters] paths, or drop the list");
        }
        if let Some(k) = kinds.iter().find(|&&k| k != Kind::Request) {
            ctx.error(
                raw.original.kinds.span(),
                format!(
                    "a `passthrough` list needs a request-based original: a {} O has no passthrough requests (blk_mq_alloc_request); set kinds = [\"request\"]",
                    k.name()
                ),
            );
        }
        let by = hot_path.map_or(0, |h| h.len() as u8);
        compile_hot(ctx, list, HotList::Passthrough)
            .map(|ops| ops.into_iter().map(|op| shifted(op, by)).collect())
            .unwrap_or_default()
    }

    /// `[expect]`: a verdict per kind, and the sanity properties that stay unreached.
    fn compile_expect(
        ctx: &Ctx,
        text: &str,
        raw: &BTreeMap<Spanned<String>, Spanned<RawExpect>>,
        kinds: &[Kind],
    ) -> (BTreeMap<Kind, Expect>, Vec<&'static str>) {
        let mut expect = BTreeMap::new();
        let mut unreached = Vec::new();
        // Where each kind's verdict came from, to refuse a second one.
        let mut given: BTreeMap<Kind, &str> = BTreeMap::new();
        for (k, v) in raw {
            if k.get_ref() == "unreached" {
                let RawExpect::List(props) = v.get_ref() else {
                    ctx.error(v.span(), "`unreached` is a list of sanity properties");
                    continue;
                };
                for p in props {
                    match SANITY.iter().find(|s| *s == p) {
                        Some(n) => unreached.push(*n),
                        None => ctx.error(
                            v.span(),
                            format!(
                                "unknown sanity property `{p}`{}; sanity properties: {}",
                                did_you_mean(p, SANITY),
                                SANITY.join(", ")
                            ),
                        ),
                    }
                }
                continue;
            }
            let kinds_here: Vec<Kind> = match k.get_ref().as_str() {
                "all" => kinds.to_vec(),
                other => match Kind::by_name(other) {
                    Some(kind) => vec![kind],
                    None => {
                        let keys = ["all", "request", "bio", "bio_sync", "unreached"];
                        ctx.error(
                            k.span(),
                            format!(
                                "unknown key `{other}` in [expect]{}; use \"all\", \"request\", \"bio\", \"bio_sync\" or \"unreached\"",
                                did_you_mean(other, keys)
                            ),
                        );
                        continue;
                    }
                },
            };
            let e = match v.get_ref() {
                RawExpect::Word(w) if w == "pass" => Expect::Pass,
                RawExpect::Word(w) => {
                    ctx.error(
                        v.span(),
                        format!("expected \"pass\" or a list of properties, found \"{w}\""),
                    );
                    continue;
                }
                RawExpect::List(props) => {
                    if props.is_empty() {
                        ctx.error(
                            v.span(),
                            "an empty list of violations: write \"pass\" instead",
                        );
                        continue;
                    }
                    let mut names = Vec::new();
                    for p in props {
                        match SAFETY.iter().chain(LIVENESS.iter()).find(|s| *s == p) {
                            Some(n) => names.push(*n),
                            None => ctx.error(
                                v.span(),
                                format!(
                                    "unknown property `{p}`{}; safety properties: {}; liveness: {}",
                                    did_you_mean(
                                        p,
                                        SAFETY
                                            .iter()
                                            .chain(LIVENESS.iter())
                                            .chain(SANITY.iter())
                                            .copied()
                                    ),
                                    SAFETY.join(", "),
                                    LIVENESS.join(", ")
                                ),
                            ),
                        }
                    }
                    names.sort();
                    names.dedup();
                    Expect::Violates(names)
                }
            };
            for kind in kinds_here {
                if !kinds.contains(&kind) {
                    ctx.error(
                        k.span(),
                        format!(
                            "[expect] names kind `{kind}`, which [original] kinds does not check"
                        ),
                    );
                    continue;
                }
                if let Some(first) = given.insert(kind, k.get_ref()) {
                    let this = k.get_ref();
                    ctx.error(
                        k.span(),
                        if first == this {
                            format!("[expect] gives kind `{kind}` two verdicts")
                        } else {
                            format!(
                                "contradictory expectations: `{first}` and `{this}` both give a verdict for kind `{kind}`; keep one"
                            )
                        },
                    );
                    continue;
                }
                expect.insert(kind, e.clone());
            }
        }
        // A missing verdict is about the whole table: point at its header.
        let header = text.find("[expect]").unwrap_or(0);
        for kind in kinds {
            if !expect.contains_key(kind) {
                ctx.error(
                    header..header + "[expect]".len(),
                    format!("[expect] gives no verdict for kind `{kind}`"),
                );
            }
        }
        (expect, unreached)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Command-line overrides of a spec's bounds (as typed: range-checked by [`Bounds::with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub submitters: Option<i64>,
    pub bios: Option<i64>,
    pub controllers: Option<i64>,
    pub cycles: Option<i64>,
    pub failures: Option<i64>,
}

impl Overrides {
    /// All five bounds of one benchmark-series size:
    /// (submitters, bios, controllers, cycles, failures).
    pub fn size((s, b, c, y, f): (u8, u8, u8, u8, u8)) -> Self {
        Overrides {
            submitters: Some(s.into()),
            bios: Some(b.into()),
            controllers: Some(c.into()),
            cycles: Some(y.into()),
            failures: Some(f.into()),
        }
    }

    /// Each override with its option name.
    pub fn named(&self) -> [(&'static str, Option<i64>); 5] {
        [
            ("submitters", self.submitters),
            ("bios", self.bios),
            ("controllers", self.controllers),
            ("cycles", self.cycles),
            ("failures", self.failures),
        ]
    }
}

impl Bounds {
    /// Apply overrides; an impossible bound is an error naming the option, with the
    /// same words as in a spec file.
    pub fn with(mut self, o: &Overrides) -> Result<Bounds, String> {
        for (what, v) in o.named() {
            let Some(v) = v else { continue };
            let v = check_bound(what, v).map_err(|m| format!("--{what} {v}: {m}"))?;
            match what {
                "submitters" => self.submitters = v,
                "bios" => self.bios = v,
                "controllers" => self.controllers = v,
                "cycles" => self.cycles = v,
                _ => self.failures = v,
            }
        }
        Ok(self)
    }

    /// The bounds in one short column: `2x1 2x2 f1` is 2 submitters × 1 bio,
    /// 2 controllers × 2 cycles, 1 injected failure (then `z1` freezers, `rm` remover).
    pub fn short(&self) -> String {
        let mut s = format!(
            "{}x{} {}x{} f{}",
            self.submitters, self.bios, self.controllers, self.cycles, self.failures
        );
        if self.freezers > 0 {
            s.push_str(&format!(" z{}", self.freezers));
        }
        if self.remover {
            s.push_str(" rm");
        }
        if self.rmmod {
            s.push_str(" mod");
        }
        if self.reuse {
            s.push_str(" reuse");
        }
        s
    }
}
