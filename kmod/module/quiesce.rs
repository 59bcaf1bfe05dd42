// SPDX-License-Identifier: GPL-2.0

//! quiesce: a block device interposer that runs the model-checked protocol.
//!
//! Attach, detach, their unwinding and the runtime monitor are the generated,
//! checked code of `generated/src/protocol.rs`, included below unchanged. This
//! module implements its `Primitives` over the kernel API, feeds the monitor
//! every event it performs, and provides the interposer's payload: every bio
//! sent to the original is passed through to it as a marked clone, and the
//! 4 KiB blocks written while attached are recorded in a changed-block map
//! (`cbt.rs`: generations, read-and-reset, the `QUIESCE_IOC_CBT` ioctl).
//!
//! Control: write `attach <path>` or `detach` to `/dev/quiesce` (and, in the
//! boot test's build, `inject <primitive>`); read it for the state, counters
//! and changed blocks as text; `ioctl(QUIESCE_IOC_CBT)` for the binary map.

use core::ffi::c_void;

/// The kernel's `char` (built with -funsigned-char).
type CChar = u8;
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
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

mod cbt;
mod ctl;
mod prims;
mod remove;
use ctl::{prim_by_name, Registry};
use prims::{mutant_cbt_mark_at_submit, mutant_polled_clone, mutant_unmarked_clone, Proc, TEST_BUILD};

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
const BLK_STS_RESOURCE: bindings::blk_status_t = 9;
const BLK_STS_IOERR: bindings::blk_status_t = 10;
/// `BLK_FEAT_ZONED` (a `__force` cast that bindgen leaves out).
const BLK_FEAT_ZONED: bindings::blk_features_t = 1 << 10;
const REQ_OP_MASK: u32 = (1 << bindings::REQ_OP_BITS) - 1;
/// `REQ_POLLED`: the submitter polls for this bio's completion (io_uring IOPOLL).
const REQ_POLLED: u32 = 1 << bindings::req_flag_bits___REQ_POLLED;
/// `REQ_PREFLUSH` and `REQ_FUA`: the submitter asks for durability.
const REQ_PREFLUSH: u32 = 1 << bindings::req_flag_bits___REQ_PREFLUSH;
const REQ_FUA: u32 = 1 << bindings::req_flag_bits___REQ_FUA;
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
    /// The slot of the attachment that owns this interposer, until a removal
    /// callback takes it over (`remove.rs`); it outlives the interposer.
    slot: *const remove::IpSlot,
    /// Clones sent to the original and not yet completed.
    inflight: AtomicUsize,
    /// Set by `filter_block(I)`: bios handed to the filter are deferred.
    blocked: AtomicBool,
    /// Set once `cmpxchg_interposer(O, I)` published it: bios may reach it.
    published: AtomicBool,
    /// Bios that arrived while blocked (a stack linked through `bi_next`).
    deferred: AtomicPtr<bindings::bio>,
    redirected: AtomicU64,
    completed: AtomicU64,
    /// Bios with REQ_PREFLUSH or REQ_FUA handed to the interposer: a flush sent to
    /// the original must reach it, whether or not the original has a write cache.
    flushes: AtomicU64,
    /// The changed-block map: bit b of word w is block 64w+b of the original,
    /// counted from the original's first sector (a partition's, not its disk's).
    map: KVVec<AtomicU64>,
    /// 4 KiB blocks the map covers (the last one may be partial).
    nr_blocks: u64,
    /// The original's first sector on its disk: the hook sees remapped sectors.
    start_sect: u64,
    /// This attachment's tracking session (unique while the module is loaded).
    session: u64,
    /// The generation the map's bits belong to; a read-and-reset starts the next.
    generation: AtomicU64,
}

/// `wait_var_event(var, cond())`: wait, uninterruptibly, until `cond` holds; the
/// side that makes it hold calls `wake_up_var(var)`.
fn wait_var_until(var: *const c_void, cond: impl Fn() -> bool) {
    let var = var.cast_mut();
    // SAFETY: __var_waitqueue() only hashes the address.
    let wq = unsafe { bindings::__var_waitqueue(var) };
    // SAFETY: an all-zero entry is initialised by init_wait_var_entry() below.
    let mut entry: bindings::wait_bit_queue_entry = unsafe { core::mem::zeroed() };
    // SAFETY: `entry` lives on this stack frame until finish_wait() removes it.
    unsafe { bindings::init_wait_var_entry(&mut entry, var, 0) };
    loop {
        // SAFETY: `wq` and `entry` are valid; this is wait_var_event()'s loop.
        unsafe { bindings::prepare_to_wait_event(wq, &mut entry.wq_entry, bindings::TASK_UNINTERRUPTIBLE as i32) };
        if cond() {
            break;
        }
        // SAFETY: process context, no spinlock held.
        unsafe { bindings::schedule() };
    }
    // SAFETY: `entry` was queued on `wq` by prepare_to_wait_event().
    unsafe { bindings::finish_wait(wq, &mut entry.wq_entry) };
}

/// The last tracking session handed out.
static SESSION: AtomicU64 = AtomicU64::new(0);

impl Interposer {
    /// `filter_alloc(I)` for original `bdev`, owned through `slot`: the filter, its
    /// bio_set and its map.
    fn new(bdev: *mut bindings::block_device, slot: *const remove::IpSlot) -> Result<KBox<Interposer>> {
        // SAFETY: the original is held open.
        let (sectors, start_sect) = unsafe { ((*bdev).bd_nr_sectors, (*bdev).bd_start_sect) };
        let nr_blocks = sectors.div_ceil(1 << SECTORS_PER_BLOCK_SHIFT);
        let words = (nr_blocks as usize).div_ceil(64);
        let mut map = KVVec::with_capacity(words, GFP_KERNEL)?;
        for _ in 0..words {
            map.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        let ip = KBox::new(
            Interposer {
                hook: Opaque::new(bindings::blk_interposer { submit_bio: Some(ip_submit), remove: Some(remove::ip_remove) }),
                // SAFETY: an all-zero bio_set is its state before bioset_init(), and
                // bioset_exit() of one is a no-op.
                bs: Opaque::new(unsafe { core::mem::zeroed() }),
                orig: bdev,
                slot,
                inflight: AtomicUsize::new(0),
                blocked: AtomicBool::new(false),
                published: AtomicBool::new(false),
                deferred: AtomicPtr::new(ptr::null_mut()),
                redirected: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                map,
                nr_blocks,
                start_sect,
                session: SESSION.fetch_add(1, Ordering::Relaxed) + 1,
                generation: AtomicU64::new(1),
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

    /// `filter_free(I)`: free the interposer; its map stays readable as the last
    /// map. The reservation makes the copy's pushes infallible, and without memory
    /// the map is dropped with a word, not in part.
    fn retire(self: KBox<Self>) -> Option<KVVec<u64>> {
        let n = self.inflight.load(Ordering::Acquire);
        if n != 0 {
            pr_err!("quiesce: ASSERT: filter_free(I) with {} clones in flight (filter_block(I) missing)\n", n);
        } else if !self.deferred.load(Ordering::Acquire).is_null() {
            pr_err!("quiesce: ASSERT: filter_free(I) with deferred bios (filter_unblock(I) missing)\n");
        } else if self.published.load(Ordering::Acquire) && !self.blocked.load(Ordering::Acquire) {
            // A filter that bios could reach is freed unblocked: a clone still on its
            // way (queued on a submitter's bio_list) would complete into freed memory.
            pr_err!("quiesce: ASSERT: filter_free(I) of a published filter that was never blocked (filter_block(I) missing)\n");
        }
        let last = match KVVec::with_capacity(self.map.len(), GFP_KERNEL) {
            Ok(mut map) => {
                for w in self.map.iter() {
                    let _ = map.push(w.load(Ordering::Acquire), GFP_KERNEL);
                }
                Some(map)
            }
            Err(_) => {
                pr_warn!("quiesce: no memory to keep the detached map; its text is empty\n");
                None
            }
        };
        drop(self);
        last
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
        let var = ptr::from_ref(&self.inflight).cast::<c_void>();
        wait_var_until(var, || self.inflight.load(Ordering::SeqCst) == 0);
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

    /// Record the blocks a write, discard or write-zeroes `bio` changes.
    ///
    /// Called when the write has completed (from `clone_endio`, before the
    /// submitter sees the completion), so a read-and-reset that takes a block's
    /// bit happens after the block's new data is on the original: a backup that
    /// copies the block after the read copies the new data, and a write still in
    /// flight at the read lands in the next generation. Marked at submission, the
    /// bit could be taken, the old data copied, and the change lost.
    ///
    /// # Safety
    /// `bio` is a valid bio whose `bi_iter` still describes the whole write.
    unsafe fn mark_written(&self, bio: *const bindings::bio) {
        // SAFETY: the caller's guarantee.
        let (opf, sector, size) = unsafe { ((*bio).bi_opf, (*bio).bi_iter.bi_sector, (*bio).bi_iter.bi_size) };
        let op = opf & REQ_OP_MASK;
        if op != bindings::req_op_REQ_OP_WRITE
            && op != bindings::req_op_REQ_OP_DISCARD
            && op != bindings::req_op_REQ_OP_WRITE_ZEROES
        {
            return;
        }
        // The hook runs after the partition remap: count from the original's start.
        let Some(sector) = sector.checked_sub(self.start_sect) else { return };
        let first = sector >> SECTORS_PER_BLOCK_SHIFT;
        let last = (sector + (u64::from(size) >> 9)).div_ceil(1 << SECTORS_PER_BLOCK_SHIFT);
        for b in first..last.min(self.nr_blocks) {
            if let Some(w) = self.map.get((b / 64) as usize) {
                w.fetch_or(1 << (b % 64), Ordering::Release);
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
        if mutant_cbt_mark_at_submit() {
            // SAFETY: `bio` is valid and not yet advanced.
            unsafe { self.mark_written(bio) };
        }
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
            if !mutant_polled_clone() {
                (*clone).bi_opf &= !REQ_POLLED;
            }
            if mutant_unmarked_clone() {
                (*clone).bi_flags &= !(1 << bindings::BIO_INTERPOSED);
            }
        }
        self.redirected.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `clone` is a valid bio we still own.
        if unsafe { (*clone).bi_opf } & (REQ_PREFLUSH | REQ_FUA) != 0 {
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
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
        // Recorded even when the write failed: part of it may have reached the device.
        if !mutant_cbt_mark_at_submit() {
            ip.mark_written(orig);
        }
        (*orig).bi_status = (*clone).bi_status;
        bindings::bio_put(clone);
        bindings::bio_endio(orig);
        ip.completed.fetch_add(1, Ordering::Relaxed);
        // The last touch of `ip`.
        Interposer::put_inflight(ip);
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
    match ctl::command(&v) {
        Ok(()) => count as isize,
        Err(e) => e as isize,
    }
}

/// `read(2)` on /dev/quiesce: the state, counters and changed-block map.
///
/// # Safety
/// Called by the VFS with a user buffer of `count` bytes and a file position.
unsafe extern "C" fn ctl_read(_f: *mut bindings::file, buf: *mut CChar, count: usize, pos: *mut bindings::loff_t) -> isize {
    let mut out = KVec::new();
    if ctl::with_reg(|r| r.status(&mut out)).is_none() {
        return -(bindings::ENODEV as isize);
    }
    // SAFETY: `buf` and `pos` come from the VFS; `out` is a valid buffer.
    unsafe { bindings::simple_read_from_buffer(buf.cast::<c_void>(), count, pos, out.as_ptr().cast::<c_void>(), out.len()) }
}

struct QuiesceModule {
    misc: KBox<Opaque<bindings::miscdevice>>,
    _fops: KBox<bindings::file_operations>,
    /// The registry `ctl::with_reg` reaches through its published pointer.
    _reg: Pin<KBox<Mutex<Registry>>>,
}

// SAFETY: the misc device and file operations are only touched at init and exit; the
// controller is behind a mutex.
unsafe impl Sync for QuiesceModule {}
// SAFETY: as above.
unsafe impl Send for QuiesceModule {}

impl kernel::Module for QuiesceModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let reg = KBox::pin_init(new_mutex!(Registry::new()), GFP_KERNEL)?;
        // SAFETY: an all-zero file_operations has every operation unset.
        let mut fops: bindings::file_operations = unsafe { core::mem::zeroed() };
        fops.owner = module.as_ptr();
        fops.write = Some(ctl_write);
        fops.read = Some(ctl_read);
        fops.unlocked_ioctl = Some(cbt::ctl_ioctl);
        let fops = KBox::new(fops, GFP_KERNEL)?;
        // SAFETY: an all-zero miscdevice is unregistered.
        let mut md: bindings::miscdevice = unsafe { core::mem::zeroed() };
        md.minor = bindings::MISC_DYNAMIC_MINOR as i32;
        md.name = c_str!("quiesce").as_char_ptr();
        md.fops = &*fops;
        md.mode = 0o600;
        let misc = KBox::new(Opaque::new(md), GFP_KERNEL)?;
        ctl::publish(ptr::from_ref(&*reg).cast_mut());
        // SAFETY: `misc` and `fops` are boxed and live until drop deregisters the device.
        let r = unsafe { bindings::misc_register(misc.get()) };
        if r != 0 {
            ctl::publish(ptr::null_mut());
            return Err(Error::from_errno(r));
        }
        pr_info!(
            "quiesce: loaded; protocol {} (sha256 {}), checked by {}\n",
            protocol::SPEC_NAME,
            protocol::SPEC_SHA256,
            protocol::CHECKER
        );
        Ok(QuiesceModule { misc, _fops: fops, _reg: reg })
    }
}

impl Drop for QuiesceModule {
    fn drop(&mut self) {
        // SAFETY: registered in init; this waits for no new opens (the module is going).
        unsafe { bindings::misc_deregister(self.misc.get()) };
        // An attachment holds a module reference (try_module_get(I->owner)): the module
        // cannot be unloaded while attached unless that reference is missing.
        let n = ctl::detach_all();
        if n > 0 {
            pr_err!("quiesce: ASSERT: unloaded while {} attached (a module reference is missing); detached\n", n);
        }
        ctl::publish(ptr::null_mut());
        pr_info!("quiesce: unloaded\n");
    }
}
