//! The packed form of a state that the engine fingerprints: one byte a field,
//! in a fixed buffer. With symmetry, each submitter's bios are written in
//! sorted order, then the submitters' groups in sorted order (no allocation),
//! so every member of an orbit packs to the same bytes.

use crate::model::{Bio, Ctl, Ip, Phase, State, MAX_BIOS, MAX_CTLS, MAX_FREEZERS};

/// Bytes of one bio, one controller.
const BIO: usize = 10;
const CTL: usize = 9;
/// Enough for the largest bounds (19 bios, 3 controllers, 2 freezers: 232 bytes).
pub const MAX: usize = 232;
const _: () = assert!(MAX_BIOS * BIO + MAX_CTLS * CTL + 13 + MAX_FREEZERS <= MAX);

fn ip(i: Option<Ip>) -> u8 {
    i.map_or(0, |i| 1 + i.c * 16 + i.gen)
}

fn bio(b: &Bio, out: &mut [u8]) {
    out[0] = b.loc as u8;
    out[1] = b.pc;
    out[2] = b.flags;
    out[3] = ip(b.ip);
    out[4] = ip(b.via);
    out[5] = b.depth;
    out[6] = b.done;
    out[7] = b.rcu;
    // A bio's path in two bits (at most one of the three is set), then fr.
    let path = if b.stacked {
        3
    } else {
        b.nowait as u8 | (b.pt as u8) << 1
    };
    out[8] = path | (b.fr & 63) << 2;
    out[9] = b.fr >> 6;
}

fn ctl(c: &Ctl, out: &mut [u8]) {
    let (tag, failed) = match c.phase {
        Phase::Attach => (0, 0),
        Phase::AttachErr { failed } => (1, failed),
        Phase::Attached => (2, 0),
        Phase::Detach => (3, 0),
        Phase::DetachErr { failed } => (4, failed),
        Phase::Done => (5, 0),
    };
    out[0] = c.cycle;
    out[1] = tag;
    out[2] = failed;
    out[3] = c.pc;
    out[4] = c.sub;
    out[5] = c.held;
    out[6] = c.ilife as u8;
    out[7] = c.isusp as u8;
    out[8] = c.igen;
}

/// Pack `s` into `out`; returns the length. `canonical`: sort each submitter's
/// bios, then the submitters.
pub fn encode<const N: usize>(s: &State<N>, canonical: bool, out: &mut [u8; MAX]) -> usize {
    debug_assert!(
        s.bios.len() <= MAX_BIOS,
        "the checker's bounds keep a state within MAX"
    );
    let nbios = s.bios.len();
    let nsub = nbios - s.ctls.len();
    let k = s.k as usize;
    let mut at = 0;
    for (i, b) in s.bios.iter().enumerate() {
        bio(b, &mut out[i * BIO..(i + 1) * BIO]);
    }
    at += nbios * BIO;
    if canonical && k > 0 {
        if k > 1 {
            for g in out[..nsub * BIO].chunks_exact_mut(k * BIO) {
                sort_records(g, BIO);
            }
        }
        if nsub / k > 1 {
            sort_records(&mut out[..nsub * BIO], k * BIO);
        }
    }
    for c in s.ctls.iter() {
        ctl(c, &mut out[at..at + CTL]);
        at += CTL;
    }
    out[at] = ip(s.ptr);
    out[at + 1] = s.o_dead as u8 | (s.o_reused as u8) << 1;
    out[at + 2] = s.rm.pc;
    out[at + 3] = s.injected;
    out[at + 4] = s.leaked_qrefs;
    out[at + 5] = s.uaf as u8;
    out[at + 6] = s.unbalanced as u8;
    out[at + 7] = s.k;
    out[at + 8] = s.rm.sub;
    out[at + 9] = s.rm.held;
    out[at + 10] = ip(s.rm.ip);
    out[at + 11] = s.module_gone as u8;
    out[at + 12] = s.rcu_cb;
    at += 13;
    for &f in s.freezers.iter() {
        out[at] = f;
        at += 1;
    }
    at
}

/// Sort the `width`-byte records of `buf` (a few: an insertion sort in place).
fn sort_records(buf: &mut [u8], width: usize) {
    let n = buf.len() / width;
    for i in 1..n {
        let mut j = i;
        while j > 0 && buf[(j - 1) * width..j * width] > buf[j * width..(j + 1) * width] {
            let (left, right) = buf.split_at_mut(j * width);
            left[(j - 1) * width..].swap_with_slice(&mut right[..width]);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_sort_in_place() {
        let mut b = [3, 3, 1, 1, 2, 2, 0, 9];
        sort_records(&mut b[..6], 2);
        assert_eq!(b, [1, 1, 2, 2, 3, 3, 0, 9]);
    }
}
