//! The map file format round-trips, and damaged files are refused with the cause.

use proptest::prelude::*;
use quiesce_cbt::{FormatError, Map, HEADER};

fn map(nr_blocks: u64, bits: &[u64]) -> Map {
    let mut words = vec![0u64; Map::words_for(nr_blocks)];
    for &b in bits.iter().filter(|&&b| b < nr_blocks) {
        words[(b / 64) as usize] |= 1 << (b % 64);
    }
    Map {
        major: 251,
        minor: 1,
        session: 3,
        generation: 7,
        block_size: 4096,
        nr_blocks,
        words,
    }
}

proptest! {
    #[test]
    fn round_trips(nr in 1u64..5000, bits in proptest::collection::vec(0u64..5000, 0..200)) {
        let m = map(nr, &bits);
        let back = Map::decode(&m.encode()).unwrap();
        prop_assert_eq!(&back, &m);
        let want: std::collections::BTreeSet<u64> = bits.iter().copied().filter(|&b| b < nr).collect();
        prop_assert_eq!(back.changed(), want.len() as u64);
        let from_ranges: Vec<u64> = back.ranges().iter().flat_map(|&(a, b)| a..=b).collect();
        prop_assert_eq!(from_ranges, want.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn header_fields_sit_where_the_document_says() {
    let b = map(100, &[0, 5, 99]).encode();
    assert_eq!(&b[..8], b"QCBTMAP1");
    assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 1);
    assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 4096);
    assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 7);
    assert_eq!(u64::from_le_bytes(b[40..48].try_into().unwrap()), 100);
    assert_eq!(u64::from_le_bytes(b[48..56].try_into().unwrap()), 3);
    assert_eq!(b.len(), HEADER + 2 * 8);
    assert_eq!(
        map(100, &[0, 5, 99]).ranges(),
        vec![(0, 0), (5, 5), (99, 99)]
    );
}

#[test]
fn damaged_files_are_refused_with_the_cause() {
    let good = map(100, &[1, 2, 3]).encode();
    assert_eq!(Map::decode(&good[..10]), Err(FormatError::Short(10)));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(Map::decode(&bad), Err(FormatError::Magic));
    assert_eq!(
        Map::decode(&good[..good.len() - 1]),
        Err(FormatError::Length { words: 2, have: 15 })
    );
    let mut stray = good.clone();
    let last = stray.len() - 1;
    stray[last] |= 0x80; // bit 127 of a 100-block map
    assert_eq!(Map::decode(&stray), Err(FormatError::StrayBits(127)));
    let mut bs = good;
    bs[12..16].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(Map::decode(&bs), Err(FormatError::BlockSize(1000)));
    assert!(FormatError::StrayBits(127).to_string().contains("bit 127"));
}
