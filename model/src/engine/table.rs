//! The visited set: a flat, preallocated table of 64-bit state fingerprints.
//!
//! Open addressing with linear probing, 8 bytes a slot (0 means empty), so a
//! probe stays within one cache line for its first eight slots. Inserting is a
//! compare-and-swap, so two threads share the table without locks; growing
//! takes the table's write lock between batches of inserts.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Table {
    slots: Box<[AtomicU64]>,
    /// `64 - log2(slots)`: the index is the fingerprint's top bits.
    shift: u32,
    len: AtomicUsize,
}

/// The smallest table: 2^16 slots (512 KiB).
const MIN_BITS: u32 = 16;

/// Slots in a 4 KiB page.
const PAGE_SLOTS: usize = 4096 / 8;

/// Write each page of `slots` once. The allocator hands out untouched zeroed
/// pages: a probe that reads one first maps the shared zero page, and the
/// insert after it then copies the page and flushes the other CPUs' TLBs (an
/// interrupt to each). Written now, before any thread probes, each page is the
/// table's own at once. A large table's pages are shared out to one thread a
/// CPU: a first touch costs about 10 µs a page in this virtual machine, 40 s
/// for 16 GiB on one thread.
fn touch_pages(slots: &[AtomicU64]) {
    let touch = |part: &[AtomicU64]| {
        for slot in part.iter().step_by(PAGE_SLOTS) {
            slot.store(0, Ordering::Relaxed);
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || slots.len() < PARALLEL_TOUCH {
        return touch(slots);
    }
    // Whole pages a thread: a multiple of PAGE_SLOTS.
    let part = slots.len().div_ceil(threads).next_multiple_of(PAGE_SLOTS);
    std::thread::scope(|s| {
        for chunk in slots.chunks(part) {
            s.spawn(move || touch(chunk));
        }
    });
}

/// Slots from which [`touch_pages`] uses every CPU: 64 MiB.
const PARALLEL_TOUCH: usize = 8 << 20;

impl Table {
    /// A table of `2^bits` slots (at least 2^16).
    pub fn with_bits(bits: u32) -> Table {
        let bits = bits.clamp(MIN_BITS, 40);
        let slots: Box<[AtomicU64]> = (0..1usize << bits).map(|_| AtomicU64::new(0)).collect();
        touch_pages(&slots);
        Table {
            slots,
            shift: 64 - bits,
            len: AtomicUsize::new(0),
        }
    }

    /// Fingerprints stored.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes the slots take.
    pub fn bytes(&self) -> usize {
        self.slots.len() * 8
    }

    /// Three quarters full: time to grow. Linear probing slows as the table fills,
    /// but eight slots share a cache line, so most probes still touch one line.
    pub fn wants_growth(&self) -> bool {
        self.len() * 4 > self.slots.len() * 3
    }

    fn home(&self, fp: u64) -> usize {
        (fp >> self.shift) as usize
    }

    /// Start loading `fp`'s home slot into the cache (a batch of successors is
    /// prefetched before any of them is inserted).
    #[inline]
    pub fn prefetch(&self, fp: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.slots[self.home(fp)].as_ptr();
            // SAFETY: a prefetch is only a hint: it never faults and has no effect on
            // the program's state; `p` points into `slots` in any case.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.cast::<i8>(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = fp;
    }

    /// Insert a fingerprint (never 0); `true` if it was not there yet.
    pub fn insert(&self, fp: u64) -> bool {
        debug_assert_ne!(fp, 0);
        let mask = self.slots.len() - 1;
        let mut i = self.home(fp);
        loop {
            let slot = &self.slots[i];
            let v = slot.load(Ordering::Relaxed);
            if v == fp {
                return false;
            }
            if v == 0 {
                match slot.compare_exchange(0, fp, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        self.len.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    // Another thread took the slot: look at what it wrote.
                    Err(w) if w == fp => return false,
                    Err(_) => {}
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// A table twice the size holding the same fingerprints.
    pub fn grown(&self) -> Table {
        let t = Table::with_bits(64 - self.shift + 1);
        for s in self.slots.iter() {
            let v = s.load(Ordering::Relaxed);
            if v != 0 {
                t.insert(v);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_once_and_keeps_every_fingerprint_through_growth() {
        let mut t = Table::with_bits(16);
        let fps: Vec<u64> = (1..=50_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
            .collect();
        for &f in &fps {
            assert!(t.insert(f));
            if t.wants_growth() {
                t = t.grown();
            }
        }
        assert_eq!(t.len(), fps.len());
        assert!(t.capacity() * 3 >= 4 * fps.len());
        assert!(
            fps.iter().all(|&f| !t.insert(f)),
            "every fingerprint is found again"
        );
    }

    #[test]
    fn a_large_table_is_touched_by_every_cpu_and_starts_empty() {
        let slots: Vec<AtomicU64> = (0..PARALLEL_TOUCH + 3 * PAGE_SLOTS + 5)
            .map(|i| AtomicU64::new(i as u64 + 1))
            .collect();
        touch_pages(&slots);
        let touched = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.load(Ordering::Relaxed) == 0)
            .map(|(i, _)| i);
        // The first slot of every page, and nothing else: no part was skipped
        // and none overlapped a page of another.
        assert!(touched.eq((0..slots.len()).step_by(PAGE_SLOTS)));
        let t = Table::with_bits(23);
        assert!(t.is_empty() && t.insert(7) && !t.insert(7));
    }

    #[test]
    fn two_threads_insert_without_losing_or_doubling() {
        let t = Table::with_bits(18);
        let fps: Vec<u64> = (1..=60_000u64)
            .map(|i| i.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1)
            .collect();
        let new: usize = std::thread::scope(|s| {
            let a = s.spawn(|| fps.iter().filter(|&&f| t.insert(f)).count());
            let b = s.spawn(|| fps.iter().rev().filter(|&&f| t.insert(f)).count());
            a.join().unwrap() + b.join().unwrap()
        });
        assert_eq!(
            new,
            fps.len(),
            "each fingerprint is new to exactly one thread"
        );
        assert_eq!(t.len(), fps.len());
    }
}
