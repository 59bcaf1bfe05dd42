// SPDX-License-Identifier: GPL-2.0

//! Removal: the interposer's `->remove`, which `del_gendisk(O)` calls with O's
//! `open_mutex` held and O already dead, when O still has this interposer. It
//! runs the generated, checked `on_remove` (the spec's removal callback).
//!
//! Ownership passes here. Each attachment owns its interposer through an
//! [`IpSlot`], a small allocation of its own that the interposer points back
//! to: the callback, handed the interposer, takes it out of the slot and owns
//! it from then on, whichever controller attached it, while that controller
//! may be blocked on the same `open_mutex` in its own detach. The controller's
//! later detach finds O dead (`bdev_check_alive(O)` = `-ENODEV`) and an empty
//! slot: it touches nothing the callback freed, and ends the attachment.
//!
//! The slot is taken and refilled under the registry's lock, which the status
//! and the changed-block ioctl hold while they read the interposer, so neither
//! reads an interposer being freed. Lock order: `open_mutex`, then the
//! registry's lock; nothing takes them the other way round.

use super::*;
use crate::ctl::with_reg;
use crate::prims::{Mutant, Proc};
use protocol::RemovePrimitives;

/// Who owns an attachment's interposer: its controller, until a removal
/// callback takes it over.
pub(crate) struct IpSlot {
    /// The interposer (a `KBox` turned raw), or null.
    ip: AtomicPtr<Interposer>,
    /// A removal callback took the interposer over.
    removed: AtomicBool,
}

impl IpSlot {
    /// A new, empty slot, handed out as a raw pointer: the controller's `&mut`
    /// of its attachment must not cover what the callback touches.
    pub(crate) fn alloc() -> Result<*const IpSlot, i32> {
        let slot = IpSlot { ip: AtomicPtr::new(ptr::null_mut()), removed: AtomicBool::new(false) };
        KBox::new(slot, GFP_KERNEL)
            .map(|b| KBox::into_raw(b).cast_const())
            .map_err(|_| ctl::errno(bindings::ENOMEM))
    }

    /// Free an empty slot; a slot that still holds an interposer is kept, with a
    /// word (the interposer may still be published).
    ///
    /// # Safety
    /// `slot` came from [`IpSlot::alloc`], is not freed yet, and nothing uses it
    /// after this call.
    pub(crate) unsafe fn free(slot: *const IpSlot) {
        // SAFETY: the caller's guarantee.
        if !unsafe { (*slot).ip.load(Ordering::Acquire) }.is_null() {
            pr_err!("quiesce: ASSERT: an attachment ended owning its interposer (filter_free(I) missing); leaked\n");
            return;
        }
        // SAFETY: from KBox::into_raw() in alloc(), freed once.
        drop(unsafe { KBox::from_raw(slot.cast_mut()) });
    }

    /// The interposer, if the slot holds one.
    ///
    /// # Safety
    /// The caller holds the registry's lock (status, changed-block ioctl), or runs a
    /// step of a generated procedure that the checked spec puts under O's
    /// `open_mutex`. The interposer is freed only by whoever took it out: a
    /// procedure's `filter_free` (under open_mutex, taking it under the registry's
    /// lock) or the removal callback (under open_mutex, likewise), so neither kind
    /// of caller sees it freed while it holds the reference.
    pub(crate) unsafe fn get(&self) -> Option<&Interposer> {
        let p = self.ip.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from KBox::into_raw() in put() and is freed
        // only after take(); the caller's lock excludes that (see above).
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Whether the slot holds an interposer.
    pub(crate) fn occupied(&self) -> bool {
        !self.ip.load(Ordering::Acquire).is_null()
    }

    /// Hand the slot a newly allocated interposer.
    pub(crate) fn put(&self, ip: KBox<Interposer>) {
        let old = self.ip.swap(KBox::into_raw(ip), Ordering::AcqRel);
        if !old.is_null() {
            pr_err!("quiesce: ASSERT: filter_alloc(I) over a live interposer; the old one leaked\n");
        }
    }

    /// Take the interposer out: the caller owns it from now on.
    pub(crate) fn take(&self) -> Option<KBox<Interposer>> {
        let swap = || self.ip.swap(ptr::null_mut(), Ordering::AcqRel);
        // Under the registry's lock: no reader holds the interposer once we have it.
        // Without a registry (the module's last detach_all() has run), no reader exists.
        let p = with_reg(|_| swap()).unwrap_or_else(swap);
        // SAFETY: a non-null pointer came from KBox::into_raw() in put(); the swap
        // gave it to this caller alone.
        (!p.is_null()).then(|| unsafe { KBox::from_raw(p) })
    }

    /// Whether a removal callback took the interposer over.
    pub(crate) fn removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
}

/// The removal callback's side of the checked `on_remove`: the interposer it
/// took over and the original that goes away.
struct Remover {
    bdev: *mut bindings::block_device,
    ip: Option<KBox<Interposer>>,
    mutant: Mutant,
    /// Queue freezes taken and not dropped.
    frozen: i32,
}

impl Remover {
    /// The `skip:remove:PRIM` mutant (test builds only) leaves `p` out.
    fn skip(&self, p: Prim) -> bool {
        let skip = TEST_BUILD && matches!(self.mutant, Mutant::Skip(Proc::Remove, q) if q == p);
        if skip {
            pr_warn!("quiesce: mutant: {} left out of on_remove\n", p.call());
        }
        skip
    }

    /// The `blk_interposer_prim` trace event of `p` with `ret`: 1 as a
    /// primitive that waits is called, 0 as it returns, and as one that gives
    /// something back is about to.
    fn trace(&self, p: Prim, ret: i32) {
        let mut name = [0u8; 48];
        let call = p.call().as_bytes();
        let n = call.len().min(name.len() - 1);
        name[..n].copy_from_slice(&call[..n]);
        trace_remove(self.bdev, &name, ret);
    }

    fn queue(&self) -> *mut bindings::request_queue {
        // SAFETY: del_gendisk() runs the callback on a device whose queue lives on.
        unsafe { (*self.bdev).bd_queue }
    }

    /// The callback returns: it must leave O unfrozen and own nothing.
    fn end(mut self) {
        if self.frozen != 0 {
            pr_err!("quiesce: ASSERT: on_remove returned with O frozen {} more times than unfrozen\n", self.frozen);
        }
        if let Some(ip) = self.ip.take() {
            pr_err!("quiesce: ASSERT: on_remove returned owning its interposer (filter_free(I) missing); leaked\n");
            // Maybe still published: leaked, never freed under a bio.
            let _ = KBox::into_raw(ip);
        }
    }
}

impl RemovePrimitives for Remover {
    fn blk_mq_freeze_queue(&mut self) {
        if self.skip(Prim::BlkMqFreezeQueue) {
            return;
        }
        // SAFETY: the queue lives on (see queue()); freezes nest with del_gendisk's drain.
        unsafe { bindings::blk_mq_freeze_queue(self.queue()) };
        self.frozen += 1;
    }
    fn blk_mq_unfreeze_queue(&mut self) {
        if self.skip(Prim::BlkMqUnfreezeQueue) {
            return;
        }
        // SAFETY: as above; an unbalanced unfreeze is reported by the block layer.
        unsafe { bindings::blk_mq_unfreeze_queue(self.queue()) };
        self.frozen -= 1;
    }
    fn clear_interposer(&mut self) {
        if self.skip(Prim::ClearInterposer) {
            return;
        }
        // SAFETY: del_gendisk() hands over a live block_device, with open_mutex held.
        unsafe { bindings::blk_interposer_clear(self.bdev) };
    }
    fn filter_block(&mut self) {
        if self.skip(Prim::FilterBlock) {
            return;
        }
        self.trace(Prim::FilterBlock, 1);
        if let Some(ip) = self.ip.as_ref() {
            ip.block();
            ip.wait_drained();
        }
        self.trace(Prim::FilterBlock, 0);
    }
    fn filter_free(&mut self) {
        if self.skip(Prim::FilterFree) {
            return;
        }
        self.trace(Prim::FilterFree, 0);
        if let Some(ip) = self.ip.take() {
            let (r, c, f) = (
                ip.redirected.load(Ordering::Relaxed),
                ip.completed.load(Ordering::Relaxed),
                ip.flushes.load(Ordering::Relaxed),
            );
            let map = ip.retire();
            with_reg(|reg| reg.absorb_removed(r, c, f, map));
        }
    }
    fn module_put(&mut self) {
        if self.skip(Prim::ModulePut) {
            return;
        }
        // The attachment's reference passes to the callback and is dropped here. The
        // module cannot go before the callback returns: unloading detaches the
        // attachments left in the registry, and that detach waits for open_mutex,
        // which del_gendisk() holds until after this callback returns.
        self.trace(Prim::ModulePut, 0);
        // SAFETY: drops the reference try_module_get() took at attach.
        unsafe { bindings::module_put(THIS_MODULE.as_ptr()) };
    }
}

/// The `blk_interposer_prim` trace event of the removal on `bdev`; `name` ends
/// with a NUL.
fn trace_remove(bdev: *mut bindings::block_device, name: &[u8], ret: i32) {
    if name.last() != Some(&0) {
        return;
    }
    // SAFETY: del_gendisk() runs the callback on a live block_device; `name` is
    // NUL-terminated (checked above) and lives through the call, whose trace
    // event copies it.
    unsafe { bindings::blk_interposer_trace_prim(bdev, name.as_ptr().cast(), ret) };
}

/// `->remove` of the block layer's interposer.
///
/// # Safety
/// Called by del_gendisk() with a live interposer's `hook`, published on `bdev`,
/// with the disk's open_mutex held and the disk marked dead.
pub(crate) unsafe extern "C" fn ip_remove(hook: *mut bindings::blk_interposer, bdev: *mut bindings::block_device) {
    // SAFETY: `hook` is the first field of a `#[repr(C)]` Interposer that is published,
    // so allocated; its slot belongs to its attachment, which outlives it.
    let slot = unsafe { &*(*hook.cast::<Interposer>()).slot };
    if slot.ip.load(Ordering::Acquire) != hook.cast::<Interposer>() {
        pr_err!("quiesce: ASSERT: removal of an interposer its attachment does not own; left alone\n");
        return;
    }
    let Some(ip) = slot.take() else {
        pr_err!("quiesce: ASSERT: removal of an interposer its attachment no longer owns\n");
        return;
    };
    slot.removed.store(true, Ordering::Release);
    pr_info!("quiesce: the original went away while attached: its removal callback detaches the interposer\n");
    let mutant = with_reg(|r| r.mutant).unwrap_or(Mutant::None);
    let mut r = Remover { bdev, ip: Some(ip), mutant, frozen: 0 };
    // Called, and (after its last step) returning: for `quiesce replay`.
    trace_remove(bdev, b"remove\0", 1);
    protocol::on_remove(&mut r);
    r.end();
    trace_remove(bdev, b"remove\0", 0);
}

/// `hold` (test builds only): 1 armed, 2 an attach waits at its `mutex_lock`, 3 released.
static HOLD: AtomicU8 = AtomicU8::new(0);

fn hold_var() -> *const c_void {
    ptr::from_ref(&HOLD).cast()
}

fn set_hold(v: u8) {
    HOLD.store(v, Ordering::SeqCst);
    // SAFETY: wake_up_var() only hashes the address.
    unsafe { bindings::wake_up_var(hold_var().cast_mut()) };
}

/// An attach about to take `open_mutex`: if `hold` is armed, wait there until `release`.
pub(crate) fn hold_point() {
    if HOLD.compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return;
    }
    set_hold(2);
    pr_info!("quiesce: hold: attach waits before mutex_lock(open_mutex)\n");
    wait_var_until(hold_var(), || HOLD.load(Ordering::SeqCst) == 3);
    set_hold(0);
}

/// `hold`, `wait-held`, `release`: the boot test's rendezvous with an attach.
pub(crate) fn hold_command(cmd: &[u8]) -> Result<(), i32> {
    match cmd {
        b"hold" => HOLD
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| ())
            .map_err(|_| ctl::errno(bindings::EBUSY)),
        b"wait-held" => {
            wait_var_until(hold_var(), || HOLD.load(Ordering::SeqCst) == 2);
            Ok(())
        }
        _ => {
            if HOLD.load(Ordering::SeqCst) != 2 {
                return Err(ctl::errno(bindings::EINVAL));
            }
            set_hold(3);
            Ok(())
        }
    }
}
