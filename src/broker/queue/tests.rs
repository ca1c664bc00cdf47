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
        exchange: String::new(),
        routing_key: "q".into(),
        properties: Box::new(properties),
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
        exchange: String::new(),
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
