use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

fn msg(i: u64) -> StoredMessage {
    StoredMessage {
        exchange: "amq.direct".into(),
        routing_key: format!("rk.{i}"),
        properties: Bytes::from_static(&[0x10, 0x00, 2]),
        body: Bytes::from(format!("body-{i}").into_bytes()),
        delivered: i % 3 == 0,
    }
}

fn rec(i: u64) -> Bytes {
    msg(i).encode().unwrap()
}

fn qdef(vhost: &str, name: &str) -> QueueDef {
    QueueDef {
        vhost: vhost.into(),
        name: name.into(),
        durable: true,
        auto_delete: false,
        arguments: vec![1, 2, 3],
    }
}

fn binding(vhost: &str, src: &str, dst: &str, to_ex: bool, rk: &str) -> BindingDef {
    BindingDef {
        vhost: vhost.into(),
        source: src.into(),
        destination: dst.into(),
        destination_is_exchange: to_ex,
        routing_key: rk.into(),
        arguments: vec![],
    }
}

fn exchange(vhost: &str, name: &str) -> ExchangeDef {
    ExchangeDef {
        vhost: vhost.into(),
        name: name.into(),
        kind: "topic".into(),
        durable: true,
        auto_delete: false,
        internal: false,
        arguments: vec![0, 0, 0, 0],
    }
}

fn file_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(FILE_NAME)).unwrap()
}

/// Wait until the writer has started processing `n` batches.
fn wait_batches(store: &Store, n: u64) {
    let t0 = Instant::now();
    while store.stats().batches < n {
        assert!(t0.elapsed() < Duration::from_secs(10), "writer stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn fresh_store_is_empty_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let s = Store::open(&data).unwrap();
    assert_eq!(s.path(), data.join(FILE_NAME));
    assert_eq!(s.load_definitions().unwrap(), Definitions::default());
    s.close().unwrap();
    let s = Store::open(&data).unwrap();
    assert_eq!(s.load_definitions().unwrap(), Definitions::default());
    assert_eq!(s.total_message_count().unwrap(), 0);
}

#[test]
fn definitions_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.put_vhost(&VhostDef { name: "/".into(), ..Default::default() }).unwrap();
    s.put_vhost(&VhostDef {
        name: "prod".into(),
        limits: [("max-queues".to_string(), 10)].into(),
        policies: vec![crate::store::definitions::PolicyDef {
            name: "ttl".into(),
            pattern: "^q".into(),
            apply_to: "queues".into(),
            priority: 2,
            definition: [("message-ttl".to_string(), serde_json::json!(1000))].into(),
        }],
        ..Default::default()
    })
    .unwrap();
    let user = UserDef {
        name: "guest".into(),
        password_hash: "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR".into(),
        tags: vec!["administrator".into()],
        limits: [("max-channels".to_string(), 5)].into(),
    };
    s.put_user(&user).unwrap();
    let perm = PermissionDef {
        user: "guest".into(),
        vhost: "/".into(),
        configure: ".*".into(),
        write: ".*".into(),
        read: "^amq\\.".into(),
    };
    s.put_permission(&perm).unwrap();
    s.put_exchange(&exchange("/", "events")).unwrap();
    s.put_exchange(&exchange("/", "fanout-out")).unwrap();
    let q1 = s.put_queue(&qdef("/", "orders")).unwrap();
    let q2 = s.put_queue(&qdef("prod", "orders")).unwrap();
    assert_ne!(q1, q2);
    assert_eq!(
        s.put_queue(&qdef("/", "orders")).unwrap(),
        q1,
        "redeclare keeps id"
    );
    let b1 = binding("/", "events", "orders", false, "order.#");
    let b2 = binding("/", "events", "fanout-out", true, "");
    let mut b3 = b1.clone();
    b3.arguments = vec![9]; // differs only in arguments: a distinct binding
    for b in [&b1, &b2, &b3] {
        s.put_binding(b).unwrap();
    }
    s.put_binding(&b1).unwrap(); // idempotent
    let before = s.load_definitions().unwrap();
    assert_eq!(before.bindings.len(), 3);
    s.close().unwrap();

    let s = Store::open(dir.path()).unwrap();
    let after = s.load_definitions().unwrap();
    assert_eq!(before, after);
    assert_eq!(after.vhosts.len(), 2);
    assert_eq!(after.users, vec![user]);
    assert_eq!(after.permissions, vec![perm]);
    assert_eq!(after.exchanges.len(), 2);
    let ids: Vec<u64> = after.queues.iter().map(|q| q.queue_id).collect();
    assert_eq!(ids, vec![q1, q2]);
    assert_eq!(after.queues[0].def, qdef("/", "orders"));
    // Queue ids are never reused, even across restarts.
    let q3 = s.put_queue(&qdef("/", "new")).unwrap();
    assert!(q3 > q1 && q3 > q2);
}

#[test]
fn deletes_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let log = s.message_log();
    s.put_vhost(&VhostDef { name: "/".into(), ..Default::default() }).unwrap();
    s.put_vhost(&VhostDef { name: "v2".into(), ..Default::default() }).unwrap();
    s.put_exchange(&exchange("/", "x")).unwrap();
    s.put_exchange(&exchange("/", "y")).unwrap();
    let qa = s.put_queue(&qdef("/", "a")).unwrap();
    let qb = s.put_queue(&qdef("/", "b")).unwrap();
    let qv2 = s.put_queue(&qdef("v2", "a")).unwrap();
    s.put_binding(&binding("/", "x", "a", false, "k")).unwrap();
    s.put_binding(&binding("/", "x", "b", false, "k")).unwrap();
    s.put_binding(&binding("/", "y", "x", true, "k")).unwrap();
    s.put_binding(&binding("/", "y", "b", false, "k")).unwrap();
    s.put_binding(&binding("v2", "x", "a", false, "k")).unwrap();
    for (q, n) in [(qa, 5), (qb, 5), (qv2, 5)] {
        for i in 0..n {
            log.append_detached(q, i, rec(i));
        }
    }
    // Appends queued right before the delete are deleted with the queue.
    assert!(s.delete_queue("/", "a").unwrap());
    assert!(!s.delete_queue("/", "a").unwrap());
    assert_eq!(s.message_count(qa).unwrap(), 0);
    assert_eq!(s.message_count(qb).unwrap(), 5);
    let d = s.load_definitions().unwrap();
    assert_eq!(
        d.bindings.len(),
        4,
        "only the binding to /a went: {:?}",
        d.bindings
    );
    assert!(
        !d.bindings
            .iter()
            .any(|b| b.vhost == "/" && b.destination == "a")
    );

    // Deleting exchange x drops bindings from x and to x (y -> x).
    assert!(s.delete_exchange("/", "x").unwrap());
    let d = s.load_definitions().unwrap();
    assert_eq!(d.bindings.len(), 2, "{:?}", d.bindings);
    assert!(d.bindings.contains(&binding("/", "y", "b", false, "k")));
    assert!(d.bindings.contains(&binding("v2", "x", "a", false, "k")));
    assert!(
        s.delete_binding(&binding("/", "y", "b", false, "k"))
            .unwrap()
    );
    assert!(
        !s.delete_binding(&binding("/", "y", "b", false, "k"))
            .unwrap()
    );

    // Users take their permissions with them.
    s.put_user(&UserDef {
        name: "u".into(),
        password_hash: "x".into(),
        tags: vec![],
        ..Default::default()
    })
    .unwrap();
    for vh in ["/", "v2"] {
        s.put_permission(&PermissionDef {
            user: "u".into(),
            vhost: vh.into(),
            configure: "".into(),
            write: "".into(),
            read: "".into(),
        })
        .unwrap();
    }
    assert!(s.delete_permission("u", "/").unwrap());
    assert!(!s.delete_permission("u", "/").unwrap());
    assert_eq!(s.load_definitions().unwrap().permissions.len(), 1);
    assert!(s.delete_user("u").unwrap());
    assert!(s.load_definitions().unwrap().permissions.is_empty());

    // Deleting a vhost removes everything in it, messages included.
    assert!(s.delete_vhost("v2").unwrap());
    let d = s.load_definitions().unwrap();
    assert_eq!(d.vhosts, vec![VhostDef { name: "/".into(), ..Default::default() }]);
    assert!(d.queues.iter().all(|q| q.def.vhost == "/"));
    assert!(d.bindings.iter().all(|b| b.vhost == "/"));
    assert_eq!(s.message_count(qv2).unwrap(), 0);
    assert_eq!(s.message_count(qb).unwrap(), 5);
}

#[test]
fn messages_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q1 = s.put_queue(&qdef("/", "q1")).unwrap();
    let q2 = s.put_queue(&qdef("/", "q2")).unwrap();
    let log = s.message_log();
    // Seqs chosen so that little-endian byte order would differ from
    // numeric order; interleaved between two queues.
    let seqs: Vec<u64> = vec![1, 255, 256, 257, 65_535, 65_536, 1 << 40, u64::MAX - 1];
    let mut tickets = Vec::new();
    for &seq in seqs.iter().rev() {
        tickets.push(log.append(q1, seq, rec(seq)));
        tickets.push(log.append(q2, seq, rec(seq + 1)));
    }
    for t in tickets {
        t.wait().unwrap();
    }
    s.close().unwrap();

    let s = Store::open(dir.path()).unwrap();
    let got = s.load_queue_messages(q1).unwrap();
    assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs);
    for (seq, m) in &got {
        assert_eq!(m, &msg(*seq));
    }
    let got2 = s.load_queue_messages(q2).unwrap();
    assert_eq!(got2.len(), seqs.len());
    assert_eq!(got2[0].1, msg(2));
    assert_eq!(s.read_message(q1, 256).unwrap(), Some(msg(256)));
    assert_eq!(s.read_message(q1, 2).unwrap(), None);
    assert_eq!(s.message_count(q1).unwrap(), seqs.len() as u64);
}

#[test]
fn load_range_pages_through_a_queue() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let other = s.put_queue(&qdef("/", "other")).unwrap();
    let log = s.message_log();
    for i in 0..1000u64 {
        log.append_detached(q, i * 2, rec(i));
        log.append_detached(other, i, rec(i));
    }
    log.flush().wait().unwrap();
    let mut from = 0;
    let mut seen = Vec::new();
    loop {
        let page = s.load_range(q, from, 64).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 64);
        from = page.last().unwrap().0 + 1;
        seen.extend(page.into_iter().map(|(seq, m)| {
            assert_eq!(m, msg(seq / 2));
            seq
        }));
    }
    assert_eq!(seen, (0..1000u64).map(|i| i * 2).collect::<Vec<_>>());
    let idx = s.load_index(q, 10, 3).unwrap();
    assert_eq!(
        idx,
        vec![
            (10, rec(5).len() as u32),
            (12, rec(6).len() as u32),
            (14, rec(7).len() as u32)
        ]
    );
    assert!(s.load_range(q, 0, 0).unwrap().is_empty());
}

#[test]
fn ticket_resolves_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    let commits_before = s.stats().commits;

    // Hold redb's write lock: the writer cannot commit, so the ticket must
    // stay pending.
    let base = s.stats().batches;
    let blocker = s.db.get().unwrap().begin_write().unwrap();
    let mut t = log.append(q, 1, rec(1));
    wait_batches(&s, base + 1);
    std::thread::sleep(Duration::from_millis(50));
    let waker = futures_lite::future::block_on(futures_lite::future::poll_once(&mut t));
    assert!(waker.is_none(), "ticket resolved before commit");
    assert_eq!(s.read_message(q, 1).unwrap(), None);
    drop(blocker);

    t.wait().unwrap();
    assert!(s.stats().commits > commits_before);
    // Visible to a fresh read transaction as soon as the ticket resolved.
    assert_eq!(s.read_message(q, 1).unwrap(), Some(msg(1)));

    // The callback form.
    let (tx, rx) = std::sync::mpsc::channel();
    log.append_then(q, 2, rec(2), move |r| tx.send(r.is_ok()).unwrap());
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    assert_eq!(s.read_message(q, 2).unwrap(), Some(msg(2)));
}

/// A closure a commit callback defers with `at_batch_end` runs after every callback of the batch
/// (so it sees all of them), once per deferral; outside a callback it runs at once.
#[test]
fn at_batch_end_runs_after_every_callback_of_the_batch() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let log = s.message_log();
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    // Hold the writer in a commit callback of an earlier batch until every append below is
    // queued, so that they form the next batch together.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (in_tx, in_rx) = std::sync::mpsc::channel::<()>();
    log.append_then(1, 1, rec(1), move |_| {
        in_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    in_rx.recv().unwrap();
    for i in 2..=4u64 {
        let e = events.clone();
        log.append_then(1, i, rec(i), move |r| {
            r.unwrap();
            e.lock().unwrap().push(format!("done {i}"));
            let e2 = e.clone();
            crate::store::writer::at_batch_end(move || e2.lock().unwrap().push(format!("end {i}")));
        });
    }
    go_tx.send(()).unwrap();
    // Not `log.flush().wait()`: a flush queued before the writer takes the batch joins it, and
    // its completion is one of the batch's, so it can wake this thread before the end closures
    // run. Wait for the closures themselves (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.lock().unwrap().len() < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(*events.lock().unwrap(), ["done 2", "done 3", "done 4", "end 2", "end 3", "end 4"]);
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    crate::store::writer::at_batch_end(move || {
        r2.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn ticket_works_in_async_code() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let log = s.message_log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let t1 = log.append(7, 1, rec(1));
        let t2 = log.append(7, 2, rec(2));
        t1.await.unwrap();
        t2.await.unwrap();
        log.flush().await.unwrap();
    });
    assert_eq!(s.message_count(7).unwrap(), 2);
}

#[test]
fn append_and_remove_in_one_batch_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    let base = s.stats();

    // Stall the writer on batch N (a flush needs no transaction, so use a
    // purge of an empty queue, which does) to make the next ops one batch.
    let blocker = s.db.get().unwrap().begin_write().unwrap();
    let stall = log.purge_queue(999);
    wait_batches(&s, base.batches + 1);
    let t1 = log.append(q, 1, rec(1));
    log.remove(q, 1);
    let t2 = log.append(q, 2, rec(2));
    // remove -> append -> remove of one key: must still end up deleted.
    log.remove(q, 3);
    log.append_detached(q, 3, rec(3));
    log.remove(q, 3);
    std::thread::sleep(Duration::from_millis(20));
    drop(blocker);
    stall.wait().unwrap();
    t1.wait().unwrap();
    t2.wait().unwrap();

    let st = s.stats();
    assert_eq!(st.batches - base.batches, 2, "{st:?}");
    assert_eq!(st.cancelled - base.cancelled, 1, "{st:?}");
    assert_eq!(st.records_written - base.records_written, 1, "{st:?}");
    assert_eq!(s.read_message(q, 1).unwrap(), None);
    assert_eq!(s.read_message(q, 2).unwrap(), Some(msg(2)));
    assert_eq!(s.read_message(q, 3).unwrap(), None);

    // A batch whose appends are all cancelled commits nothing at all.
    let before = s.stats();
    let blocker = s.db.get().unwrap().begin_write().unwrap();
    let stall = log.purge_queue(999);
    wait_batches(&s, before.batches + 1);
    let t = log.append(q, 10, rec(10));
    log.remove(q, 10);
    drop(blocker);
    stall.wait().unwrap();
    t.wait().unwrap();
    let after = s.stats();
    assert_eq!(after.commits - before.commits, 1, "only the stall's commit");
    assert_eq!(after.records_written, before.records_written);
}

#[test]
fn remove_of_committed_message_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    for i in 0..10 {
        log.append(q, i, rec(i)).wait().unwrap();
    }
    log.remove(q, 3);
    log.remove(q, 7);
    log.remove(q, 100); // unknown: harmless
    log.flush().wait().unwrap();
    assert_eq!(s.read_message(q, 3).unwrap(), None);
    s.close().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let seqs: Vec<u64> = s
        .load_queue_messages(q)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 4, 5, 6, 8, 9]);
}

#[test]
fn purge_removes_committed_and_queued_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let other = s.put_queue(&qdef("/", "other")).unwrap();
    let log = s.message_log();
    for i in 0..50 {
        log.append_detached(q, i, rec(i));
        log.append_detached(other, i, rec(i));
    }
    log.flush().wait().unwrap();
    for i in 50..60 {
        log.append_detached(q, i, rec(i));
    }
    let p = log.purge_queue(q);
    log.append_detached(q, 60, rec(60)); // after the purge: kept
    p.wait().unwrap();
    log.flush().wait().unwrap();
    let left: Vec<u64> = s
        .load_queue_messages(q)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(left, vec![60]);
    assert_eq!(s.message_count(other).unwrap(), 50);
}

#[test]
fn ops_after_close_fail_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let log = s.message_log();
    log.append(1, 1, rec(1)).wait().unwrap();
    s.close().unwrap();
    assert!(matches!(
        log.append(1, 2, rec(2)).wait(),
        Err(StoreError::Closed)
    ));
    assert!(matches!(log.flush().wait(), Err(StoreError::Closed)));
    assert_eq!(log.pending_bytes(), 0);
}

#[test]
fn messages_of_unknown_queues_are_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    log.append_detached(q, 1, rec(1));
    log.append_detached(q + 100, 1, rec(1));
    log.append_detached(u64::MAX, 1, rec(1));
    log.flush().wait().unwrap();
    assert_eq!(s.total_message_count().unwrap(), 3);
    s.close().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.total_message_count().unwrap(), 1);
    assert_eq!(s.message_count(q).unwrap(), 1);
}

#[test]
fn garbage_file_is_refused_and_left_alone() {
    for garbage in [
        b"hello".to_vec(),
        b"PK\x03\x04 this is a zip file, not a database".repeat(200),
        vec![0u8; 8192],
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), &garbage).unwrap();
        let err = Store::open(dir.path()).err().expect("must refuse");
        assert!(matches!(err, StoreError::NotAWarrenFile { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(FILE_NAME), "error names the file: {text}");
        assert_eq!(file_bytes(dir.path()), garbage, "file modified");
    }
}

#[test]
fn foreign_redb_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let db = redb::Database::create(&path).unwrap();
        let t = db.begin_write().unwrap();
        {
            const OTHER: TableDefinition<&str, u64> = TableDefinition::new("someone-elses");
            t.open_table(OTHER).unwrap().insert("k", &1).unwrap();
        }
        t.commit().unwrap();
    }
    let before = file_bytes(dir.path());
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, StoreError::NotAWarrenFile { .. }), "{err:?}");
    assert!(err.to_string().contains(FILE_NAME));
    assert_eq!(file_bytes(dir.path()), before);
}

#[test]
fn other_format_version_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    {
        let db = redb::Database::open(dir.path().join(FILE_NAME)).unwrap();
        let t = db.begin_write().unwrap();
        t.open_table(META)
            .unwrap()
            .insert(META_VERSION, &2u32.to_le_bytes()[..])
            .unwrap();
        t.commit().unwrap();
    }
    let before = file_bytes(dir.path());
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(
        matches!(
            err,
            StoreError::FormatVersion {
                found: 2,
                expected: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(FILE_NAME));
    assert_eq!(file_bytes(dir.path()), before);
}

/// A real store, closed cleanly, with some data in it.
fn populated_store(dir: &Path) -> Vec<u8> {
    let s = Store::open(dir).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    for i in 0..2000 {
        log.append_detached(q, i, rec(i));
    }
    log.flush().wait().unwrap();
    s.close().unwrap();
    file_bytes(dir)
}

#[test]
fn truncated_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let full = populated_store(dir.path());
    assert!(full.len() > 64 * 1024, "{}", full.len());
    for keep in [full.len() / 2, 4096, 600, 100, 12] {
        let cut = full[..keep].to_vec();
        std::fs::write(dir.path().join(FILE_NAME), &cut).unwrap();
        let r = Store::open(dir.path());
        let err = r
            .err()
            .unwrap_or_else(|| panic!("opened a file cut to {keep} bytes"));
        assert!(
            matches!(
                err,
                StoreError::Corrupt { .. } | StoreError::NotAWarrenFile { .. }
            ),
            "cut to {keep}: {err:?}"
        );
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        assert_eq!(file_bytes(dir.path()), cut, "cut to {keep}: file modified");
    }
}

#[test]
fn second_open_reports_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
}

/// A copy of the file taken while the store is open and busy is what a
/// crash (kill -9) leaves: every message whose ticket resolved is in it.
#[test]
fn crash_image_keeps_every_confirmed_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    let confirmed = Arc::new(AtomicUsize::new(0));
    for i in 0..3000u64 {
        let c = confirmed.clone();
        log.append_then(q, i, rec(i), move |r| {
            r.unwrap();
            c.fetch_max(i as usize + 1, Ordering::SeqCst);
        });
        if i % 1000 == 999 {
            log.flush().wait().unwrap();
        }
    }
    log.flush().wait().unwrap();
    // Keep writing while the image is taken.
    for i in 3000..6000u64 {
        log.append_detached(q, i, rec(i));
    }
    // Holding redb's write lock freezes the file between two commits, so
    // the copy is a point-in-time image like the one a crash leaves.
    let blocker = s.db.get().unwrap().begin_write().unwrap();
    let n_confirmed = confirmed.load(Ordering::SeqCst);
    let crash_dir = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join(FILE_NAME), crash_dir.path().join(FILE_NAME)).unwrap();
    drop(blocker);
    log.flush().wait().unwrap();

    let r = Store::open(crash_dir.path()).unwrap();
    let got = r.load_queue_messages(q).unwrap();
    assert!(got.len() >= n_confirmed, "{} < {n_confirmed}", got.len());
    for (i, (seq, m)) in got.iter().enumerate() {
        assert_eq!(*seq, i as u64, "gap or disorder");
        assert_eq!(m, &msg(*seq));
    }
    drop(s);
}

#[test]
fn eight_threads_appending_ten_thousand_each() {
    const THREADS: u64 = 8;
    const PER: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let queues: Vec<u64> = (0..THREADS)
        .map(|t| s.put_queue(&qdef("/", &format!("q{t}"))).unwrap())
        .collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = s.message_log();
            let q = queues[(t % 4) as usize]; // two threads share each queue
            std::thread::spawn(move || {
                let mut tickets = Vec::with_capacity(PER as usize);
                for i in 0..PER {
                    let seq = t * PER + i;
                    tickets.push(log.append(q, seq, rec(seq)));
                    if tickets.len() == 256 {
                        for t in tickets.drain(..) {
                            t.wait().unwrap();
                        }
                    }
                }
                for t in tickets {
                    t.wait().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let st = s.stats();
    assert_eq!(st.appends, THREADS * PER);
    assert!(st.max_batch > 1, "no batching at all: {st:?}");
    s.close().unwrap();

    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.total_message_count().unwrap(), THREADS * PER);
    for (qi, &q) in queues.iter().enumerate().take(4) {
        let got = s.load_queue_messages(q).unwrap();
        let want: Vec<u64> = [qi as u64, qi as u64 + 4]
            .iter()
            .flat_map(|t| t * PER..(t + 1) * PER)
            .collect();
        assert_eq!(got.len(), want.len());
        assert!(got.iter().map(|(s, _)| *s).eq(want.iter().copied()));
        for (seq, m) in got.iter().step_by(997) {
            assert_eq!(m, &msg(*seq));
        }
    }
}

/// A failure anywhere in a batch fails every ticket of that batch (nothing
/// of it is written), and the writer carries on with the next batch.
#[test]
fn failed_batch_fails_all_its_tickets_and_writer_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path()).unwrap());
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    // Plant an undecodable queue record: re-putting that queue fails.
    {
        let t = s.db.get().unwrap().begin_write().unwrap();
        t.open_table(QUEUES)
            .unwrap()
            .insert(("/", "bad"), &b"not json"[..])
            .unwrap();
        t.commit().unwrap();
    }
    let base = s.stats();
    let blocker = s.db.get().unwrap().begin_write().unwrap();
    let stall = log.purge_queue(999);
    wait_batches(&s, base.batches + 1);
    let t1 = log.append(q, 1, rec(1));
    let s2 = s.clone();
    let def = std::thread::spawn(move || s2.put_queue(&qdef("/", "bad")));
    let t0 = Instant::now();
    while s.stats().ops < base.ops + 1 && t0.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50)); // let the def op enqueue
    let t2 = log.append(q, 2, rec(2));
    drop(blocker);
    stall.wait().unwrap();
    assert!(matches!(
        def.join().unwrap(),
        Err(StoreError::Record { .. })
    ));
    assert!(t1.wait().is_err());
    assert!(t2.wait().is_err());
    assert!(s.stats().failed_batches > base.failed_batches);
    assert_eq!(s.read_message(q, 1).unwrap(), None);
    // Next batch is fine.
    log.append(q, 3, rec(3)).wait().unwrap();
    assert_eq!(s.read_message(q, 3).unwrap(), Some(msg(3)));
}

/// A crash image (unclean shutdown) opens, after redb's repair, with all its
/// committed data; cut short it is refused or, if redb can repair it, opens
/// with every committed message intact.
#[test]
fn crash_image_cut_short_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    for i in 0..2000 {
        log.append_detached(q, i, rec(i));
    }
    log.flush().wait().unwrap();
    let blocker = s.db.get().unwrap().begin_write().unwrap();
    let image = file_bytes(dir.path());
    drop(blocker);
    drop(s);
    for keep in [image.len() / 2, image.len() - 4096, 8192] {
        let d = tempfile::tempdir().unwrap();
        let cut = image[..keep].to_vec();
        std::fs::write(d.path().join(FILE_NAME), &cut).unwrap();
        match Store::open(d.path()) {
            Ok(s) => {
                // redb's crash repair may accept a cut that only lost free
                // pages at the end; then every committed message must be
                // intact (what it must never do is open with data missing).
                let got = s.load_queue_messages(q).unwrap();
                assert_eq!(got.len(), 2000, "cut to {keep}: data lost");
                assert!(
                    got.iter()
                        .enumerate()
                        .all(|(i, (seq, m))| *seq == i as u64 && *m == msg(*seq))
                );
                eprintln!("cut to {keep}: repaired, all data intact");
            }
            Err(e) => {
                assert!(e.to_string().contains(FILE_NAME), "{e}");
                eprintln!("cut to {keep}: {e}");
                let now = file_bytes(d.path());
                if now != cut {
                    let first = now.iter().zip(&cut).position(|(a, b)| a != b);
                    panic!(
                        "cut to {keep}: file modified: len {} -> {}, first diff at {first:?}",
                        cut.len(),
                        now.len()
                    );
                }
            }
        }
    }
    // The uncut image opens and holds everything.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(FILE_NAME), &image).unwrap();
    let s = Store::open(d.path()).unwrap();
    assert_eq!(s.message_count(q).unwrap(), 2000);
}

/// Definition changes are not starved by a flood of message writes.
#[test]
fn definitions_not_starved_by_message_flood() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let floods: Vec<_> = (0..2u64)
        .map(|t| {
            let log = s.message_log();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    log.append_detached(q, (t << 32) | i, rec(i));
                    i += 1;
                    if i % 2048 == 0 {
                        log.flush().wait().unwrap();
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t0 = Instant::now();
        s.put_exchange(&exchange("/", &format!("x{i}"))).unwrap();
        worst = worst.max(t0.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        f.join().unwrap();
    }
    assert_eq!(s.load_definitions().unwrap().exchanges.len(), 20);
    assert!(
        worst < Duration::from_secs(2),
        "slowest definition write {worst:?}"
    );
    eprintln!("slowest definition write under load: {worst:?}");
}

/// A tmpfs mounted for one test (needs root; `None` where the sandbox does not allow it).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// ENOSPC on a small tmpfs: the batch that hit it fails (its tickets get `Err`, a publisher's
/// confirm is a nack), later writes fail while the disk stays full, and once space is freed the
/// writer has reopened the database and writes succeed again; every message confirmed before is
/// still there after a restart.
#[test]
fn writer_recovers_after_enospc_once_space_is_back() {
    let Some(fs) = Tmpfs::mount("8m") else {
        // Not root: this environment cannot create a full disk. CI runs as root.
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let data = fs.path().join("data");
    let store = Store::open(&data).unwrap();
    let qid = store.put_queue(&qdef("/", "q")).unwrap();
    let log = store.message_log();
    // Leave about 1.5 MiB for the database.
    let filler = fs.path().join("filler");
    let room = crate::alarm::disk_free(fs.path()).unwrap().saturating_sub(3 << 19);
    std::fs::write(&filler, vec![7u8; room as usize]).unwrap();

    let body = Bytes::from(vec![1u8; 64 << 10]);
    let record = |i: u64| {
        StoredMessage { exchange: "".into(), routing_key: format!("{i}"), properties: Bytes::new(), body: body.clone(), delivered: false }
            .encode()
            .unwrap()
    };
    let mut confirmed = Vec::new();
    let mut seq = 0;
    let first_error = loop {
        seq += 1;
        assert!(seq < 10_000, "the disk never filled up");
        match log.append(qid, seq, record(seq)).wait() {
            Ok(()) => confirmed.push(seq),
            Err(e) => break e,
        }
    };
    eprintln!("ENOSPC after {} confirmed appends: {first_error}", confirmed.len());
    assert!(!confirmed.is_empty());
    // Still full: writes keep failing (nacked), the writer keeps running.
    seq += 1;
    assert!(log.append(qid, seq, record(seq)).wait().is_err(), "a write succeeded on a full disk");

    // Space is back: the next write succeeds (the writer reopened the database).
    std::fs::remove_file(&filler).unwrap();
    seq += 1;
    log.append(qid, seq, record(seq)).wait().expect("write after space came back");
    confirmed.push(seq);
    assert!(store.stats().reopens >= 1, "{:?}", store.stats());
    // Reads work on the reopened database.
    assert!(store.message_count(qid).unwrap() >= confirmed.len() as u64);
    drop(log);
    store.close().unwrap();

    let store = Store::open(&data).unwrap();
    let seqs: Vec<u64> = store.load_index(qid, 0, usize::MAX).unwrap().into_iter().map(|(s, _)| s).collect();
    // A nacked append may or may not be there (at-least-once); every confirmed one is.
    let missing: Vec<u64> = confirmed.iter().copied().filter(|s| !seqs.contains(s)).collect();
    assert!(missing.is_empty(), "confirmed messages lost: {missing:?}");
}

/// `remove_range` deletes the messages of a range that exist (committed in earlier batches, or
/// appended earlier in the same batch), leaves the keys around it, and an append of a key in
/// the range later in the same batch still lands.
#[test]
fn remove_range_deletes_a_run_of_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let other = s.put_queue(&qdef("/", "other")).unwrap();
    let log = s.message_log();
    for i in 1..=100 {
        log.append_detached(q, i, rec(i));
        log.append_detached(other, i, rec(i));
    }
    log.flush().wait().unwrap();
    let base = s.stats();
    // One batch: an append inside the range before the removal (cancelled), one after (kept).
    let blocker = s.db.get().unwrap().begin_write().unwrap();
    let stall = log.purge_queue(999);
    wait_batches(&s, base.batches + 1);
    log.append_detached(q, 150, rec(150));
    log.remove_range(q, 10, 141); // 10..151
    log.append_detached(q, 120, rec(120));
    log.remove_range(q, 5, 0); // nothing
    std::thread::sleep(Duration::from_millis(20));
    drop(blocker);
    stall.wait().unwrap();
    log.flush().wait().unwrap();
    let left: Vec<u64> = s.load_index(q, 0, usize::MAX).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, (1..10).chain([120]).collect::<Vec<_>>());
    assert_eq!(s.message_count(other).unwrap(), 100, "other queues keep their messages");
    assert_eq!(s.read_message(q, 120).unwrap(), Some(msg(120)));
}

/// `read_batch` gives one element per asked sequence number, `None` where no record is, both
/// when it scans a dense range and when it looks sparse numbers up one by one.
#[test]
fn read_batch_dense_and_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let log = s.message_log();
    for i in 1..=20 {
        if i != 4 && i != 6 {
            log.append_detached(q, i, rec(i));
        }
    }
    log.flush().wait().unwrap();
    let get = |seqs: &[u64]| -> Vec<Option<u64>> {
        let r = log.read_batch(q, seqs).unwrap();
        assert_eq!(r.len(), seqs.len());
        seqs.iter().zip(r).map(|(&k, m)| m.map(|m| { assert_eq!(m, msg(k)); k })).collect()
    };
    assert_eq!(get(&[1, 2, 3, 4, 5, 7, 9]), vec![Some(1), Some(2), Some(3), None, Some(5), Some(7), Some(9)]);
    assert_eq!(get(&[4, 5, 6]), vec![None, Some(5), None]);
    assert_eq!(get(&[19, 20, 21, 22]), vec![Some(19), Some(20), None, None]);
    assert_eq!(get(&[1, 20]), vec![Some(1), Some(20)]);
    assert_eq!(get(&[6]), vec![None]);
    assert_eq!(get(&[]), Vec::<Option<u64>>::new());
    // Not ascending (messages of several priority levels): each still gets its own record.
    assert_eq!(get(&[5, 3, 7, 6]), vec![Some(5), Some(3), Some(7), None]);
    assert_eq!(get(&[3, 3]), vec![Some(3), Some(3)]);
}

/// Removes of consecutive keys in one batch (applied as ranges) delete exactly those records,
/// count them once, and leave an append between them and the keys of other queues alone.
#[test]
fn consecutive_removes_in_one_batch_delete_exactly_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let q = s.put_queue(&qdef("/", "q")).unwrap();
    let other = s.put_queue(&qdef("/", "other")).unwrap();
    let log = s.message_log();
    for i in 1..=60 {
        log.append_detached(q, i, rec(i));
        log.append_detached(other, i, rec(i));
    }
    log.flush().wait().unwrap();
    let base = s.stats();
    let blocker = s.db.get().unwrap().begin_write().unwrap();
    let stall = log.purge_queue(999);
    wait_batches(&s, base.batches + 1);
    for i in (1..=40).filter(|&i| i != 20) {
        log.remove(q, i);
    }
    log.append_detached(q, 100, rec(100));
    log.remove(q, 70); // never stored
    log.remove(other, 60);
    std::thread::sleep(Duration::from_millis(20));
    drop(blocker);
    stall.wait().unwrap();
    log.flush().wait().unwrap();
    let left: Vec<u64> = s.load_index(q, 0, usize::MAX).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, [20].into_iter().chain(41..=60).chain([100]).collect::<Vec<_>>());
    assert_eq!(s.message_count(other).unwrap(), 59);
    assert_eq!(s.stats().records_deleted - base.records_deleted, 40);
}
