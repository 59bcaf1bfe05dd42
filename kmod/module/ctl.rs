// SPDX-License-Identifier: GPL-2.0

//! The controllers: each `attach` is one controller of the model, with its own
//! interposer, attachment and runtime monitor. Controllers run attach and
//! detach concurrently, as the model's do: the registry's lock is held only to
//! take an armed injection, to register a finished attach and to claim an
//! attachment for detach, never across a primitive. Two controllers attaching
//! to the same original race in the kernel's own primitives (the original's
//! `open_mutex`, then `cmpxchg` of its interposer pointer), and the loser
//! unwinds with `EBUSY` from `cmpxchg_interposer(O, I)`.

use super::*;
use crate::prims::Mutant;
use crate::remove::IpSlot;

/// One attachment of an interposer to an original device.
pub(crate) struct Attachment {
    pub(crate) file: *mut bindings::file,
    pub(crate) bdev: *mut bindings::block_device,
    pub(crate) kind: Kind,
    pub(crate) md: *mut bindings::mapped_device,
    /// Owns the interposer, until a removal callback takes it over (`remove.rs`).
    pub(crate) slot: *const IpSlot,
    pub(crate) path: KVec<u8>,
}

impl Attachment {
    /// The slot, until release_att() frees it (`None` from then on).
    fn slot(&self) -> Option<&IpSlot> {
        // SAFETY: a non-null slot was allocated in open_original() and is freed only in
        // release_att(), which nulls the pointer.
        (!self.slot.is_null()).then(|| unsafe { &*self.slot })
    }

    /// The interposer, while this attachment owns it.
    pub(crate) fn ip(&self) -> Option<&Interposer> {
        // SAFETY: called by the registry's lock holder (status, changed-block ioctl) or
        // by a step of a generated procedure under O's open_mutex: a taker frees the
        // interposer only after taking it out under the registry's lock (filter_free)
        // or under open_mutex (the removal callback).
        self.slot().and_then(|s| unsafe { s.get() })
    }

    /// Whether this attachment still owns an interposer (no reference is made).
    pub(crate) fn has_ip(&self) -> bool {
        self.slot().is_some_and(IpSlot::occupied)
    }

    pub(crate) fn put_ip(&self, ip: KBox<Interposer>) {
        match self.slot() {
            Some(s) => s.put(ip),
            None => pr_err!("quiesce: ASSERT: filter_alloc(I) on an ended attachment\n"),
        }
    }

    pub(crate) fn take_ip(&self) -> Option<KBox<Interposer>> {
        self.slot().and_then(IpSlot::take)
    }

    /// O went away while attached, and its removal callback took the interposer over.
    pub(crate) fn removed(&self) -> bool {
        self.slot().is_some_and(IpSlot::removed)
    }
}

/// One controller: the state the generated attach and detach run on.
pub(crate) struct Ctl {
    pub(crate) att: Attachment,
    pub(crate) monitor: Monitor,
    /// The next call of this primitive fails (`inject`, test builds only).
    pub(crate) inject: Option<Prim>,
    pub(crate) mutant: Mutant,
    pub(crate) proc: Proc,
    /// A primitive of the running procedure failed.
    pub(crate) failed: bool,
    /// The `before` mutant's moved primitive was done early.
    pub(crate) moved_done: bool,
    /// This controller's `bdev_freeze(O)` holds O's filesystem frozen.
    pub(crate) fs_frozen: bool,
    pub(crate) violations: u64,
    pub(crate) last_violation: KVec<u8>,
    /// Counters and map of the interposer, kept when `filter_free(I)` frees it.
    pub(crate) redirected: u64,
    pub(crate) completed: u64,
    pub(crate) flushes: u64,
    pub(crate) last_map: Option<KVVec<u64>>,
    pub(crate) stall: Stall,
}

// SAFETY: a controller is used by one thread at a time (the one running its attach or
// detach, or the registry's lock holder); the objects its raw pointers name are not
// tied to a thread.
unsafe impl Send for Ctl {}

/// The I/O stall attach and detach cause: from the first freeze or suspend of O to the
/// release of the last one, while new bios to O wait.
pub(crate) struct Stall {
    start: i64,
    depth: u32,
    pub(crate) in_detach: bool,
    attach_ns: KVec<u64>,
    detach_ns: KVec<u64>,
}

impl Stall {
    pub(crate) const fn new() -> Stall {
        Stall { start: 0, depth: 0, in_detach: false, attach_ns: KVec::new(), detach_ns: KVec::new() }
    }

    pub(crate) fn begin(&mut self) {
        if self.depth == 0 {
            // SAFETY: ktime_get() may be called from any context.
            self.start = unsafe { bindings::ktime_get() };
        }
        self.depth += 1;
    }

    pub(crate) fn end(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            // SAFETY: as above.
            let ns = (unsafe { bindings::ktime_get() } - self.start).max(0) as u64;
            let v = if self.in_detach { &mut self.detach_ns } else { &mut self.attach_ns };
            if v.len() < 4096 {
                let _ = v.push(ns, GFP_KERNEL);
            }
        }
    }

    /// Move this controller's samples into `into`.
    fn merge(&mut self, into: &mut Stall) {
        for (from, to) in [(&mut self.attach_ns, &mut into.attach_ns), (&mut self.detach_ns, &mut into.detach_ns)] {
            for &ns in from.iter() {
                if to.len() < 4096 {
                    let _ = to.push(ns, GFP_KERNEL);
                }
            }
            *from = KVec::new();
        }
    }

    /// `n=… p50=… p99=… max=…` in microseconds.
    fn summary(v: &[u64], w: &mut Buf<'_>) {
        let mut s = KVec::new();
        if s.extend_from_slice(v, GFP_KERNEL).is_err() || s.is_empty() {
            let _ = write!(w, "n=0");
            return;
        }
        s.sort_unstable();
        let at = |q: usize| s[((s.len() - 1) * q) / 100] / 1000;
        let _ = write!(w, "n={} p50={} p99={} max={}", s.len(), at(50), at(99), s[s.len() - 1] / 1000);
    }
}

pub(crate) fn prim_by_name(name: &[u8]) -> Option<Prim> {
    Prim::ALL.iter().copied().find(|p| p.name().as_bytes() == name)
}

impl Ctl {
    pub(crate) fn report(&mut self, ev: Event) {
        if let Err(v) = self.monitor.step(ev) {
            self.violations += 1;
            pr_err!("quiesce: MONITOR VIOLATION: {:?} is illegal in state \"{}\"; refused\n", v.event, v.state);
            self.last_violation = KVec::new();
            let mut w = Buf(&mut self.last_violation);
            let _ = write!(w, "{:?} in \"{}\"", v.event, v.state);
        }
    }

    pub(crate) fn att(&mut self) -> &mut Attachment {
        &mut self.att
    }

    pub(crate) fn queue(&mut self) -> *mut bindings::request_queue {
        // SAFETY: the attachment holds the original open.
        unsafe { (*self.att.bdev).bd_queue }
    }

    pub(crate) fn done(&mut self, p: Prim, r: Result<(), Errno>) -> Result<(), Errno> {
        self.report(if r.is_ok() { Event::Ok(p) } else { Event::Err(p) });
        r
    }

    /// Drop the attachment's hold on the original.
    fn release(&mut self) {
        if self.att.has_ip() {
            pr_err!("quiesce: ASSERT: the interposer outlived its attachment (filter_free(I) missing)\n");
        }
        release_att(&mut self.att);
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        // A no-op once release() ran; otherwise (a failed allocation) the original's
        // references are given back here.
        release_att(&mut self.att);
    }
}

pub(crate) struct Buf<'a>(pub(crate) &'a mut KVec<u8>);

impl Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes(), GFP_KERNEL).map_err(|_| core::fmt::Error)
    }
}

/// Controllers that may exist at once.
const MAX_CTLS: usize = 8;

/// A controller's place in the registry.
enum Slot {
    Free,
    /// Its attach or detach is running (the controller is on that thread's hands).
    Busy,
    Attached(KBox<Ctl>),
}

/// What every controller shares: the attached controllers, the armed injection, the
/// counters of those that ended.
pub(crate) struct Registry {
    slots: [Slot; MAX_CTLS],
    pub(crate) inject: Option<Prim>,
    /// The mutant set by `mutant <name>` (test builds only), and its name.
    pub(crate) mutant: Mutant,
    mutant_name: KVec<u8>,
    violations: u64,
    last_violation: KVec<u8>,
    attaches: u64,
    detaches: u64,
    ebusy: u64,
    /// Interposers a removal callback detached and freed.
    removals: u64,
    redirected: u64,
    completed: u64,
    flushes: u64,
    last_map: KVVec<u64>,
    stall: Stall,
}

// SAFETY: the registry is only used under its mutex.
unsafe impl Send for Registry {}

impl Registry {
    pub(crate) const fn new() -> Registry {
        Registry {
            slots: [const { Slot::Free }; MAX_CTLS],
            inject: None,
            mutant: Mutant::None,
            mutant_name: KVec::new(),
            violations: 0,
            last_violation: KVec::new(),
            attaches: 0,
            detaches: 0,
            ebusy: 0,
            removals: 0,
            redirected: 0,
            completed: 0,
            flushes: 0,
            last_map: KVVec::new(),
            stall: Stall::new(),
        }
    }

    fn attached(&self) -> impl Iterator<Item = &KBox<Ctl>> {
        self.slots.iter().filter_map(|s| match s {
            Slot::Attached(c) => Some(c),
            _ => None,
        })
    }

    /// The interposer attached to device `dev`, alive while the lock is held (detach
    /// must claim the attachment under it before it frees the interposer).
    pub(crate) fn interposer_of(&self, dev: bindings::dev_t) -> Option<&Interposer> {
        self.attached()
            // SAFETY: the attachment holds the original open.
            .find(|c| unsafe { (*c.att.bdev).bd_dev } == dev)
            .and_then(|c| c.att.ip())
    }

    /// Fold in the figures of an interposer a removal callback freed.
    pub(crate) fn absorb_removed(&mut self, redirected: u64, completed: u64, flushes: u64, map: Option<KVVec<u64>>) {
        self.removals += 1;
        self.redirected += redirected;
        self.completed += completed;
        self.flushes += flushes;
        if let Some(m) = map {
            self.last_map = m;
        }
    }

    fn busy(&self) -> usize {
        self.slots.iter().filter(|s| matches!(s, Slot::Busy)).count()
    }

    /// Reserve a free slot for a new controller.
    fn reserve(&mut self) -> Option<usize> {
        let i = self.slots.iter().position(|s| matches!(s, Slot::Free))?;
        self.slots[i] = Slot::Busy;
        Some(i)
    }

    /// Fold an ended (or failed) controller's figures into the registry's.
    fn absorb(&mut self, c: &mut Ctl) {
        self.violations += c.violations;
        if c.violations > 0 {
            self.last_violation = core::mem::take(&mut c.last_violation);
        }
        c.violations = 0;
        self.redirected += core::mem::take(&mut c.redirected);
        self.completed += core::mem::take(&mut c.completed);
        self.flushes += core::mem::take(&mut c.flushes);
        if let Some(m) = c.last_map.take() {
            self.last_map = m;
        }
        c.stall.merge(&mut self.stall);
    }
}

static REG: AtomicPtr<Mutex<Registry>> = AtomicPtr::new(ptr::null_mut());

/// Publish the registry (module init) or withdraw it (`null`, module exit).
pub(crate) fn publish(r: *mut Mutex<Registry>) {
    REG.store(r, Ordering::Release);
}

/// Run `f` under the registry's lock; `None` once the module is going away.
pub(crate) fn with_reg<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    let p = REG.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: REG points to the module's registry from init until drop withdraws it,
    // after the misc device is gone (no file operation runs: an open file holds the
    // module) and detach_all() has ended every attachment (a removal callback, the
    // other caller, runs only while its attachment exists, and ending one that was
    // removed waits for the callback to return).
    let m = unsafe { &*p };
    let mut g = m.lock();
    Some(f(&mut g))
}

pub(crate) fn errno(e: u32) -> i32 {
    -(e as i32)
}

/// Open `path` as an original: its kind and, for device-mapper, its mapped_device.
fn open_original(path: &[u8]) -> Result<Attachment, i32> {
    let mut cpath = KVec::new();
    cpath.extend_from_slice(path, GFP_KERNEL).map_err(|_| errno(bindings::ENOMEM))?;
    cpath.push(0, GFP_KERNEL).map_err(|_| errno(bindings::ENOMEM))?;
    let mut dev: bindings::dev_t = 0;
    // SAFETY: `cpath` is NUL-terminated; `dev` is a valid out-parameter.
    let r = unsafe { bindings::lookup_bdev(cpath.as_ptr().cast::<CChar>(), &mut dev) };
    if r != 0 {
        pr_info!("quiesce: attach: {}: not a block device ({})\n", BStrDisplay(path), r);
        return Err(r);
    }
    // Read-only: the module never writes through this file (clones are bios), and an
    // opener for writing would refuse a mount, and be refused on a mounted device,
    // under CONFIG_BLK_DEV_WRITE_MOUNTED=n.
    // SAFETY: opening a block device by number, without a holder.
    let file = unsafe { bindings::bdev_file_open_by_dev(dev, BLK_OPEN_READ, ptr::null_mut(), ptr::null()) };
    if is_err(file) {
        pr_info!("quiesce: attach: {}: cannot open ({})\n", BStrDisplay(path), file as isize);
        return Err(file as isize as i32);
    }
    // SAFETY: `file` is an open block device file.
    let bdev = unsafe { bindings::file_bdev(file) };
    // SAFETY: an open block device has a live queue.
    let (bio_based, features) = unsafe { ((*(*bdev).bd_queue).mq_ops.is_null(), (*(*bdev).bd_queue).limits.features) };
    if features & BLK_FEAT_ZONED != 0 {
        // A zone append's clone reports the sector written in the clone, and the
        // original bio would need it copied back; writes must also stay in order.
        pr_info!(
            "quiesce: attach: {}: a zoned device (zone append needs its sector copied back to the \
             original bio, which this interposer does not do); refused\n",
            BStrDisplay(path)
        );
        // SAFETY: the file bdev_file_open_by_dev() opened above.
        unsafe { bindings::fput(file) };
        return Err(errno(bindings::EOPNOTSUPP));
    }
    let (kind, md) = if !bio_based {
        (Kind::Request, ptr::null_mut())
    } else {
        // SAFETY: looking up a device-mapper device by number; NULL if it is not one.
        let md = unsafe { bindings::dm_get_md(dev) };
        if !md.is_null() {
            (Kind::Bio, md)
        } else if dev >> bindings::MINORBITS == bindings::RAMDISK_MAJOR {
            // brd completes every bio inside its ->submit_bio.
            (Kind::BioSync, md)
        } else {
            // md, drbd, bcache, nvme multipath: bios may outlive ->submit_bio, and
            // there is no suspend that waits for them.
            pr_info!(
                "quiesce: attach: {}: a bio-based device that is neither device-mapper nor brd: \
                 its bios may outlive ->submit_bio and nothing drains them; refused\n",
                BStrDisplay(path)
            );
            // SAFETY: the file bdev_file_open_by_dev() opened above.
            unsafe { bindings::fput(file) };
            return Err(errno(bindings::EOPNOTSUPP));
        }
    };
    let mut name = KVec::new();
    let _ = name.extend_from_slice(path, GFP_KERNEL);
    let mut att = Attachment { file, bdev, kind, md, slot: ptr::null(), path: name };
    match IpSlot::alloc() {
        Ok(slot) => att.slot = slot,
        Err(e) => {
            release_att(&mut att);
            return Err(e);
        }
    }
    Ok(att)
}

/// `attach <path>`: a new controller runs the generated attach.
fn attach(path: &[u8]) -> Result<(), i32> {
    let att = open_original(path)?;
    let kind = att.kind;
    let reserved = with_reg(|r| r.reserve().map(|i| (i, r.inject.take(), r.mutant)));
    let (slot, inject, mutant) = match reserved {
        Some(Some(x)) => x,
        Some(None) => {
            pr_info!("quiesce: attach: {} controllers already attached or running\n", MAX_CTLS);
            let mut a = att;
            release_att(&mut a);
            return Err(errno(bindings::EBUSY));
        }
        None => return Err(errno(bindings::ENODEV)),
    };
    let ctl = Ctl {
        att,
        monitor: Monitor::new(kind),
        inject,
        mutant,
        proc: Proc::Idle,
        failed: false,
        moved_done: false,
        fs_frozen: false,
        violations: 0,
        last_violation: KVec::new(),
        redirected: 0,
        completed: 0,
        flushes: 0,
        last_map: None,
        stall: Stall::new(),
    };
    let mut ctl = match KBox::new(ctl, GFP_KERNEL) {
        Ok(c) => c,
        Err(_) => {
            // KBox::new dropped the controller, and Ctl's Drop released the original.
            with_reg(|r| r.slots[slot] = Slot::Free);
            return Err(errno(bindings::ENOMEM));
        }
    };
    ctl.begin(Proc::Attach);
    ctl.trace_proc(Proc::Attach, 1);
    let r = protocol::attach(&mut *ctl, kind);
    ctl.trace_proc(Proc::Attach, r.map_or_else(|e| e.to_kernel(), |()| 0));
    ctl.end();
    ctl.report(Event::AttachReturned(r.is_ok()));
    match r {
        Ok(()) => {
            pr_info!("quiesce: attached to {} ({})\n", BStrDisplay(path), kind_text(kind));
            with_reg(|reg| {
                reg.attaches += 1;
                reg.slots[slot] = Slot::Attached(ctl);
            });
            Ok(())
        }
        Err(e) => {
            ctl.release();
            with_reg(|reg| {
                if e == Errno::EBUSY {
                    reg.ebusy += 1;
                }
                reg.absorb(&mut ctl);
                reg.slots[slot] = Slot::Free;
            });
            pr_info!("quiesce: attach to {} failed: {}\n", BStrDisplay(path), e.to_kernel());
            Err(e.to_kernel())
        }
    }
}

/// Run the generated detach on the controller claimed from `slot`; the slot is freed
/// when it succeeds and the controller is attached again when it fails.
fn run_detach(slot: usize, mut ctl: KBox<Ctl>) -> Result<(), Errno> {
    let kind = ctl.att.kind;
    ctl.report(Event::DetachBegin);
    ctl.stall.in_detach = true;
    ctl.begin(Proc::Detach);
    ctl.trace_proc(Proc::Detach, 1);
    let r = protocol::detach(&mut *ctl, kind);
    ctl.trace_proc(Proc::Detach, r.map_or_else(|e| e.to_kernel(), |()| 0));
    ctl.end();
    ctl.stall.in_detach = false;
    ctl.report(Event::DetachReturned(r.is_ok()));
    // O went away while attached: its removal detached the interposer, and this
    // detach (which found O dead) ends what is left of the attachment.
    let removed = ctl.att.removed();
    if removed {
        // The removal callback set `removed` with open_mutex held and may still be
        // running: taking the mutex once waits for it to return, so the module (whose
        // reference it dropped) and the original outlive it.
        // SAFETY: the original is held open until release() below.
        unsafe {
            bindings::blk_interposer_lock(ctl.att.bdev);
            bindings::blk_interposer_unlock(ctl.att.bdev);
        }
    }
    if r.is_ok() || removed {
        ctl.release();
        if removed {
            pr_info!("quiesce: detach: {} was removed; its removal detached the interposer\n", BStrDisplay(&ctl.att.path));
        } else {
            pr_info!("quiesce: detached from {}\n", BStrDisplay(&ctl.att.path));
        }
    }
    with_reg(|reg| {
        reg.absorb(&mut ctl);
        if r.is_ok() || removed {
            reg.detaches += u64::from(r.is_ok());
            reg.slots[slot] = Slot::Free;
        } else {
            // Still attached: keep it, so that detach can be tried again.
            reg.slots[slot] = Slot::Attached(ctl);
        }
    });
    if removed {
        // Whatever step stopped it (or none did): the original is gone.
        return Err(Errno::ENODEV);
    }
    r
}

/// Claim the attached controller in slot `i` for detach.
fn claim(r: &mut Registry, i: usize) -> Option<KBox<Ctl>> {
    match core::mem::replace(&mut r.slots[i], Slot::Busy) {
        Slot::Attached(c) => Some(c),
        other => {
            r.slots[i] = other;
            None
        }
    }
}

/// `detach [<path>]`: the controller attached to `path` (or the only one) detaches.
fn detach(path: &[u8]) -> Result<(), i32> {
    let claimed = with_reg(|r| {
        let attached = |s: &Slot| matches!(s, Slot::Attached(_));
        let i = if path.is_empty() {
            match r.attached().count() {
                1 => r.slots.iter().position(attached),
                0 => {
                    pr_info!("quiesce: detach: not attached\n");
                    None
                }
                n => {
                    pr_info!("quiesce: detach: {} attachments: name the device\n", n);
                    None
                }
            }
        } else {
            let i = r.slots.iter().position(|s| matches!(s, Slot::Attached(c) if c.att.path.as_slice() == path));
            if i.is_none() {
                pr_info!("quiesce: detach: {} is not attached\n", BStrDisplay(path));
            }
            i
        };
        i.and_then(|i| claim(r, i).map(|c| (i, c)))
    });
    match claimed {
        None => Err(errno(bindings::ENODEV)),
        Some(None) => Err(errno(bindings::EINVAL)),
        Some(Some((slot, ctl))) => run_detach(slot, ctl).map_err(Errno::to_kernel),
    }
}

/// Detach every attachment (module exit). Returns how many still owned their
/// interposer: one of those means a missing module reference. An attachment whose
/// original was removed gave its reference to the removal callback, which dropped
/// it: it only ends here.
pub(crate) fn detach_all() -> usize {
    let mut n = 0;
    for i in 0..MAX_CTLS {
        if let Some(Some(ctl)) = with_reg(|r| claim(r, i)) {
            let removed = ctl.att.removed();
            n += usize::from(!removed);
            if run_detach(i, ctl).is_err() && !removed {
                pr_err!("quiesce: detach on unload failed\n");
            }
        }
    }
    n
}

/// Drop an attachment's hold on the original before any controller ran on it.
fn release_att(a: &mut Attachment) {
    if !a.md.is_null() {
        // SAFETY: the reference dm_get_md() took.
        unsafe { bindings::dm_put(a.md) };
        a.md = ptr::null_mut();
    }
    if !a.file.is_null() {
        // SAFETY: the file bdev_file_open_by_dev() opened.
        unsafe { bindings::fput(a.file) };
        a.file = ptr::null_mut();
    }
    if !a.slot.is_null() {
        // SAFETY: allocated in open_original(); the attachment ends here, and nothing
        // else holds the slot (its interposer, if any, was freed or is kept with it).
        unsafe { IpSlot::free(a.slot) };
        a.slot = ptr::null();
    }
}

impl Registry {
    pub(crate) fn status(&self, out: &mut KVec<u8>) {
        let mut w = Buf(out);
        let first = self.attached().next();
        let (mut red, mut comp, mut fl, mut infl) = (self.redirected, self.completed, self.flushes, 0usize);
        for c in self.attached() {
            if let Some(ip) = c.att.ip() {
                red += ip.redirected.load(Ordering::Relaxed);
                comp += ip.completed.load(Ordering::Relaxed);
                fl += ip.flushes.load(Ordering::Relaxed);
                infl += ip.inflight.load(Ordering::Relaxed);
            }
        }
        let _ = match first {
            Some(c) => writeln!(
                w,
                "state: attached\ndevice: {}\nkind: {} ({})",
                BStrDisplay(&c.att.path),
                kind_name(c.att.kind),
                kind_text(c.att.kind)
            ),
            None => writeln!(w, "state: detached"),
        };
        let _ = writeln!(w, "attachments: {}", self.attached().count());
        for c in self.attached() {
            let gone = if c.att.removed() { " (removed)" } else { "" };
            let _ = writeln!(w, "attached: {} {} {}{gone}", BStrDisplay(&c.att.path), kind_name(c.att.kind), c.monitor.state());
        }
        let _ = writeln!(w, "busy: {}", self.busy());
        let _ = writeln!(
            w,
            "attaches: {}\ndetaches: {}\nattach_ebusy: {}\nremovals: {}\nredirected: {red}\ncompleted: {comp}\nflushes: {fl}\ninflight: {infl}",
            self.attaches, self.detaches, self.ebusy, self.removals
        );
        let _ = writeln!(w, "monitor: {}", first.map_or("idle", |c| c.monitor.state()));
        let v: u64 = self.violations + self.attached().map(|c| c.violations).sum::<u64>();
        let _ = writeln!(w, "violations: {v}");
        if v > 0 {
            let last = self.attached().find(|c| c.violations > 0).map_or(&self.last_violation, |c| &c.last_violation);
            let _ = writeln!(w, "last_violation: {}", BStrDisplay(last));
        }
        let _ = writeln!(w, "inject: {}", self.inject.map_or("none", |p| p.call()));
        if self.mutant_name.is_empty() {
            let _ = writeln!(w, "mutant: none");
        } else {
            let _ = writeln!(w, "mutant: {}", BStrDisplay(&self.mutant_name));
        }
        let _ = writeln!(w, "interposers_alive: {}", ALIVE.load(Ordering::Relaxed));
        let _ = write!(w, "injectable:");
        for p in Prim::ALL.iter().filter(|p| TEST_BUILD && p.injected().is_some()) {
            let _ = write!(w, " {}={:?}", p.name(), p.injected().unwrap_or(Errno::EINVAL));
        }
        let _ = writeln!(w);
        let _ = write!(w, "stall_attach_us: ");
        Stall::summary(&self.stall.attach_ns, &mut w);
        let _ = write!(w, "\nstall_detach_us: ");
        Stall::summary(&self.stall.detach_ns, &mut w);
        let _ = writeln!(w);
        match first.and_then(|c| c.att.ip()) {
            Some(ip) => {
                let _ = writeln!(
                    w,
                    "cbt: session {} generation {} blocks {}",
                    ip.session,
                    ip.generation.load(Ordering::Relaxed),
                    ip.nr_blocks
                );
                let map = |i: usize| ip.map[i].load(Ordering::Acquire);
                changed_text(&mut w, ip.map.len(), map);
            }
            None => changed_text(&mut w, self.last_map.len(), |i| self.last_map[i]),
        }
    }
}

/// At most this many ranges of changed blocks are listed as text (the binary
/// interface, `QUIESCE_IOC_CBT`, has the whole map).
const TEXT_RANGES: usize = 1024;

/// `changed_blocks: N` and `changed: a-b,c,...` from `words` map words.
fn changed_text(w: &mut Buf<'_>, words: usize, map: impl Fn(usize) -> u64) {
    let count: u64 = (0..words).map(|i| u64::from(map(i).count_ones())).sum();
    let _ = writeln!(w, "changed_blocks: {count}");
    let _ = write!(w, "changed:");
    let total = words as u64 * 64;
    let bit = |b: u64| map((b / 64) as usize) & (1 << (b % 64)) != 0;
    let (mut b, mut ranges) = (0, 0usize);
    let mut sep = " ";
    while b < total {
        if map((b / 64) as usize) == 0 {
            b = (b / 64 + 1) * 64;
            continue;
        }
        if bit(b) {
            let start = b;
            while b + 1 < total && bit(b + 1) {
                b += 1;
            }
            if ranges == TEXT_RANGES {
                let _ = write!(w, "{sep}... (more: read the map with quiesce-cbt)");
                break;
            }
            let _ = if start == b { write!(w, "{sep}{start}") } else { write!(w, "{sep}{start}-{b}") };
            ranges += 1;
            sep = ",";
        }
        b += 1;
    }
    let _ = writeln!(w);
}

/// `mutant <name>` (test builds only): from now on this load of the module is that
/// mutant of the protocol (`kmod/mutants.toml`). Once per load, while nothing is attached.
fn set_mutant(name: &[u8]) -> Result<(), i32> {
    let Some(m) = Mutant::parse(name) else {
        pr_info!("quiesce: mutant: unknown mutant \"{}\"\n", BStrDisplay(name));
        return Err(errno(bindings::EINVAL));
    };
    with_reg(|r| {
        if r.mutant != Mutant::None {
            pr_info!("quiesce: mutant: already set to {}; reload the module\n", BStrDisplay(&r.mutant_name));
            return Err(errno(bindings::EBUSY));
        }
        if r.attached().next().is_some() || r.busy() != 0 {
            pr_info!("quiesce: mutant: only while no controller is attached or running\n");
            return Err(errno(bindings::EBUSY));
        }
        let mut n = KVec::new();
        n.extend_from_slice(name, GFP_KERNEL).map_err(|_| errno(bindings::ENOMEM))?;
        r.mutant = m;
        r.mutant_name = n;
        m.arm_hot_path();
        pr_warn!("quiesce: mutant {} set: this load breaks the checked protocol\n", BStrDisplay(name));
        Ok(())
    })
    .unwrap_or(Err(errno(bindings::ENODEV)))
}

/// One command written to /dev/quiesce.
pub(crate) fn command(line: &[u8]) -> Result<(), i32> {
    let line = trim(line);
    let (cmd, arg) = match line.iter().position(|&c| c == b' ') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &line[line.len()..]),
    };
    match cmd {
        b"attach" if !arg.is_empty() => attach(arg),
        b"detach" => detach(arg),
        b"reset-stats" if arg.is_empty() => {
            with_reg(|r| r.stall = Stall::new());
            Ok(())
        }
        b"mutant" | b"inject" | b"hold" | b"wait-held" | b"release" if !TEST_BUILD => {
            pr_info!("quiesce: {}: built only into the test build\n", BStrDisplay(cmd));
            Err(errno(bindings::EOPNOTSUPP))
        }
        b"mutant" => set_mutant(arg),
        b"hold" | b"wait-held" | b"release" if arg.is_empty() && TEST_BUILD => crate::remove::hold_command(cmd),
        b"inject" => match prim_by_name(arg) {
            Some(p) if p.injected().is_none() => {
                pr_info!("quiesce: inject: the spec injects no failure into {}\n", p.call());
                Err(errno(bindings::EINVAL))
            }
            Some(p) => with_reg(|r| {
                if r.attached().next().is_none() && r.busy() == 0 {
                    r.inject = Some(p);
                    Ok(())
                } else {
                    pr_info!("quiesce: inject: only while no controller is attached or running\n");
                    Err(errno(bindings::EBUSY))
                }
            })
            .unwrap_or(Err(errno(bindings::ENODEV))),
            None => {
                pr_info!("quiesce: inject: unknown primitive {}\n", BStrDisplay(arg));
                Err(errno(bindings::EINVAL))
            }
        },
        _ => {
            pr_info!(
                "quiesce: unknown command \"{}\"; use attach <path>, detach [<path>], inject <primitive>, mutant <name>\n",
                BStrDisplay(line)
            );
            Err(errno(bindings::EINVAL))
        }
    }
}
