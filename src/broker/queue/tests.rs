//! Unit tests of the queue backlog: paging out and in, order, recovery.
use super::*;
use crate::store::Store;
use bytes::{BufMut, BytesMut};

fn persistent(body: Vec<u8>) -> Arc<Message> {
    let properties = amq_protocol::protocol::basic::AMQPProperties::default().with_delivery_mode(2);
    let mut raw = BytesMut::new();
    raw.put_u16(crate::protocol::CLASS_BASIC);
    raw.put_u16(0);
    raw.put_u64(body.len() as u64);
    raw.put_u16(0x1000); // property flags: delivery-mode
    raw.put_u8(2);
    Arc::new(Message {
        exchange: Default::default(),
        routing_key: "q".into(),
        properties: crate::protocol::Properties::new(properties),
        header_raw: raw.freeze(),
        body: Bytes::from(body),
    })
}

fn body(i: u32) -> Vec<u8> {
    let mut b = vec![(i % 251) as u8; 1000];
    b[..4].copy_from_slice(&i.to_be_bytes());
    b
}

fn publish(q: &Arc<Queue>, i: u32) {
    let m = persistent(body(i));
    let rec = crate::broker::persist::record(&m, None);
    q.publish(m, Some((&rec, Box::new(|r| r.expect("stored")))));
}

fn durable_queue(store: &Store, limit: usize) -> Arc<Queue> {
    let def = crate::store::QueueDef { vhost: "/".into(), name: "q".into(), durable: true, auto_delete: false, arguments: vec![] };
    let id = store.put_queue(&def).unwrap();
    Arc::new(Queue::new("q".into(), "/".into(), true, false, None, FieldTable::default(), QueueArgs::default(), Some((id, store.message_log())), limit))
}

/// Bodies beyond the queue's memory limit go to disk once committed and come back, in
/// order and intact, when taken.
#[test]
fn backlog_beyond_the_limit_is_paged_out_and_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = durable_queue(&store, 20_000);
    for i in 0..2_000 {
        publish(&q, i);
    }
    store.message_log().flush().wait().unwrap();
    let (_, in_ram, paged) = q.memory();
    assert!(in_ram <= 20_000 + 1_000, "{in_ram} body bytes in memory");
    assert!(paged >= 1_970, "{paged} paged");
    // A redelivery in the middle goes back to the head.
    let (first, _) = q.get().unwrap();
    q.requeue(std::iter::once(first));
    for i in 0..2_000u32 {
        let (r, left) = q.get().expect("message");
        assert_eq!(r.msg.body[..], body(i)[..], "message {i}");
        assert_eq!(r.redelivered, i == 0);
        assert_eq!(left, 1_999 - i);
        q.forget(r.seq);
    }
    assert!(q.get().is_none());
    store.message_log().flush().wait().unwrap();
    assert_eq!(store.total_message_count().unwrap(), 0);
}

/// Messages published while part of the backlog is on disk queue up behind it, even when
/// the head has room again.
#[test]
fn publishes_after_paging_keep_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = durable_queue(&store, 5_000);
    let mut next = 0u32;
    let mut expect = 0u32;
    for round in 0..20 {
        for _ in 0..300 {
            publish(&q, next);
            next += 1;
        }
        if round % 3 == 0 {
            store.message_log().flush().wait().unwrap();
        }
        for _ in 0..200 {
            let (r, _) = q.get().expect("message");
            assert_eq!(r.msg.body[..4], expect.to_be_bytes(), "round {round}");
            expect += 1;
            q.forget(r.seq);
        }
    }
    while let Some((r, _)) = q.get() {
        assert_eq!(r.msg.body[..4], expect.to_be_bytes());
        expect += 1;
    }
    assert_eq!(expect, next);
}

/// A recovered queue holds only the index; bodies are read when taken, and a record that
/// vanished from the store is skipped, not delivered empty.
#[test]
fn restored_index_reads_bodies_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = durable_queue(&store, 1 << 20);
    for i in 0..10 {
        publish(&q, i);
    }
    store.message_log().flush().wait().unwrap();
    let id = q.store.as_ref().unwrap().0;
    let seqs: Vec<u64> = store.load_index(id, 0, usize::MAX).unwrap().into_iter().map(|(s, _)| s).collect();
    store.message_log().remove(id, seqs[3]);
    store.message_log().flush().wait().unwrap();
    let r = Arc::new(Queue::new("r".into(), "/".into(), true, false, None, FieldTable::default(), QueueArgs::default(), Some((id, store.message_log())), 1 << 20));
    r.restore(seqs.iter().map(|&s| (s, 0, 1000, 0)), seqs.last().unwrap() + 1);
    assert_eq!(r.memory(), (0, 0, 10));
    let got: Vec<u32> = std::iter::from_fn(|| r.get()).map(|(m, _)| {
        assert!(m.redelivered);
        u32::from_be_bytes(m.msg.body[..4].try_into().unwrap())
    }).collect();
    assert_eq!(got, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
}

fn transient(body: Vec<u8>) -> Arc<Message> {
    let mut raw = BytesMut::new();
    raw.put_u16(crate::protocol::CLASS_BASIC);
    raw.put_u16(0);
    raw.put_u64(body.len() as u64);
    raw.put_u16(0); // no properties
    Arc::new(Message {
        exchange: Default::default(),
        routing_key: "t".into(),
        properties: Default::default(),
        header_raw: raw.freeze(),
        body: Bytes::from(body),
    })
}

fn paging_queue(dir: &Arc<crate::store::transient::TransientDir>, limit: usize, args: QueueArgs) -> Arc<Queue> {
    let pages = dir.pages();
    Arc::new(Queue::new("t".into(), "/".into(), false, false, None, FieldTable::default(), args, None, limit).with_pages(pages))
}

fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// A non-durable queue pages transient messages beyond its budget, gives them back in order,
/// and its page files go as the backlog drains; messages that expire while paged out leave the
/// page file too.
#[test]
fn transient_backlog_pages_out_and_back_and_expiry_releases_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = crate::store::transient::TransientDir::new(tmp.path().join("transient"));
    let q = paging_queue(&dir, 50_000, QueueArgs::default());
    for i in 0..3_000 {
        q.publish(transient(body(i)), None);
    }
    let (in_ram, ram_bytes, paged) = q.memory();
    assert!(ram_bytes <= 50_000, "{ram_bytes} body bytes in memory");
    assert_eq!(in_ram + paged, 3_000);
    assert!(paged > 2_900, "{paged} paged");
    assert_eq!(files(dir.path()), 1);
    for i in 0..3_000u32 {
        let (r, left) = q.get().expect("message");
        assert_eq!(r.msg.body[..], body(i)[..], "message {i}");
        assert_eq!(r.msg.routing_key, "t");
        assert_eq!(left, 2_999 - i);
    }
    assert!(q.get().is_none());
    assert_eq!(std::fs::metadata(dir.path().join("1.1")).unwrap().len(), 0, "drained: the page file is emptied");
    drop(q);
    assert_eq!(files(dir.path()), 0, "a dropped queue leaves no page files");

    // x-message-ttl: the paged-out messages expire at the head and leave the page file.
    let args = QueueArgs { message_ttl: Some(1_000), ..Default::default() };
    let q = paging_queue(&dir, 50_000, args);
    for i in 0..1_000 {
        q.publish(transient(body(i)), None);
    }
    assert!(q.memory().2 > 900);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_eq!(q.counts().0, 0, "all expired");
    assert_eq!(q.memory(), (0, 0, 0));
    assert_eq!(files(dir.path()), 1, "the segment being written stays, emptied");
    assert_eq!(std::fs::metadata(dir.path().join("2.1")).unwrap().len(), 0);
}

/// When the page file cannot be written (here: its folder cannot be created; in production a
/// full disk), messages stay in memory and nothing is lost.
#[test]
fn a_page_file_that_cannot_be_written_keeps_messages_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let blocked = tmp.path().join("not-a-dir");
    std::fs::write(&blocked, b"a file where the folder should be").unwrap();
    let dir = crate::store::transient::TransientDir::new(blocked.join("transient"));
    let q = paging_queue(&dir, 20_000, QueueArgs::default());
    for i in 0..500 {
        q.publish(transient(body(i)), None);
    }
    assert_eq!(q.memory().2, 0, "nothing paged out");
    for i in 0..500u32 {
        assert_eq!(q.get().expect("message").0.msg.body[..], body(i)[..]);
    }
}

fn durable_queue_with(store: &Store, limit: usize, args: QueueArgs) -> Arc<Queue> {
    let def = crate::store::QueueDef { vhost: "/".into(), name: "q".into(), durable: true, auto_delete: false, arguments: vec![] };
    let id = store.put_queue(&def).unwrap();
    Arc::new(Queue::new("q".into(), "/".into(), true, false, None, FieldTable::default(), args, Some((id, store.message_log())), limit))
}

fn number(r: &Ready) -> u32 {
    u32::from_be_bytes(r.msg.body[..4].try_into().unwrap())
}

/// Once committed, a paged-out backlog of consecutive persistent messages is held as a run or
/// two (not a slot each), and comes back in order across the page-in batches.
#[test]
fn a_paged_backlog_is_held_as_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = durable_queue(&store, 8_000);
    for i in 0..5_000 {
        publish(&q, i);
    }
    store.message_log().flush().wait().unwrap();
    q.dispatch();
    let entries = q.inner.lock().backlog.cold_entries();
    assert!(entries <= 2, "{entries} cold entries for 5,000 messages");
    assert_eq!(q.inner.lock().backlog.bytes(), 5_000 * 1000);
    for i in 0..5_000u32 {
        let (r, left) = q.get().expect("message");
        assert_eq!(number(&r), i);
        assert_eq!(r.msg.body[..], body(i)[..]);
        assert_eq!(left, 4_999 - i);
    }
    assert_eq!(q.inner.lock().backlog.bytes(), 0);
}

/// x-max-length with drop-head takes messages off the front of a run (their bodies never
/// read), and x-max-length-bytes counts the bytes of messages inside runs.
#[test]
fn length_limits_drop_from_the_front_of_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = durable_queue_with(&store, 8_000, QueueArgs { max_length: Some(1_000), ..Default::default() });
    for i in 0..3_000 {
        publish(&q, i);
        if i % 500 == 0 {
            store.message_log().flush().wait().unwrap();
        }
    }
    store.message_log().flush().wait().unwrap();
    q.dispatch();
    assert_eq!(q.counts().0, 1_000);
    assert_eq!(q.inner.lock().backlog.bytes(), 1_000 * 1000);
    store.message_log().flush().wait().unwrap();
    assert_eq!(store.total_message_count().unwrap(), 1_000, "dropped heads are removed from the store");
    let got: Vec<u32> = std::iter::from_fn(|| q.get()).map(|(r, _)| number(&r)).collect();
    assert_eq!(got, (2_000..3_000).collect::<Vec<_>>());

    // Bytes: messages of different sizes in one run; the limit holds to the byte.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = durable_queue_with(&store, 4_000, QueueArgs { max_length_bytes: Some(100_000), ..Default::default() });
    let size = |i: u32| 100 + (i % 7) as usize * 50;
    for i in 0..2_000u32 {
        let mut b = body(i);
        b.truncate(size(i));
        let m = persistent(b);
        let rec = crate::broker::persist::record(&m, None);
        q.publish(m, Some((&rec, Box::new(|r| r.expect("stored")))));
        if i % 100 == 0 {
            store.message_log().flush().wait().unwrap();
            q.dispatch();
        }
    }
    store.message_log().flush().wait().unwrap();
    q.dispatch();
    let bytes = q.inner.lock().backlog.bytes();
    let got: Vec<u32> = std::iter::from_fn(|| q.get()).map(|(r, _)| number(&r)).collect();
    let first = *got.first().unwrap();
    assert_eq!(got, (first..2_000).collect::<Vec<_>>(), "the newest messages, in order");
    let expect: usize = got.iter().map(|&i| size(i)).sum();
    assert_eq!(bytes, expect, "bytes counted for the messages left");
    assert!(expect <= 100_000 && expect + size(first - 1) > 100_000, "{expect} bytes kept");
}

/// Purge removes the stored messages of runs with one range removal each.
#[test]
fn purge_removes_runs_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = durable_queue(&store, 8_000);
    for i in 0..3_000 {
        publish(&q, i);
    }
    store.message_log().flush().wait().unwrap();
    q.dispatch();
    let (first, _) = q.get().unwrap();
    assert_eq!(q.purge(), 2_999);
    store.message_log().flush().wait().unwrap();
    assert_eq!(store.total_message_count().unwrap(), 1, "only the unacked message is left");
    q.forget(first.seq);
    store.message_log().flush().wait().unwrap();
    assert_eq!(store.total_message_count().unwrap(), 0);
    assert!(q.get().is_none());
}

/// Recovered messages form runs at once; a gap in the sequence numbers (acked before the
/// restart) or a message with an expiry ends a run; page-in reads across these boundaries in
/// order; requeued messages go back to their places before the rest.
#[test]
fn restored_runs_page_in_across_boundaries_and_requeue_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = durable_queue(&store, 1 << 20);
    for i in 0..1_000 {
        publish(&q, i);
    }
    store.message_log().flush().wait().unwrap();
    let id = q.store.as_ref().unwrap().0;
    let seqs: Vec<u64> = store.load_index(id, 0, usize::MAX).unwrap().into_iter().map(|(s, _)| s).collect();
    // Messages 300..400 were acked before the restart.
    for &s in &seqs[300..400] {
        store.message_log().remove(id, s);
    }
    store.message_log().flush().wait().unwrap();
    let kept: Vec<u64> = seqs.iter().enumerate().filter(|(i, _)| !(300..400).contains(i)).map(|(_, &s)| s).collect();
    let far = crate::broker::ttl::now_ms() + 3_600_000;
    let r = Arc::new(Queue::new("r".into(), "/".into(), true, false, None, FieldTable::default(), QueueArgs::default(), Some((id, store.message_log())), 8_000));
    // Message 700 has an expiry (in an hour): a slot of its own between two runs.
    r.restore(kept.iter().enumerate().map(|(i, &s)| (s, if i == 600 { far } else { 0 }, 1000, 0)), kept.last().unwrap() + 1);
    assert_eq!(r.inner.lock().backlog.cold_entries(), 4);
    assert_eq!(r.memory(), (0, 0, 900));
    let mut taken: Vec<Ready> = (0..10).map(|_| r.get().unwrap().0).collect();
    // Two of them back, out of order: they return to their places at the head.
    let second = taken.remove(2);
    let first = taken.remove(0);
    r.requeue(vec![second, first].into_iter());
    let got: Vec<u32> = std::iter::from_fn(|| r.get()).map(|(m, _)| {
        assert!(m.redelivered);
        number(&m)
    }).collect();
    let mut expect: Vec<u32> = vec![0, 2];
    expect.extend((10..300).chain(400..1_000));
    assert_eq!(got, expect);
}
