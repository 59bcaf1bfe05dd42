//! The kernel side: `QUIESCE_IOC_CBT` on /dev/quiesce, and block copies that
//! bypass the page cache.

use crate::Map;
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// `struct quiesce_cbt` (docs/cbt.md).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct Req {
    size: u32,
    flags: u32,
    major: u32,
    minor: u32,
    session: u64,
    generation: u64,
    block_size: u32,
    reserved: u32,
    nr_blocks: u64,
    nr_changed: u64,
    map: u64,
    map_words: u64,
}

const REQ_SIZE: usize = std::mem::size_of::<Req>();
const _: () = assert!(REQ_SIZE == 72);
/// `_IOWR('Q', 1, struct quiesce_cbt)`.
pub const QUIESCE_IOC_CBT: u64 = (3 << 30) | ((REQ_SIZE as u64) << 16) | ((b'Q' as u64) << 8) | 1;
/// Take the bits and start the next generation.
pub const QUIESCE_CBT_RESET: u32 = 1;

/// The device number of block device `path`.
pub fn block_dev(path: &Path) -> Result<(u32, u32)> {
    let md = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !md.file_type().is_block_device() {
        bail!("{}: not a block device", path.display());
    }
    let rdev = md.rdev();
    Ok((libc::major(rdev), libc::minor(rdev)))
}

fn ioctl(ctl: &File, req: &mut Req) -> std::io::Result<()> {
    // SAFETY: `req` is a live, writable `struct quiesce_cbt` of REQ_SIZE bytes; the
    // kernel writes at most that, and at most `map_words` words at `map`.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), QUIESCE_IOC_CBT as _, req as *mut Req) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Read the map of attached original `dev` through control device `ctl`; with
/// `reset`, take its bits and start the next generation.
pub fn read_map(ctl: &Path, dev: &Path, reset: bool) -> Result<Map> {
    let (major, minor) = block_dev(dev)?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(ctl)
        .with_context(|| format!("{}", ctl.display()))?;
    let mut req = Req {
        size: REQ_SIZE as u32,
        major,
        minor,
        ..Req::default()
    };
    // First ask how large the map is (no room given: ENOSPC with nr_blocks set).
    match ioctl(&f, &mut req) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
            bail!("{}: not attached (the kernel says: {e})", dev.display())
        }
        Err(e) => bail!(
            "{}: QUIESCE_IOC_CBT on {}: {e}",
            dev.display(),
            ctl.display()
        ),
        Ok(()) => {}
    }
    let mut words = vec![0u64; Map::words_for(req.nr_blocks)];
    // The map's size is fixed for an attachment; a re-attach between the calls is
    // seen as a new session below.
    let session = req.session;
    req.flags = if reset { QUIESCE_CBT_RESET } else { 0 };
    req.map = words.as_mut_ptr() as u64;
    req.map_words = words.len() as u64;
    ioctl(&f, &mut req)
        .with_context(|| format!("{}: QUIESCE_IOC_CBT on {}", dev.display(), ctl.display()))?;
    if req.session != session {
        bail!(
            "{}: re-attached while reading (session {session} became {}); read again",
            dev.display(),
            req.session
        );
    }
    for w in &mut words {
        *w = u64::from_le(*w);
    }
    let m = Map {
        major,
        minor,
        session,
        generation: req.generation,
        block_size: req.block_size,
        nr_blocks: req.nr_blocks,
        words,
    };
    if m.changed() != req.nr_changed {
        bail!(
            "{}: the kernel counted {} changed blocks, the map has {}",
            dev.display(),
            req.nr_changed,
            m.changed()
        );
    }
    Ok(m)
}

/// A buffer of `len` bytes aligned to 4096, as O_DIRECT needs.
struct Aligned {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let buf = vec![0u8; len + 4096];
        let off = buf.as_ptr().align_offset(4096);
        Aligned { buf, off, len }
    }
    fn get(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// Bytes of the block device or file at `f`.
fn size_of(f: &File, path: &Path) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut g = f.try_clone()?;
    g.seek(SeekFrom::End(0))
        .with_context(|| format!("{}: size", path.display()))
}

/// The largest single read and write of `copy`.
const RUN_BYTES: u64 = 1 << 20;

/// What `copy` did.
#[derive(Debug, serde::Serialize)]
pub struct Copied {
    pub blocks: u64,
    pub bytes: u64,
}

/// Copy `src`'s blocks onto `dst` (every block, or those `map` marks), reading
/// with O_DIRECT so that no stale page cache is copied. `dst` must be as large
/// as `src` already when `map` is given (an incremental copy onto a full one).
pub fn copy(src: &Path, dst: &Path, map: Option<&Map>) -> Result<Copied> {
    use std::os::unix::fs::FileExt;
    let s = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(src)
        .with_context(|| format!("{}", src.display()))?;
    let len = size_of(&s, src)?;
    let bs: u64 = map.map_or(4096, |m| u64::from(m.block_size));
    if let Some(m) = map {
        let (major, minor) = block_dev(src)?;
        if (major, minor) != (m.major, m.minor) {
            bail!(
                "{}: device {major}:{minor}, but the map is of {}:{}",
                src.display(),
                m.major,
                m.minor
            );
        }
        if m.nr_blocks != len.div_ceil(bs) {
            bail!(
                "{}: {} blocks of {bs} bytes, but the map has {}",
                src.display(),
                len.div_ceil(bs),
                m.nr_blocks
            );
        }
    }
    let mut opts = OpenOptions::new();
    opts.write(true);
    if map.is_none() {
        opts.create(true).truncate(true);
    }
    let d = opts
        .open(dst)
        .with_context(|| format!("{}", dst.display()))?;
    if map.is_some() {
        let have = size_of(&d, dst)?;
        if have != len {
            bail!(
                "{}: {have} bytes, but {} has {len}: apply a map only onto a full copy",
                dst.display(),
                src.display()
            );
        }
    } else {
        d.set_len(len)
            .with_context(|| format!("{}: set length", dst.display()))?;
    }
    // Runs of blocks to copy, each read and written at once (up to 1 MiB).
    let run_max = (RUN_BYTES / bs).max(1);
    let mut buf = Aligned::new((run_max * bs) as usize);
    let mut done = Copied {
        blocks: 0,
        bytes: 0,
    };
    let blocks = len.div_ceil(bs);
    let wanted = |b: u64| map.is_none_or(|m| m.is_changed(b));
    let mut b = 0;
    while b < blocks {
        if !wanted(b) {
            b += 1;
            continue;
        }
        let mut e = b + 1;
        while e < blocks && e - b < run_max && wanted(e) {
            e += 1;
        }
        let off = b * bs;
        let n = (e * bs).min(len) - off;
        let data = &mut buf.get()[..n as usize];
        s.read_exact_at(data, off)
            .with_context(|| format!("{}: read blocks {b}-{}", src.display(), e - 1))?;
        d.write_all_at(data, off)
            .with_context(|| format!("{}: write blocks {b}-{}", dst.display(), e - 1))?;
        done.blocks += e - b;
        done.bytes += n;
        b = e;
    }
    d.sync_all()
        .with_context(|| format!("{}: sync", dst.display()))?;
    Ok(done)
}
