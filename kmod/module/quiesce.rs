// SPDX-License-Identifier: GPL-2.0

//! quiesce: a block device interposer that runs the model-checked protocol.
//!
//! Attach, detach, their unwinding and the runtime monitor are the generated,
//! checked code of `generated/src/protocol.rs`, included below unchanged. This
//! module implements its `Primitives` over the kernel API, feeds the monitor
//! every event it performs, and provides the interposer's payload: every bio
//! sent to the original is passed through to it as a marked clone, and the
//! 4 KiB blocks written while attached are recorded in a changed-block map.
//!
//! Control: write `attach <path>` or `detach` to `/dev/quiesce` (and, in the
//! boot test's build, `inject <primitive>`); read it for the state, counters
//! and changed-block map.

use core::ffi::c_void;

/// The kernel's `char` (built with -funsigned-char).
type CChar = u8;
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use kernel::alloc::flags::GFP_KERNEL;
use kernel::alloc::{KBox, KVVec, KVec};
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::Mutex;
use kernel::types::Opaque;
use kernel::{c_str, new_mutex};

#[allow(dead_code, missing_docs, unreachable_pub, clippy::all)]
#[path = "../../generated/src/protocol.rs"]
mod protocol;
use protocol::{Errno, Event, Kind, Monitor, Prim, Primitives};

mod prims;
use prims::{Mutant, Proc, MUTANT, TEST_BUILD};

/// Interposers allocated and not yet freed (a leak check for the tests).
static ALIVE: AtomicUsize = AtomicUsize::new(0);

module! {
    type: QuiesceModule,
    name: "quiesce",
    author: "quiesce",
    description: "Block device interposer running the model-checked quiesce protocol",
    license: "GPL",
}

// Values of kernel macros that bindgen does not translate.
const BLK_OPEN_READ: bindings::blk_mode_t = 1 << 0;
const BLK_OPEN_WRITE: bindings::blk_mode_t = 1 << 1;
const BLK_STS_RESOURCE: bindings::blk_status_t = 9;
const BLK_STS_IOERR: bindings::blk_status_t = 10;
/// The `unmarked_clone` mutant (see prims.rs).
const MUTANT_UNMARKED_CLONE: bool = matches!(MUTANT.as_bytes(), b"unmarked_clone");
/// The `polled_clone` mutant (see prims.rs).
const MUTANT_POLLED_CLONE: bool = matches!(MUTANT.as_bytes(), b"polled_clone");
const REQ_OP_MASK: u32 = (1 << bindings::REQ_OP_BITS) - 1;
/// `REQ_POLLED`: the submitter polls for this bio's completion (io_uring IOPOLL).
const REQ_POLLED: u32 = 1 << bindings::req_flag_bits___REQ_POLLED;
/// `GFP_NOIO`: `GFP_KERNEL` without `__GFP_IO` and `__GFP_FS`.
const GFP_NOIO: bindings::gfp_t =
    bindings::GFP_KERNEL & !((1 << bindings::___GFP_IO_BIT) | (1 << bindings::___GFP_FS_BIT));
/// Changed-block map granularity: 4 KiB, i.e. 8 sectors.
const SECTORS_PER_BLOCK_SHIFT: u32 = 3;
/// Front padding of each clone: where the clone's interposer is kept.
const PAD: usize = core::mem::size_of::<usize>();

extern "C" {
    // Exported by drivers/md/dm.c, declared only in its private header.
    fn dm_internal_suspend_fast(md: *mut bindings::mapped_device);
    fn dm_internal_resume_fast(md: *mut bindings::mapped_device);
}

fn is_err<T>(p: *mut T) -> bool {
    (p as usize) >= (-4095isize) as usize
}

/// The interposer I: takes over the bios sent to the original.
#[repr(C)]
struct Interposer {
    /// First field: the block layer hands us a pointer to it.
    hook: Opaque<bindings::blk_interposer>,
    bs: Opaque<bindings::bio_set>,
    orig: *mut bindings::block_device,
    /// Clones sent to the original and not yet completed.
    inflight: AtomicUsize,
    /// Set by `filter_block(I)`: bios handed to the filter are deferred.
    blocked: AtomicBool,
    /// Bios that arrived while blocked (a stack linked through `bi_next`).
    deferred: AtomicPtr<bindings::bio>,
    redirected: AtomicU64,
    completed: AtomicU64,
    map: KVVec<AtomicU64>,
}

impl Interposer {
    /// `filter_alloc(I)` for original `bdev`: the filter, its bio_set and its map.
    fn new(bdev: *mut bindings::block_device) -> Result<KBox<Interposer>> {
        // SAFETY: the original is held open.
        let sectors = unsafe { (*bdev).bd_nr_sectors };
        let words = ((sectors >> SECTORS_PER_BLOCK_SHIFT) as usize).div_ceil(64);
        let mut map = KVVec::with_capacity(words, GFP_KERNEL)?;
        for _ in 0..words {
            map.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        let ip = KBox::new(
            Interposer {
                hook: Opaque::new(bindings::blk_interposer { submit_bio: Some(ip_submit) }),
                // SAFETY: an all-zero bio_set is its state before bioset_init(), and
                // bioset_exit() of one is a no-op.
                bs: Opaque::new(unsafe { core::mem::zeroed() }),
                orig: bdev,
                inflight: AtomicUsize::new(0),
                blocked: AtomicBool::new(false),
                deferred: AtomicPtr::new(ptr::null_mut()),
                redirected: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                map,
            },
            GFP_KERNEL,
        )?;
        ALIVE.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `bs` is zeroed, boxed (it never moves) and not yet in use.
        if unsafe { bindings::bioset_init(ip.bs.get(), 64, PAD as u32, 0) } != 0 {
            return Err(ENOMEM);
        }
        Ok(ip)
    }

    /// Drop one in-flight count; the last one wakes `wait_drained`.
    ///
    /// # Safety
    /// `ip` points to a live interposer with a count taken by `issue`; it may be
    /// freed as soon as the count reaches zero, so it is not touched after that.
    unsafe fn put_inflight(ip: *const Interposer) {
        // SAFETY: live until the decrement below, by the caller's count.
        let var = unsafe { ptr::addr_of!((*ip).inflight) };
        // SAFETY: as above; SeqCst orders the decrement before the waiter's re-check.
        if unsafe { (*var).fetch_sub(1, Ordering::SeqCst) } == 1 {
            // SAFETY: wake_up_var() only hashes the address; it does not dereference it.
            unsafe { bindings::wake_up_var(var.cast_mut().cast::<c_void>()) };
        }
    }

    /// `filter_block(I)`, first half: from now on the bios handed to I are deferred.
    fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
    }

    /// `filter_block(I)`, second half: wait (uninterruptibly, `wait_var_event`'s
    /// loop) until no clone is in flight.
    fn wait_drained(&self) {
        let var = ptr::from_ref(&self.inflight).cast_mut().cast::<c_void>();
        // SAFETY: __var_waitqueue() only hashes the address.
        let wq = unsafe { bindings::__var_waitqueue(var) };
        // SAFETY: an all-zero entry is initialised by init_wait_var_entry() below.
        let mut entry: bindings::wait_bit_queue_entry = unsafe { core::mem::zeroed() };
        // SAFETY: `entry` lives on this stack frame until finish_wait() removes it.
        unsafe { bindings::init_wait_var_entry(&mut entry, var, 0) };
        loop {
            // SAFETY: `wq` and `entry` are valid; this is wait_var_event()'s loop.
            unsafe { bindings::prepare_to_wait_event(wq, &mut entry.wq_entry, bindings::TASK_UNINTERRUPTIBLE as i32) };
            if self.inflight.load(Ordering::SeqCst) == 0 {
                break;
            }
            // SAFETY: process context, no spinlock held.
            unsafe { bindings::schedule() };
        }
        // SAFETY: `entry` was queued on `wq` by prepare_to_wait_event().
        unsafe { bindings::finish_wait(wq, &mut entry.wq_entry) };
    }

    /// `filter_unblock(I)`: take bios again and issue the deferred ones, oldest first.
    fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
        let mut list = self.deferred.swap(ptr::null_mut(), Ordering::AcqRel);
        let mut rev: *mut bindings::bio = ptr::null_mut();
        while !list.is_null() {
            // SAFETY: the list holds bios deferred by `issue`, linked by bi_next.
            unsafe {
                let next = (*list).bi_next;
                (*list).bi_next = rev;
                rev = list;
                list = next;
            }
        }
        while !rev.is_null() {
            // SAFETY: as above; each bio is unlinked before it is issued.
            unsafe {
                let next = (*rev).bi_next;
                (*rev).bi_next = ptr::null_mut();
                self.issue(rev);
                rev = next;
            }
        }
    }

    fn mark_written(&self, bio: *mut bindings::bio) {
        // SAFETY: `bio` is a valid bio owned by this call chain.
        let (opf, sector, size) = unsafe { ((*bio).bi_opf, (*bio).bi_iter.bi_sector, (*bio).bi_iter.bi_size) };
        let op = opf & REQ_OP_MASK;
        if op != bindings::req_op_REQ_OP_WRITE
            && op != bindings::req_op_REQ_OP_DISCARD
            && op != bindings::req_op_REQ_OP_WRITE_ZEROES
        {
            return;
        }
        let first = sector >> SECTORS_PER_BLOCK_SHIFT;
        let last = (sector + (u64::from(size) >> 9) + (1 << SECTORS_PER_BLOCK_SHIFT) - 1) >> SECTORS_PER_BLOCK_SHIFT;
        for b in first..last {
            if let Some(w) = self.map.get((b / 64) as usize) {
                w.fetch_or(1 << (b % 64), Ordering::Relaxed);
            }
        }
    }

    fn defer(&self, bio: *mut bindings::bio) {
        let mut head = self.deferred.load(Ordering::Acquire);
        loop {
            // SAFETY: we own `bio` until it is on the list.
            unsafe { (*bio).bi_next = head };
            match self.deferred.compare_exchange(head, bio, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Send a marked clone of `bio` to the original; complete `bio` when it completes.
    ///
    /// # Safety
    /// `bio` is a valid bio that the caller hands over.
    unsafe fn issue(&self, bio: *mut bindings::bio) {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        if self.blocked.load(Ordering::SeqCst) {
            self.defer(bio);
            // SAFETY: the count taken above.
            unsafe { Interposer::put_inflight(self) };
            return;
        }
        self.mark_written(bio);
        // SAFETY: `orig` is held open while the interposer exists; `bs` was set up by
        // bioset_init(); `bio` is valid. The clone copies BIO_INTERPOSED (patch 1).
        let clone = unsafe { bindings::bio_alloc_clone(self.orig, bio, GFP_NOIO, self.bs.get()) };
        if clone.is_null() {
            // SAFETY: we own `bio`; ending it with an error hands it back.
            unsafe {
                (*bio).bi_status = BLK_STS_RESOURCE;
                bindings::bio_endio(bio);
            }
            // SAFETY: the count taken above.
            unsafe { Interposer::put_inflight(self) };
            return;
        }
        // SAFETY: clones come from `bs`, set up with PAD bytes of front padding that are
        // ours; `clone` is a fresh bio we own until submit_bio_noacct().
        unsafe {
            *clone.cast::<u8>().sub(PAD).cast::<*const Interposer>() = self;
            (*clone).bi_end_io = Some(clone_endio);
            (*clone).bi_private = bio.cast();
            // The submitter polls the original bio, not this clone: a polled clone
            // would complete only when someone polls O's poll queue, and no one does.
            if !MUTANT_POLLED_CLONE {
                (*clone).bi_opf &= !REQ_POLLED;
            }
            if MUTANT_UNMARKED_CLONE {
                (*clone).bi_flags &= !(1 << bindings::BIO_INTERPOSED);
            }
        }
        self.redirected.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `clone` is a fully set-up bio for the original device.
        unsafe { bindings::submit_bio_noacct(clone) };
    }
}

impl Drop for Interposer {
    fn drop(&mut self) {
        // SAFETY: no clone is in flight (filter_block(I) drained them) and no bio can
        // reach the interposer (its pointer was cleared under a queue freeze); a
        // bio_set that bioset_init() never set up is all zero, and exiting it is a no-op.
        unsafe { bindings::bioset_exit(self.bs.get()) };
        ALIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The hook the block layer calls for each bio sent to the original.
///
/// # Safety
/// Called by the block layer with a live interposer's `hook` and a bio it hands over,
/// under the original's queue usage counter.
unsafe extern "C" fn ip_submit(hook: *mut bindings::blk_interposer, bio: *mut bindings::bio) {
    // SAFETY: `hook` is the first field of a `#[repr(C)]` Interposer that stays allocated
    // while it is set on a device: detach clears the pointer under a queue freeze, which
    // waits for this call (it runs under the queue usage counter), before freeing it.
    let ip = unsafe { &*hook.cast::<Interposer>() };
    // SAFETY: the block layer handed `bio` over to us.
    let end_io = unsafe { (*bio).bi_end_io }.map(|f| f as usize);
    if end_io == Some(clone_endio as usize) {
        // One of our own clones came back: the marker did not stop it.
        pr_err!("quiesce: ASSERT: no_recursion: a clone re-entered its interposer\n");
        // SAFETY: we own `bio`; ending it with an error hands it back.
        unsafe {
            (*bio).bi_status = BLK_STS_IOERR;
            bindings::bio_endio(bio);
        }
        return;
    }
    // SAFETY: the block layer handed `bio` over to us.
    unsafe { ip.issue(bio) };
}

/// Completion of a clone: complete the original bio.
///
/// # Safety
/// Called by the block layer for a clone made by `Interposer::issue`.
unsafe extern "C" fn clone_endio(clone: *mut bindings::bio) {
    // SAFETY: `issue` stored the interposer in the clone's front padding and the original
    // bio in `bi_private`; the interposer outlives its in-flight clones (filter_block(I)
    // waits for `inflight` to drain before filter_free(I) frees it).
    unsafe {
        let ip = &**clone.cast::<u8>().sub(PAD).cast::<*const Interposer>();
        let orig = (*clone).bi_private.cast::<bindings::bio>();
        (*orig).bi_status = (*clone).bi_status;
        bindings::bio_put(clone);
        bindings::bio_endio(orig);
        ip.completed.fetch_add(1, Ordering::Relaxed);
        // The last touch of `ip`.
        Interposer::put_inflight(ip);
    }
}

/// One attachment of an interposer to an original device.
struct Attachment {
    file: *mut bindings::file,
    bdev: *mut bindings::block_device,
    kind: Kind,
    md: *mut bindings::mapped_device,
    ip: Option<KBox<Interposer>>,
    path: KVec<u8>,
}

struct CtlInner {
    att: Option<Attachment>,
    monitor: Option<Monitor>,
    /// The next call of this primitive fails (`inject`, test builds only).
    inject: Option<Prim>,
    mutant: Mutant,
    proc: Proc,
    /// A primitive of the running procedure failed.
    failed: bool,
    /// The `before` mutant's moved primitive was done early.
    moved_done: bool,
    violations: u64,
    last_violation: KVec<u8>,
    attaches: u64,
    detaches: u64,
    redirected: u64,
    completed: u64,
    last_map: KVec<u64>,
    stall: Stall,
}

/// The I/O stall attach and detach cause: from the first freeze or suspend of O to the
/// release of the last one, while new bios to O wait.
struct Stall {
    start: i64,
    depth: u32,
    in_detach: bool,
    attach_ns: KVec<u64>,
    detach_ns: KVec<u64>,
}

impl Stall {
    fn begin(&mut self) {
        if self.depth == 0 {
            // SAFETY: ktime_get() may be called from any context.
            self.start = unsafe { bindings::ktime_get() };
        }
        self.depth += 1;
    }

    fn end(&mut self) {
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

// SAFETY: the raw pointers in an Attachment are only used under the controller's mutex,
// from process context; the objects they point to are not tied to a thread.
unsafe impl Send for CtlInner {}

fn prim_by_name(name: &[u8]) -> Option<Prim> {
    Prim::ALL.iter().copied().find(|p| p.name().as_bytes() == name)
}

impl CtlInner {
    fn report(&mut self, ev: Event) {
        let Some(m) = self.monitor.as_mut() else { return };
        if let Err(v) = m.step(ev) {
            self.violations += 1;
            pr_err!("quiesce: MONITOR VIOLATION: {:?} is illegal in state \"{}\"; refused\n", v.event, v.state);
            self.last_violation = KVec::new();
            let mut w = Buf(&mut self.last_violation);
            let _ = write!(w, "{:?} in \"{}\"", v.event, v.state);
        }
    }

    fn att(&mut self) -> &mut Attachment {
        self.att.as_mut().expect("primitives run only while an attachment exists")
    }

    fn queue(&mut self) -> *mut bindings::request_queue {
        // SAFETY: the attachment holds the original open.
        unsafe { (*self.att().bdev).bd_queue }
    }

    fn done(&mut self, p: Prim, r: Result<(), Errno>) -> Result<(), Errno> {
        self.report(if r.is_ok() { Event::Ok(p) } else { Event::Err(p) });
        r
    }
}

struct Buf<'a>(&'a mut KVec<u8>);

impl Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes(), GFP_KERNEL).map_err(|_| core::fmt::Error)
    }
}

impl CtlInner {
    fn attach(&mut self, path: &[u8]) -> Result<(), i32> {
        if let Some(a) = &self.att {
            pr_info!("quiesce: attach: already attached to {}\n", BStrDisplay(&a.path));
            return Err(-(bindings::EBUSY as i32));
        }
        let mut cpath = KVec::new();
        cpath.extend_from_slice(path, GFP_KERNEL).map_err(|_| -(bindings::ENOMEM as i32))?;
        cpath.push(0, GFP_KERNEL).map_err(|_| -(bindings::ENOMEM as i32))?;
        let mut dev: bindings::dev_t = 0;
        // SAFETY: `cpath` is NUL-terminated; `dev` is a valid out-parameter.
        let r = unsafe { bindings::lookup_bdev(cpath.as_ptr().cast::<CChar>(), &mut dev) };
        if r != 0 {
            pr_info!("quiesce: attach: {}: not a block device ({})\n", BStrDisplay(path), r);
            return Err(r);
        }
        // SAFETY: opening a block device by number, without a holder.
        let file = unsafe { bindings::bdev_file_open_by_dev(dev, BLK_OPEN_READ | BLK_OPEN_WRITE, ptr::null_mut(), ptr::null()) };
        if is_err(file) {
            pr_info!("quiesce: attach: {}: cannot open ({})\n", BStrDisplay(path), file as isize);
            return Err(file as isize as i32);
        }
        // SAFETY: `file` is an open block device file.
        let bdev = unsafe { bindings::file_bdev(file) };
        // SAFETY: an open block device has a live queue.
        let bio_based = unsafe { (*(*bdev).bd_queue).mq_ops.is_null() };
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
                // md, drbd, bcache, nvme multipath, bio-based null_blk: bios may outlive
                // ->submit_bio, and there is no suspend that waits for them.
                pr_info!(
                    "quiesce: attach: {}: a bio-based device that is neither device-mapper nor brd: \
                     its bios may outlive ->submit_bio and nothing drains them; refused\n",
                    BStrDisplay(path)
                );
                // SAFETY: the file bdev_file_open_by_dev() opened above.
                unsafe { bindings::fput(file) };
                return Err(-(bindings::EOPNOTSUPP as i32));
            }
        };
        let mut name = KVec::new();
        let _ = name.extend_from_slice(path, GFP_KERNEL);
        self.att = Some(Attachment { file, bdev, kind, md, ip: None, path: name });
        self.monitor = Some(Monitor::new(kind));
        self.begin(Proc::Attach);
        let r = protocol::attach(self, kind);
        self.proc = Proc::Idle;
        self.report(Event::AttachReturned(r.is_ok()));
        match r {
            Ok(()) => {
                self.attaches += 1;
                pr_info!(
                    "quiesce: attached to {} ({})\n",
                    BStrDisplay(path),
                    kind_text(kind)
                );
                Ok(())
            }
            Err(e) => {
                self.release();
                pr_info!("quiesce: attach to {} failed: {}\n", BStrDisplay(path), e.to_kernel());
                Err(e.to_kernel())
            }
        }
    }

    fn detach(&mut self) -> Result<(), i32> {
        let Some(kind) = self.att.as_ref().map(|a| a.kind) else {
            pr_info!("quiesce: detach: not attached\n");
            return Err(-(bindings::EINVAL as i32));
        };
        self.report(Event::DetachBegin);
        self.stall.in_detach = true;
        self.begin(Proc::Detach);
        let r = protocol::detach(self, kind);
        self.proc = Proc::Idle;
        self.stall.in_detach = false;
        self.report(Event::DetachReturned(r.is_ok()));
        match r {
            Ok(()) => {
                self.detaches += 1;
                self.release();
                pr_info!("quiesce: detached\n");
                Ok(())
            }
            Err(e) => Err(e.to_kernel()),
        }
    }

    /// Drop the attachment's hold on the original.
    fn release(&mut self) {
        if let Some(a) = self.att.take() {
            if !a.md.is_null() {
                // SAFETY: the reference dm_get_md() took.
                unsafe { bindings::dm_put(a.md) };
            }
            // SAFETY: the file bdev_file_open_by_dev() opened.
            unsafe { bindings::fput(a.file) };
            if a.ip.is_some() {
                pr_err!("quiesce: ASSERT: the interposer outlived its attachment (filter_free(I) missing)\n");
            }
        }
    }

    fn status(&self, out: &mut KVec<u8>) {
        let mut w = Buf(out);
        let (red, comp, infl, map): (u64, u64, usize, KVec<u64>) = match self.att.as_ref().and_then(|a| a.ip.as_ref()) {
            Some(ip) => {
                let mut m = KVec::new();
                for x in ip.map.iter() {
                    let _ = m.push(x.load(Ordering::Relaxed), GFP_KERNEL);
                }
                (
                    self.redirected + ip.redirected.load(Ordering::Relaxed),
                    self.completed + ip.completed.load(Ordering::Relaxed),
                    ip.inflight.load(Ordering::Relaxed),
                    m,
                )
            }
            None => {
                let mut m = KVec::new();
                let _ = m.extend_from_slice(&self.last_map, GFP_KERNEL);
                (self.redirected, self.completed, 0, m)
            }
        };
        let _ = match &self.att {
            Some(a) => writeln!(
                w,
                "state: attached\ndevice: {}\nkind: {} ({})",
                BStrDisplay(&a.path),
                kind_name(a.kind),
                kind_text(a.kind)
            ),
            None => writeln!(w, "state: detached"),
        };
        let _ = writeln!(w, "attaches: {}\ndetaches: {}\nredirected: {red}\ncompleted: {comp}\ninflight: {infl}", self.attaches, self.detaches);
        let _ = writeln!(w, "monitor: {}", self.monitor.as_ref().map_or("idle", |m| m.state()));
        let _ = writeln!(w, "violations: {}", self.violations);
        if self.violations > 0 {
            let _ = writeln!(w, "last_violation: {}", BStrDisplay(&self.last_violation));
        }
        let _ = writeln!(w, "inject: {}", self.inject.map_or("none", |p| p.call()));
        let _ = writeln!(w, "mutant: {}", if MUTANT.is_empty() { "none" } else { MUTANT });
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
        let count: u32 = map.iter().map(|x| x.count_ones()).sum();
        let _ = writeln!(w, "changed_blocks: {count}");
        let _ = write!(w, "changed:");
        let total = map.len() as u64 * 64;
        let bit = |b: u64| map[(b / 64) as usize] & (1 << (b % 64)) != 0;
        let mut b = 0;
        let mut first = true;
        while b < total {
            if bit(b) {
                let start = b;
                while b + 1 < total && bit(b + 1) {
                    b += 1;
                }
                let _ = if start == b { write!(w, "{}{start}", if first { " " } else { "," }) } else { write!(w, "{}{start}-{b}", if first { " " } else { "," }) };
                first = false;
            }
            b += 1;
        }
        let _ = writeln!(w);
    }

    fn command(&mut self, line: &[u8]) -> Result<(), i32> {
        let line = trim(line);
        let (cmd, arg) = match line.iter().position(|&c| c == b' ') {
            Some(i) => (&line[..i], trim(&line[i + 1..])),
            None => (line, &line[line.len()..]),
        };
        match cmd {
            b"attach" if !arg.is_empty() => self.attach(arg),
            b"detach" if arg.is_empty() => self.detach(),
            b"reset-stats" if arg.is_empty() => {
                self.stall.attach_ns = KVec::new();
                self.stall.detach_ns = KVec::new();
                Ok(())
            }
            b"inject" if !TEST_BUILD => {
                pr_info!("quiesce: inject: failure injection is built only into the test build\n");
                Err(-(bindings::EOPNOTSUPP as i32))
            }
            b"inject" => match prim_by_name(arg) {
                Some(p) if p.injected().is_none() => {
                    pr_info!("quiesce: inject: the spec injects no failure into {}\n", p.call());
                    Err(-(bindings::EINVAL as i32))
                }
                Some(p) if self.att.is_none() => {
                    self.inject = Some(p);
                    Ok(())
                }
                Some(_) => Err(-(bindings::EBUSY as i32)),
                None => {
                    pr_info!("quiesce: inject: unknown primitive {}\n", BStrDisplay(arg));
                    Err(-(bindings::EINVAL as i32))
                }
            },
            _ => {
                pr_info!("quiesce: unknown command \"{}\"; use attach <path>, detach, inject <primitive>\n", BStrDisplay(line));
                Err(-(bindings::EINVAL as i32))
            }
        }
    }
}

/// The spec's name for a kind of original.
fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Request => "request",
        Kind::Bio => "bio",
        Kind::BioSync => "bio_sync",
    }
}

/// What a kind of original is, for people.
fn kind_text(k: Kind) -> &'static str {
    match k {
        Kind::Request => "blk-mq",
        Kind::Bio => "bio-based, device-mapper",
        Kind::BioSync => "bio-based, completes inside ->submit_bio",
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let a = s.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(s.len());
    let b = s.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(a, |i| i + 1);
    &s[a..b]
}

struct BStrDisplay<'a>(&'a [u8]);

impl core::fmt::Display for BStrDisplay<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &c in self.0 {
            f.write_char(if c.is_ascii_graphic() || c == b' ' { c as char } else { '?' })?;
        }
        Ok(())
    }
}

static CTL: AtomicPtr<Mutex<CtlInner>> = AtomicPtr::new(ptr::null_mut());

fn with_ctl<R>(f: impl FnOnce(&mut CtlInner) -> R) -> Option<R> {
    let p = CTL.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: CTL points to the module's controller from init until the misc device is
    // deregistered in drop, which waits for every file operation to return.
    let m = unsafe { &*p };
    let mut g = m.lock();
    Some(f(&mut g))
}

/// `write(2)` on /dev/quiesce: one command.
///
/// # Safety
/// Called by the VFS with a user buffer of `count` bytes.
unsafe extern "C" fn ctl_write(_f: *mut bindings::file, buf: *const CChar, count: usize, _pos: *mut bindings::loff_t) -> isize {
    if count > 4096 {
        return -(bindings::EINVAL as isize);
    }
    let mut v = KVec::new();
    let reader = kernel::uaccess::UserSlice::new(buf as usize, count).reader();
    if reader.read_all(&mut v, GFP_KERNEL).is_err() {
        return -(bindings::EFAULT as isize);
    }
    match with_ctl(|c| c.command(&v)) {
        Some(Ok(())) => count as isize,
        Some(Err(e)) => e as isize,
        None => -(bindings::ENODEV as isize),
    }
}

/// `read(2)` on /dev/quiesce: the state, counters and changed-block map.
///
/// # Safety
/// Called by the VFS with a user buffer of `count` bytes and a file position.
unsafe extern "C" fn ctl_read(_f: *mut bindings::file, buf: *mut CChar, count: usize, pos: *mut bindings::loff_t) -> isize {
    let mut out = KVec::new();
    if with_ctl(|c| c.status(&mut out)).is_none() {
        return -(bindings::ENODEV as isize);
    }
    // SAFETY: `buf` and `pos` come from the VFS; `out` is a valid buffer.
    unsafe { bindings::simple_read_from_buffer(buf.cast::<c_void>(), count, pos, out.as_ptr().cast::<c_void>(), out.len()) }
}

struct QuiesceModule {
    misc: KBox<Opaque<bindings::miscdevice>>,
    _fops: KBox<bindings::file_operations>,
    ctl: Pin<KBox<Mutex<CtlInner>>>,
}

// SAFETY: the misc device and file operations are only touched at init and exit; the
// controller is behind a mutex.
unsafe impl Sync for QuiesceModule {}
// SAFETY: as above.
unsafe impl Send for QuiesceModule {}

impl kernel::Module for QuiesceModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let mutant = Mutant::parse(MUTANT).map_err(|m| {
            pr_err!("quiesce: unknown mutant \"{}\" (built with QUIESCE_MUTANT)\n", m);
            EINVAL
        })?;
        let ctl = KBox::pin_init(
            new_mutex!(CtlInner {
                att: None,
                monitor: None,
                inject: None,
                mutant,
                proc: Proc::Idle,
                failed: false,
                moved_done: false,
                violations: 0,
                last_violation: KVec::new(),
                attaches: 0,
                detaches: 0,
                redirected: 0,
                completed: 0,
                last_map: KVec::new(),
                stall: Stall { start: 0, depth: 0, in_detach: false, attach_ns: KVec::new(), detach_ns: KVec::new() },
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: an all-zero file_operations has every operation unset.
        let mut fops: bindings::file_operations = unsafe { core::mem::zeroed() };
        fops.owner = module.as_ptr();
        fops.write = Some(ctl_write);
        fops.read = Some(ctl_read);
        let fops = KBox::new(fops, GFP_KERNEL)?;
        // SAFETY: an all-zero miscdevice is unregistered.
        let mut md: bindings::miscdevice = unsafe { core::mem::zeroed() };
        md.minor = bindings::MISC_DYNAMIC_MINOR as i32;
        md.name = c_str!("quiesce").as_char_ptr();
        md.fops = &*fops;
        md.mode = 0o600;
        let misc = KBox::new(Opaque::new(md), GFP_KERNEL)?;
        CTL.store(ptr::from_ref(&*ctl).cast_mut(), Ordering::Release);
        // SAFETY: `misc` and `fops` are boxed and live until drop deregisters the device.
        let r = unsafe { bindings::misc_register(misc.get()) };
        if r != 0 {
            CTL.store(ptr::null_mut(), Ordering::Release);
            return Err(Error::from_errno(r));
        }
        if !MUTANT.is_empty() {
            pr_warn!("quiesce: built as mutant {}: a test build that breaks the checked protocol\n", MUTANT);
        }
        pr_info!(
            "quiesce: loaded; protocol {} (sha256 {}), checked by {}\n",
            protocol::SPEC_NAME,
            protocol::SPEC_SHA256,
            protocol::CHECKER
        );
        Ok(QuiesceModule { misc, _fops: fops, ctl })
    }
}

impl Drop for QuiesceModule {
    fn drop(&mut self) {
        // SAFETY: registered in init; this waits for no new opens (the module is going).
        unsafe { bindings::misc_deregister(self.misc.get()) };
        let mut g = self.ctl.lock();
        if g.att.is_some() {
            // An attachment holds a module reference (try_module_get(I->owner)): the
            // module cannot be unloaded while attached unless that reference is missing.
            pr_err!("quiesce: ASSERT: unloading while attached (a module reference is missing): detaching\n");
            if g.detach().is_err() {
                pr_err!("quiesce: detach on unload failed\n");
            }
        }
        drop(g);
        CTL.store(ptr::null_mut(), Ordering::Release);
        pr_info!("quiesce: unloaded\n");
    }
}
