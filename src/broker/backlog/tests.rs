//! Unit tests of the cold segment's runs (no store: sequence numbers and sizes only).
use super::cold::{ColdSegment, MIXED, Run};
use super::Slot;

fn slot(seq: u64, pos: u64, expires: u64) -> Slot {
    Slot { msg: None, page: None, redelivered: false, seq, expires, size: 7, pos }
}

/// Consecutive stored messages share one entry; a gap in store sequence numbers or arrival
/// numbers, a different redelivered flag or a single slot starts a new one.
#[test]
fn consecutive_stored_messages_form_one_run() {
    let mut c = ColdSegment::default();
    for i in 0..10_000u64 {
        c.push_stored(100 + i, i, 16, false);
    }
    assert_eq!((c.len(), c.entries()), (10_000, 1));
    c.push_stored(10_101, 10_000, 16, false); // seq gap
    assert_eq!(c.entries(), 2);
    c.push_stored(10_102, 10_002, 16, false); // pos gap
    assert_eq!(c.entries(), 3);
    c.push_stored(10_103, 10_003, 16, true); // redelivered
    assert_eq!(c.entries(), 4);
    c.push_one(slot(10_104, 10_004, 99)); // an expiry
    c.push_stored(10_105, 10_005, 16, true);
    assert_eq!((c.len(), c.entries()), (10_005, 6));
    assert_eq!(c.memory(), (10_005, 0));
}

/// Taking from the front splits the run there: each message comes out with its own sequence
/// number, arrival number and size, in order, across run boundaries.
#[test]
fn pop_front_splits_runs_in_order_across_boundaries() {
    let mut c = ColdSegment::default();
    for i in 0..5u64 {
        c.push_stored(10 + i, i, 16, false);
    }
    c.push_one(slot(20, 5, 1234));
    for i in 6..9u64 {
        c.push_stored(30 + i, i, 16, true);
    }
    assert_eq!(c.stored_seqs(7), vec![10, 11, 12, 13, 14, 20, 36]);
    assert_eq!(c.front_expires(), Some(0));
    let mut got = Vec::new();
    while let Some(s) = c.pop_front(|_| panic!("uniform runs know their size")) {
        got.push((s.seq, s.pos, s.size, s.expires, s.redelivered));
        if s.seq == 14 {
            assert_eq!(c.front_expires(), Some(1234));
        }
    }
    assert_eq!(
        got,
        vec![
            (10, 0, 16, 0, false),
            (11, 1, 16, 0, false),
            (12, 2, 16, 0, false),
            (13, 3, 16, 0, false),
            (14, 4, 16, 0, false),
            (20, 5, 7, 1234, false),
            (36, 6, 16, 0, true),
            (37, 7, 16, 0, true),
            (38, 8, 16, 0, true),
        ]
    );
    assert_eq!((c.len(), c.entries()), (0, 0));
}

/// A run of messages of different sizes keeps their total; a message leaving it unread gets
/// the size the store reports, and the last one what is left, so the sizes add up.
#[test]
fn mixed_sizes_keep_the_total_bytes() {
    let mut c = ColdSegment::default();
    for (i, size) in [10u32, 20, 30, 40].into_iter().enumerate() {
        c.push_stored(1 + i as u64, i as u64, size, false);
    }
    assert_eq!(c.entries(), 1);
    let taken = c.take();
    let super::cold::Cold::Run(r) = &taken[0] else { panic!("a run") };
    assert_eq!((r.count, r.size, r.bytes), (4, MIXED, 100));
    let r: Run = r.clone();
    let mut c = ColdSegment::default();
    for i in 0..r.count as u64 {
        c.push_stored(r.seq + i, r.pos + i, [10, 20, 30, 40][i as usize], false);
    }
    assert_eq!(c.pop_front(|seq| Some(if seq == 1 { 10 } else { 0 })).unwrap().size, 10);
    // The store no longer has message 2: it counts 0, and the rest still adds up to 100.
    assert_eq!(c.pop_front(|_| None).unwrap().size, 0);
    assert_eq!(c.pop_front(|_| Some(30)).unwrap().size, 30);
    assert_eq!(c.pop_front(|_| panic!("the last takes what is left")).unwrap().size, 60);
    assert!(c.pop_front(|_| None).is_none());
}
