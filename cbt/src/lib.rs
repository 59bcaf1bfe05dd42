//! quiesce's changed-block map, as user space sees it: the `QUIESCE_IOC_CBT`
//! request on /dev/quiesce and the map file format (both in docs/cbt.md).

use serde::Serialize;
use std::fmt;

pub mod dev;

/// The map file's first 8 bytes.
pub const MAGIC: &[u8; 8] = b"QCBTMAP1";
/// Bytes before the map words.
pub const HEADER: usize = 56;

/// One read of an original's changed-block map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Map {
    /// The original's device number.
    pub major: u32,
    pub minor: u32,
    /// The attachment's tracking session: a new attach starts a new one.
    pub session: u64,
    /// The generation these bits belong to.
    pub generation: u64,
    /// Bytes per bit.
    pub block_size: u32,
    /// Blocks of the original.
    pub nr_blocks: u64,
    /// Bit b of word w: block 64w+b changed.
    #[serde(skip)]
    pub words: Vec<u64>,
}

/// Why a map file cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum FormatError {
    Short(usize),
    Magic,
    BlockSize(u32),
    Length { words: u64, have: usize },
    StrayBits(u64),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Short(n) => write!(f, "{n} bytes: shorter than the {HEADER}-byte header"),
            FormatError::Magic => write!(f, "not a quiesce map (no QCBTMAP1 magic)"),
            FormatError::BlockSize(b) => {
                write!(f, "block size {b} is not a power of two of at least 512")
            }
            FormatError::Length { words, have } => {
                write!(
                    f,
                    "the header says {words} map words but {have} bytes follow it"
                )
            }
            FormatError::StrayBits(b) => write!(f, "bit {b} is set beyond the last block"),
        }
    }
}

impl std::error::Error for FormatError {}

impl Map {
    /// Map words for `nr_blocks` blocks.
    pub fn words_for(nr_blocks: u64) -> usize {
        nr_blocks.div_ceil(64) as usize
    }

    pub fn is_changed(&self, block: u64) -> bool {
        block < self.nr_blocks && self.words[(block / 64) as usize] & (1 << (block % 64)) != 0
    }

    /// Blocks whose bit is set.
    pub fn changed(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Changed blocks as inclusive ranges, in order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (i, &w) in self.words.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let b = i as u64 * 64 + u64::from(w.trailing_zeros());
                w &= w - 1;
                match out.last_mut() {
                    Some(r) if r.1 + 1 == b => r.1 = b,
                    _ => out.push((b, b)),
                }
            }
        }
        out
    }

    /// The map file: header, then the words, all little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER + self.words.len() * 8);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&self.block_size.to_le_bytes());
        v.extend_from_slice(&self.major.to_le_bytes());
        v.extend_from_slice(&self.minor.to_le_bytes());
        v.extend_from_slice(&self.session.to_le_bytes());
        v.extend_from_slice(&self.generation.to_le_bytes());
        v.extend_from_slice(&self.nr_blocks.to_le_bytes());
        v.extend_from_slice(&self.changed().to_le_bytes());
        for w in &self.words {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }

    pub fn decode(b: &[u8]) -> Result<Map, FormatError> {
        if b.len() < HEADER {
            return Err(FormatError::Short(b.len()));
        }
        if &b[..8] != MAGIC {
            return Err(FormatError::Magic);
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let block_size = u32_at(12);
        if block_size < 512 || !block_size.is_power_of_two() {
            return Err(FormatError::BlockSize(block_size));
        }
        let nr_blocks = u64_at(40);
        let words = nr_blocks.div_ceil(64);
        let body = &b[HEADER..];
        if body.len() as u64 != words * 8 {
            return Err(FormatError::Length {
                words,
                have: body.len(),
            });
        }
        let m = Map {
            major: u32_at(16),
            minor: u32_at(20),
            session: u64_at(24),
            generation: u64_at(32),
            block_size,
            nr_blocks,
            words: body
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        };
        if let Some(w) = m.words.last() {
            let used = nr_blocks - (words - 1) * 64;
            if used < 64 && w >> used != 0 {
                return Err(FormatError::StrayBits(
                    (words - 1) * 64 + used + u64::from((w >> used).trailing_zeros()),
                ));
            }
        }
        Ok(m)
    }
}
