// SPDX-License-Identifier: GPL-2.0

//! The changed-block map's binary interface: `ioctl(fd, QUIESCE_IOC_CBT, &req)`
//! on /dev/quiesce reads (and, with `QUIESCE_CBT_RESET`, takes) the map of one
//! attached original. The layout and the guarantees are in docs/cbt.md; the
//! user-space reader is the `quiesce-cbt` tool (cbt/ in the repository).
//!
//! Each map word is read with an atomic swap (reset) or load, so a bit set by
//! a completing write is in exactly one read-and-reset: the one before which
//! it was set. A read that cannot be handed over (a bad buffer) puts the bits
//! it took back, so nothing is lost and the generation stays.

use super::ctl::errno;
use super::*;
use kernel::types::{AsBytes, FromBytes};

/// `struct quiesce_cbt` of docs/cbt.md: 72 bytes, every field naturally aligned.
#[repr(C)]
#[derive(Clone, Copy)]
struct Req {
    /// In: `sizeof(struct quiesce_cbt)`, 72.
    size: u32,
    /// In: `QUIESCE_CBT_RESET` or 0.
    flags: u32,
    /// In: the original's device number.
    major: u32,
    minor: u32,
    /// Out: the attachment's tracking session.
    session: u64,
    /// Out: the generation the returned bits belong to.
    generation: u64,
    /// Out: bytes per map bit (4096).
    block_size: u32,
    /// In: 0.
    reserved: u32,
    /// Out: blocks of the original (bits that mean something).
    nr_blocks: u64,
    /// Out: bits set in the returned map.
    nr_changed: u64,
    /// In: user address of `map_words` 64-bit little-endian words.
    map: u64,
    /// In: room at `map`, in words; at least `ceil(nr_blocks / 64)`.
    map_words: u64,
}

// SAFETY: `Req` is integers only, with no padding (72 bytes, each field at its
// natural alignment): every bit pattern is a valid value.
unsafe impl FromBytes for Req {}
// SAFETY: as above: no padding, so every byte is initialised.
unsafe impl AsBytes for Req {}

const REQ_SIZE: usize = core::mem::size_of::<Req>();
const _: () = assert!(REQ_SIZE == 72);
/// `_IOWR('Q', 1, struct quiesce_cbt)`.
pub(crate) const QUIESCE_IOC_CBT: u32 = (3 << 30) | ((REQ_SIZE as u32) << 16) | ((b'Q' as u32) << 8) | 1;
/// Take the bits and start the next generation.
const QUIESCE_CBT_RESET: u32 = 1;
const BLOCK_SIZE: u32 = 1 << (SECTORS_PER_BLOCK_SHIFT + 9);

impl Interposer {
    /// The map's words, little-endian, taken (`reset`) or copied; `None` if out of memory.
    fn snapshot(&self, reset: bool) -> Option<(KVVec<u8>, u64)> {
        let mut out = KVVec::with_capacity(self.map.len() * 8, GFP_KERNEL).ok()?;
        let mut changed = 0u64;
        for w in self.map.iter() {
            let v = if reset { w.swap(0, Ordering::AcqRel) } else { w.load(Ordering::Acquire) };
            changed += u64::from(v.count_ones());
            // Cannot fail: the capacity is reserved above.
            let _ = out.extend_from_slice(&v.to_le_bytes(), GFP_KERNEL);
        }
        Some((out, changed))
    }

    /// Put back bits a failed read-and-reset took.
    fn restore(&self, taken: &[u8]) {
        for (w, b) in self.map.iter().zip(taken.chunks_exact(8)) {
            let mut v = [0u8; 8];
            v.copy_from_slice(b);
            w.fetch_or(u64::from_le_bytes(v), Ordering::AcqRel);
        }
    }
}

/// `ioctl(2)` on /dev/quiesce.
///
/// # Safety
/// Called by the VFS; `arg` is a user address.
pub(crate) unsafe extern "C" fn ctl_ioctl(_f: *mut bindings::file, cmd: u32, arg: usize) -> isize {
    if cmd != QUIESCE_IOC_CBT {
        return -(bindings::ENOTTY as isize);
    }
    match cbt_read(arg) {
        Ok(()) => 0,
        Err(e) => e as isize,
    }
}

fn cbt_read(arg: usize) -> Result<(), i32> {
    let mut req: Req = kernel::uaccess::UserSlice::new(arg, REQ_SIZE)
        .reader()
        .read()
        .map_err(|_| errno(bindings::EFAULT))?;
    if req.size as usize != REQ_SIZE || req.flags & !QUIESCE_CBT_RESET != 0 || req.reserved != 0 {
        pr_info!("quiesce: cbt: bad request (size {}, flags {:#x}): see docs/cbt.md\n", req.size, req.flags);
        return Err(errno(bindings::EINVAL));
    }
    let dev = (req.major << bindings::MINORBITS) | req.minor;
    let r = ctl::with_reg(|reg| {
        let Some(ip) = reg.interposer_of(dev) else {
            pr_info!("quiesce: cbt: device {}:{} is not attached\n", req.major, req.minor);
            return Err(errno(bindings::ENODEV));
        };
        req.session = ip.session;
        req.block_size = BLOCK_SIZE;
        req.nr_blocks = ip.nr_blocks;
        req.generation = ip.generation.load(Ordering::Relaxed);
        if req.map_words < ip.map.len() as u64 {
            // Too small: say how much is needed; nothing is taken.
            return Err(errno(bindings::ENOSPC));
        }
        let reset = req.flags & QUIESCE_CBT_RESET != 0;
        let (bytes, changed) = ip.snapshot(reset).ok_or(errno(bindings::ENOMEM))?;
        req.nr_changed = changed;
        // Map first, then the header: both are handed over before the bits are
        // given up, or the bits go back.
        let handed = kernel::uaccess::UserSlice::new(req.map as usize, bytes.len()).writer().write_slice(&bytes);
        let handed = handed.and_then(|()| kernel::uaccess::UserSlice::new(arg, REQ_SIZE).writer().write(&req));
        if handed.is_err() {
            if reset {
                ip.restore(&bytes);
            }
            return Err(errno(bindings::EFAULT));
        }
        if reset {
            ip.generation.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
    .unwrap_or(Err(errno(bindings::ENODEV)));
    if r == Err(errno(bindings::ENOSPC)) {
        // Say how much room the map needs.
        let _ = kernel::uaccess::UserSlice::new(arg, REQ_SIZE).writer().write(&req);
    }
    r
}
