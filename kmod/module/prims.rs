// SPDX-License-Identifier: GPL-2.0

//! The generated protocol's `Primitives` over the kernel API.
//!
//! Every trait method goes through [`Ctl::run`], which performs the
//! primitive ([`Ctl::real`]) and reports it to the runtime monitor. Two
//! test-only mechanisms sit in `run` and nowhere else:
//!
//! - **Injected failures** (`inject <primitive>`, test builds only): the next
//!   call of a primitive that the spec injects failures into returns the errno
//!   the model gives it, having done nothing, so the generated unwinding runs
//!   for real.
//! - **Mutants** (`mutant <name>`, test builds only, once per load, while
//!   nothing is attached): a primitive left out, or moved, while success is still
//!   reported, so that only the kernel's own checks can catch it. The mutation
//!   gate boots the very module that passed the boot test, with one mutant set.
//!   See `kmod/mutants.toml`.

use super::ctl::Ctl;
use super::*;

/// Set at build time for the boot test's build: enables `inject` and `mutant`.
pub(crate) const TEST_BUILD: bool = option_env!("QUIESCE_TEST").is_some();

/// The mutant of the hot path that is set (a [`Mutant`] discriminant of the three
/// below, or 0): read per bio, so an atomic rather than the registry's mutex.
static HOT_MUTANT: AtomicU8 = AtomicU8::new(0);
const HOT_UNMARKED_CLONE: u8 = 1;
const HOT_POLLED_CLONE: u8 = 2;
const HOT_CBT_MARK_AT_SUBMIT: u8 = 3;

fn hot(m: u8) -> bool {
    // A normal build has no mutant: the test folds to `false`.
    TEST_BUILD && HOT_MUTANT.load(Ordering::Relaxed) == m
}

/// The `unmarked_clone` mutant is set.
pub(crate) fn mutant_unmarked_clone() -> bool {
    hot(HOT_UNMARKED_CLONE)
}

/// The `polled_clone` mutant is set.
pub(crate) fn mutant_polled_clone() -> bool {
    hot(HOT_POLLED_CLONE)
}

/// The `cbt_mark_at_submit` mutant is set.
pub(crate) fn mutant_cbt_mark_at_submit() -> bool {
    hot(HOT_CBT_MARK_AT_SUBMIT)
}

/// Which generated procedure is running.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proc {
    Idle,
    Attach,
    Detach,
    /// The removal callback (`remove.rs`).
    Remove,
}

/// A mutant of the module's side of the protocol, set by the `mutant` command.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutant {
    None,
    /// `skip:PROC:PRIM`: PRIM is left out of PROC; success is still reported.
    Skip(Proc, Prim),
    /// `before:PROC:MOVED:ANCHOR`: MOVED is done just before ANCHOR instead of
    /// in its place; the reports keep the checked order.
    Before(Proc, Prim, Prim),
    /// `no_unwind`: after a failure, the rest of the procedure (its unwinding)
    /// is left out; success is still reported.
    NoUnwind,
    /// `unmarked_clone`: the interposer's clones lose `BIO_INTERPOSED`.
    UnmarkedClone,
    /// `polled_clone`: the interposer's clones keep `REQ_POLLED`.
    PolledClone,
    /// `cbt_mark_at_submit`: the changed-block map records a write at submission.
    CbtMarkAtSubmit,
}

fn proc_by_name(s: &str) -> Option<Proc> {
    match s {
        "attach" => Some(Proc::Attach),
        "detach" => Some(Proc::Detach),
        "remove" => Some(Proc::Remove),
        _ => None,
    }
}

impl Mutant {
    /// Parses a mutant's name (`None` for an unknown name or a malformed one).
    pub(crate) fn parse(s: &[u8]) -> Option<Mutant> {
        let s = core::str::from_utf8(s).ok()?;
        let mut it = s.split(':');
        let prim = |x: Option<&str>| x.and_then(|n| prim_by_name(n.as_bytes()));
        let m = match it.next() {
            Some("skip") => Mutant::Skip(proc_by_name(it.next()?)?, prim(it.next())?),
            Some("before") => Mutant::Before(proc_by_name(it.next()?)?, prim(it.next())?, prim(it.next())?),
            Some("no_unwind") => Mutant::NoUnwind,
            Some("unmarked_clone") => Mutant::UnmarkedClone,
            Some("polled_clone") => Mutant::PolledClone,
            Some("cbt_mark_at_submit") => Mutant::CbtMarkAtSubmit,
            _ => return None,
        };
        match it.next() {
            None => Some(m),
            Some(_) => None,
        }
    }

    /// Make `self` the running mutant of the hot path too (the rest is read from
    /// each controller's copy of the registry's mutant).
    pub(crate) fn arm_hot_path(self) {
        let h = match self {
            Mutant::UnmarkedClone => HOT_UNMARKED_CLONE,
            Mutant::PolledClone => HOT_POLLED_CLONE,
            Mutant::CbtMarkAtSubmit => HOT_CBT_MARK_AT_SUBMIT,
            _ => 0,
        };
        HOT_MUTANT.store(h, Ordering::Relaxed);
    }
}

impl Ctl {
    /// Run primitive `p` of the current procedure: inject, mutate, perform, report.
    fn run(&mut self, p: Prim) -> Result<(), Errno> {
        if TEST_BUILD && p == Prim::MutexLock && self.proc == Proc::Attach {
            // `hold` (test builds only): the boot test removes O while attach waits here.
            crate::remove::hold_point();
        }
        if self.inject == Some(p) {
            self.inject = None;
            let e = p.injected().unwrap_or(Errno::EINVAL);
            pr_info!("quiesce: injected failure: {} = {}\n", p.call(), e.to_kernel());
            self.trace(p, Err(e));
            self.failed = true;
            return self.done(p, Err(e));
        }
        let skip = match self.mutant {
            Mutant::Skip(pr, q) => pr == self.proc && q == p,
            Mutant::Before(pr, moved, anchor) if pr == self.proc => {
                if p == anchor && !self.moved_done {
                    self.moved_done = true;
                    let _ = self.real(moved);
                }
                p == moved && self.moved_done
            }
            Mutant::NoUnwind => self.failed,
            _ => false,
        };
        if skip {
            pr_warn!("quiesce: mutant: {} left out, success reported\n", p.call());
            return self.done(p, Ok(()));
        }
        let releases = matches!(
            p,
            Prim::BdevThaw
                | Prim::DmInternalResumeFast
                | Prim::FilterFree
                | Prim::FilterUnblock
                | Prim::ModulePut
        );
        if releases {
            // A primitive that gives something back is reported before it does
            // (it cannot fail), so that no step it lets happen is reported first.
            self.trace_ret(p, 0);
        } else if matches!(
            p,
            Prim::BdevFreeze | Prim::DmInternalSuspendFast | Prim::FilterBlock
        ) {
            // A primitive that waits: reported when called too (`ret=1`), so
            // that replay can place its first step anywhere before it returns.
            self.trace_ret(p, 1);
        }
        let r = self.real(p);
        if !releases {
            self.trace(p, r);
        }
        if r.is_err() {
            self.failed = true;
        }
        self.done(p, r)
    }

    /// End a generated procedure. A procedure never returns with O's filesystem
    /// still frozen by it: its writers would wait forever (a mount is refused).
    pub(crate) fn end(&mut self) {
        if self.fs_frozen {
            pr_err!(
                "quiesce: ASSERT: {} returned with O's filesystem frozen (bdev_thaw(O) missing)\n",
                if self.proc == Proc::Attach { "attach" } else { "detach" }
            );
        }
        self.proc = Proc::Idle;
    }

    /// Begin a generated procedure (for the mutants' bookkeeping).
    pub(crate) fn begin(&mut self, p: Proc) {
        self.proc = p;
        self.failed = false;
        self.moved_done = false;
    }

    /// Perform primitive `p` in the kernel, without reporting it.
    fn real(&mut self, p: Prim) -> Result<(), Errno> {
        match p {
            Prim::MutexLock => {
                // SAFETY: the original is held open.
                unsafe { bindings::blk_interposer_lock(self.att().bdev) };
                Ok(())
            }
            Prim::MutexUnlock => {
                // SAFETY: the original is held open; blk_interposer_unlock() of a mutex
                // this thread does not hold is reported by the kernel's mutex debugging.
                unsafe { bindings::blk_interposer_unlock(self.att().bdev) };
                Ok(())
            }
            Prim::BdevFreeze => {
                // SAFETY: the original is held open. It freezes the filesystem mounted
                // on O through its holder's ops, or with none syncs O; freezes nest.
                match unsafe { bindings::bdev_freeze(self.att().bdev) } {
                    0 => {
                        self.fs_frozen = true;
                        Ok(())
                    }
                    e => {
                        pr_info!("quiesce: bdev_freeze(O) = {}\n", e);
                        Err(Errno::EBUSY)
                    }
                }
            }
            Prim::BdevThaw => {
                // SAFETY: the original is held open; a thaw of a device that is not
                // frozen returns -EINVAL and changes nothing.
                let e = unsafe { bindings::bdev_thaw(self.att().bdev) };
                self.fs_frozen = false;
                if e != 0 {
                    pr_err!("quiesce: ASSERT: bdev_thaw(O) = {}: O was not frozen (bdev_freeze(O) missing)\n", e);
                }
                Ok(())
            }
            Prim::TryModuleGet => {
                // SAFETY: THIS_MODULE is this module, live while its code runs.
                if unsafe { bindings::try_module_get(THIS_MODULE.as_ptr()) } {
                    Ok(())
                } else {
                    Err(Errno::ENODEV)
                }
            }
            Prim::ModulePut => {
                // SAFETY: as above. The caller's open file of /dev/quiesce holds one
                // reference and the attachment another: fewer means try_module_get was
                // missing, and this put would take the file's reference.
                let users = unsafe { bindings::module_refcount(THIS_MODULE.as_ptr()) };
                if users < 2 {
                    pr_err!("quiesce: ASSERT: module_put(I->owner) with {} module users: its try_module_get is missing\n", users);
                }
                // SAFETY: drops the reference try_module_get() took at attach.
                unsafe { bindings::module_put(THIS_MODULE.as_ptr()) };
                Ok(())
            }
            Prim::FilterAlloc => self.create(),
            Prim::FilterFree => {
                self.destroy();
                Ok(())
            }
            Prim::BlkMqFreezeQueue => {
                let q = self.queue();
                self.stall.begin();
                // SAFETY: the original's queue lives while the original is held open.
                unsafe { bindings::blk_mq_freeze_queue(q) };
                Ok(())
            }
            Prim::BlkMqUnfreezeQueue => {
                let q = self.queue();
                // SAFETY: as above; an unbalanced unfreeze is reported by the block layer.
                unsafe { bindings::blk_mq_unfreeze_queue(q) };
                self.stall.end();
                Ok(())
            }
            Prim::DmInternalSuspendFast => self.suspend_o(),
            Prim::DmInternalResumeFast => {
                self.resume_o();
                Ok(())
            }
            Prim::FilterBlock => {
                if let Some(ip) = self.att().ip() {
                    ip.block();
                    ip.wait_drained();
                }
                Ok(())
            }
            Prim::FilterUnblock => {
                if let Some(ip) = self.att().ip() {
                    ip.unblock();
                }
                Ok(())
            }
            Prim::CmpxchgInterposer => {
                let att = self.att();
                match att.ip() {
                    None => {
                        pr_err!("quiesce: ASSERT: cmpxchg_interposer(O, I) with no I allocated (filter_alloc(I) missing)\n");
                        Err(Errno::EINVAL)
                    }
                    // SAFETY: the original is held open; the interposer is boxed and
                    // outlives the pointer (detach clears it before filter_free).
                    Some(ip) => match unsafe { bindings::blk_interposer_set(att.bdev, ip.hook.get()) } {
                        0 => {
                            ip.published.store(true, Ordering::Release);
                            Ok(())
                        }
                        _ => {
                            pr_info!(
                                "quiesce: attach: {}: busy: it has an interposer already, or it is a whole \
                                 disk with partitions (attach to each partition instead)\n",
                                BStrDisplay(&att.path)
                            );
                            Err(Errno::EBUSY)
                        }
                    },
                }
            }
            Prim::BdevCheckAlive => {
                // SAFETY: the original is held open, so its gendisk lives.
                if unsafe { bindings::disk_live((*self.att().bdev).bd_disk) } {
                    Ok(())
                } else {
                    pr_info!("quiesce: {}: removed (bdev_check_alive(O) = -ENODEV)\n", BStrDisplay(&self.att().path));
                    Err(Errno::ENODEV)
                }
            }
            Prim::ClearInterposer => {
                // SAFETY: the original is held open.
                unsafe { bindings::blk_interposer_clear(self.att().bdev) };
                Ok(())
            }
        }
    }

    /// Report `p`'s call and result in the `blk_interposer_prim` trace event, for
    /// `quiesce replay`; the block layer reports the rest itself (its queue
    /// freezes, the interposer pointer, open_mutex), which this module cannot fake.
    fn trace(&mut self, p: Prim, r: Result<(), Errno>) {
        if matches!(
            p,
            Prim::MutexLock
                | Prim::MutexUnlock
                | Prim::BlkMqFreezeQueue
                | Prim::BlkMqUnfreezeQueue
                | Prim::CmpxchgInterposer
                | Prim::ClearInterposer
        ) {
            return;
        }
        let ret = match r {
            Ok(()) => 0,
            Err(e) => e.to_kernel(),
        };
        self.trace_ret(p, ret);
    }

    /// Report the call of procedure `p` (`ret=1`) or its return (its result)
    /// in the `blk_interposer_prim` trace event, as `attach` or `detach`.
    pub(crate) fn trace_proc(&mut self, p: Proc, ret: i32) {
        let name: &[u8] = match p {
            Proc::Attach => b"attach\0",
            Proc::Detach => b"detach\0",
            _ => return,
        };
        // SAFETY: the original is held open; `name` is a NUL-terminated static.
        unsafe { bindings::blk_interposer_trace_prim(self.att().bdev, name.as_ptr().cast(), ret) };
    }

    /// The `blk_interposer_prim` trace event of `p` with `ret` (1: called, not
    /// yet returned).
    fn trace_ret(&mut self, p: Prim, ret: i32) {
        let mut name = [0u8; 48];
        let call = p.call().as_bytes();
        let n = call.len().min(name.len() - 1);
        name[..n].copy_from_slice(&call[..n]);
        // SAFETY: the original is held open; `name` is NUL-terminated and lives
        // through the call, whose trace event copies it.
        unsafe { bindings::blk_interposer_trace_prim(self.att().bdev, name.as_ptr().cast(), ret) };
    }

    /// `filter_alloc(I)`: allocate the filter, its bio_set and its map.
    fn create(&mut self) -> Result<(), Errno> {
        if self.att().ip().is_some() {
            return Err(Errno::EEXIST);
        }
        let (bdev, slot) = (self.att().bdev, self.att().slot);
        let ip = Interposer::new(bdev, slot).map_err(|_| Errno::ENOMEM)?;
        self.att().put_ip(ip);
        Ok(())
    }

    /// `filter_free(I)`: free the filter, keeping its counters and map.
    fn destroy(&mut self) {
        if let Some(ip) = self.att().take_ip() {
            self.redirected += ip.redirected.load(Ordering::Relaxed);
            self.completed += ip.completed.load(Ordering::Relaxed);
            self.flushes += ip.flushes.load(Ordering::Relaxed);
            self.last_map = ip.retire();
        }
    }

    /// `dm_internal_suspend_fast(O)`: only a device-mapper original has one.
    fn suspend_o(&mut self) -> Result<(), Errno> {
        let md = self.att().md;
        if md.is_null() {
            return Err(Errno::EINVAL);
        }
        self.stall.begin();
        // SAFETY: `md` is a referenced mapped_device (dm_get_md()).
        unsafe { dm_internal_suspend_fast(md) };
        Ok(())
    }

    /// `dm_internal_resume_fast(O)`.
    fn resume_o(&mut self) {
        let md = self.att().md;
        if md.is_null() {
            pr_err!("quiesce: ASSERT: dm_internal_resume_fast(O) of an O that is not device-mapper\n");
            return;
        }
        // SAFETY: `md` was suspended by dm_internal_suspend_fast().
        unsafe { dm_internal_resume_fast(md) };
        self.stall.end();
    }
}

impl Primitives for Ctl {
    fn mutex_lock(&mut self) {
        let _ = self.run(Prim::MutexLock);
    }
    fn mutex_unlock(&mut self) {
        let _ = self.run(Prim::MutexUnlock);
    }
    fn bdev_freeze(&mut self) -> Result<(), Errno> {
        self.run(Prim::BdevFreeze)
    }
    fn bdev_thaw(&mut self) {
        let _ = self.run(Prim::BdevThaw);
    }
    fn try_module_get(&mut self) -> Result<(), Errno> {
        self.run(Prim::TryModuleGet)
    }
    fn module_put(&mut self) {
        let _ = self.run(Prim::ModulePut);
    }
    fn filter_alloc(&mut self) -> Result<(), Errno> {
        self.run(Prim::FilterAlloc)
    }
    fn filter_free(&mut self) {
        let _ = self.run(Prim::FilterFree);
    }
    fn blk_mq_freeze_queue(&mut self) {
        let _ = self.run(Prim::BlkMqFreezeQueue);
    }
    fn blk_mq_unfreeze_queue(&mut self) {
        let _ = self.run(Prim::BlkMqUnfreezeQueue);
    }
    fn dm_internal_suspend_fast(&mut self) -> Result<(), Errno> {
        self.run(Prim::DmInternalSuspendFast)
    }
    fn dm_internal_resume_fast(&mut self) {
        let _ = self.run(Prim::DmInternalResumeFast);
    }
    fn filter_block(&mut self) {
        let _ = self.run(Prim::FilterBlock);
    }
    fn filter_unblock(&mut self) {
        let _ = self.run(Prim::FilterUnblock);
    }
    fn cmpxchg_interposer(&mut self) -> Result<(), Errno> {
        self.run(Prim::CmpxchgInterposer)
    }
    fn clear_interposer(&mut self) {
        let _ = self.run(Prim::ClearInterposer);
    }
    fn bdev_check_alive(&mut self) -> Result<(), Errno> {
        self.run(Prim::BdevCheckAlive)
    }
}
