//! Exchanges: declare/delete semantics, reserved names, e2e bindings and routing by type.
use crate::common;
use amq_protocol::types::AMQPValue;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use std::collections::BTreeSet;

fn passive() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { passive: true, ..Default::default() }
}

async fn declare(ch: &lapin::Channel, name: &str, kind: ExchangeKind, o: ExchangeDeclareOptions) -> lapin::Result<()> {
    timeout(ch.exchange_declare(name.into(), kind, o, FieldTable::default())).await
}

#[tokio::test]
async fn declare_variants_and_passive() {
    let b = TestBroker::start().await;
    let (_c, ch) = b.channel().await;
    let mut names = Vec::new();
    for (kind, o) in [
        (ExchangeKind::Direct, ExchangeDeclareOptions::default()),
        (ExchangeKind::Fanout, ExchangeDeclareOptions { durable: true, ..Default::default() }),
        (ExchangeKind::Topic, ExchangeDeclareOptions { auto_delete: true, ..Default::default() }),
        (ExchangeKind::Headers, ExchangeDeclareOptions { internal: true, ..Default::default() }),
    ] {
        let n = uniq("x-decl");
        declare(&ch, &n, kind.clone(), o).await.unwrap();
        // Redeclaring with identical settings is fine.
        declare(&ch, &n, kind, o).await.unwrap();
        // Passive ignores type and flags.
        declare(&ch, &n, ExchangeKind::Direct, passive()).await.unwrap();
        names.push(n);
    }
    for n in &names {
        timeout(ch.exchange_delete(n.as_str().into(), Default::default())).await.unwrap();
    }
    let missing = uniq("x-missing");
    let r = declare(&ch, &missing, ExchangeKind::Direct, passive()).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no exchange '{missing}' in vhost '/'"));
    b.stop().await;
}

#[tokio::test]
async fn equivalence_errors_are_406() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let n = uniq("x-eq");
    let ch = timeout(conn.create_channel()).await.unwrap();
    declare(&ch, &n, ExchangeKind::Direct, Default::default()).await.unwrap();

    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = declare(&ch, &n, ExchangeKind::Direct, ExchangeDeclareOptions { durable: true, ..Default::default() }).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{n}' in vhost '/': received 'true' but current is 'false'"));

    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = declare(&ch, &n, ExchangeKind::Fanout, Default::default()).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{n}' in vhost '/': received 'fanout' but current is 'direct'"));

    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = declare(&ch, &n, ExchangeKind::Direct, ExchangeDeclareOptions { auto_delete: true, ..Default::default() }).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange '{n}' in vhost '/': received 'true' but current is 'false'"));

    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = declare(&ch, &n, ExchangeKind::Direct, ExchangeDeclareOptions { internal: true, ..Default::default() }).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - inequivalent arg 'internal' for exchange '{n}' in vhost '/': received 'true' but current is 'false'"));

    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.exchange_delete(n.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn reserved_amq_prefix_is_403() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let n = format!("amq.{}", uniq("foo"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = declare(&ch, &n, ExchangeKind::Direct, Default::default()).await;
    assert_amqp_err(r, 403, &format!("ACCESS_REFUSED - exchange name '{n}' contains reserved prefix 'amq.*'"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = declare(&ch, &n, ExchangeKind::Direct, passive()).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no exchange '{n}' in vhost '/'"));
    b.stop().await;
}

#[tokio::test]
async fn predeclared_exchanges_exist() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    for n in ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"] {
        declare(&ch, n, ExchangeKind::Direct, passive()).await.unwrap_or_else(|e| panic!("{n}: {e:?}"));
    }
    // Redeclaring with the right type and durable=true is allowed.
    declare(&ch, "amq.direct", ExchangeKind::Direct, ExchangeDeclareOptions { durable: true, ..Default::default() }).await.unwrap();
    declare(&ch, "amq.match", ExchangeKind::Headers, ExchangeDeclareOptions { durable: true, ..Default::default() }).await.unwrap();
    let r = declare(&ch, "amq.direct", ExchangeKind::Direct, Default::default()).await;
    assert_amqp_err(r, 406, "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '/': received 'false' but current is 'true'");
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = declare(&ch, "amq.direct", ExchangeKind::Fanout, ExchangeDeclareOptions { durable: true, ..Default::default() }).await;
    assert_amqp_err(r, 406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in vhost '/': received 'fanout' but current is 'direct'");
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch.exchange_delete("amq.direct".into(), Default::default())).await;
    assert_amqp_err(r, 403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed");
    b.stop().await;
}

#[tokio::test]
async fn delete_if_unused_and_idempotent_delete() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let x = uniq("x-del");
    declare(&ch, &x, ExchangeKind::Direct, Default::default()).await.unwrap();
    let q = temp_queue(&ch).await;
    timeout(ch.queue_bind(q.as_str().into(), x.as_str().into(), "k".into(), Default::default(), FieldTable::default())).await.unwrap();
    let r = timeout(ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions { if_unused: true, ..Default::default() })).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"));
    let ch = timeout(conn.create_channel()).await.unwrap();
    // Still there; a plain delete works; deleting again (missing) is fine.
    declare(&ch, &x, ExchangeKind::Direct, passive()).await.unwrap();
    timeout(ch.exchange_delete(x.as_str().into(), Default::default())).await.unwrap();
    timeout(ch.exchange_delete(x.as_str().into(), Default::default())).await.unwrap();
    let r = declare(&ch, &x, ExchangeKind::Direct, passive()).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"));
    // An unused exchange can be deleted with if-unused.
    let ch = timeout(conn.create_channel()).await.unwrap();
    declare(&ch, &x, ExchangeKind::Fanout, Default::default()).await.unwrap();
    timeout(ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions { if_unused: true, ..Default::default() })).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = timeout(conn.create_channel()).await.unwrap();
    let x = uniq("x-ad");
    let ad = ExchangeDeclareOptions { auto_delete: true, ..Default::default() };
    declare(&ch, &x, ExchangeKind::Direct, ad).await.unwrap();
    let q = temp_queue(&ch).await;
    timeout(ch.queue_bind(q.as_str().into(), x.as_str().into(), "a".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_bind(q.as_str().into(), x.as_str().into(), "b".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_unbind(q.as_str().into(), x.as_str().into(), "a".into(), FieldTable::default())).await.unwrap();
    declare(&ch, &x, ExchangeKind::Direct, passive()).await.expect("one binding left");
    timeout(ch.queue_unbind(q.as_str().into(), x.as_str().into(), "b".into(), FieldTable::default())).await.unwrap();
    let r = declare(&ch, &x, ExchangeKind::Direct, passive()).await;
    assert_amqp_err(r, 404, &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"));
    // A never-bound auto-delete exchange stays.
    let ch = timeout(conn.create_channel()).await.unwrap();
    let y = uniq("x-ad2");
    declare(&ch, &y, ExchangeKind::Fanout, ad).await.unwrap();
    tokio::time::sleep(QUIET).await;
    declare(&ch, &y, ExchangeKind::Fanout, passive()).await.unwrap();
    timeout(ch.exchange_delete(y.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn default_exchange_operations_are_403() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let text = "ACCESS_REFUSED - operation not permitted on the default exchange";
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(declare(&ch, "", ExchangeKind::Direct, Default::default()).await, 403, text);
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(timeout(ch.exchange_delete("".into(), Default::default())).await, 403, text);
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = temp_queue(&ch).await;
    assert_amqp_err(
        timeout(ch.queue_bind(q.as_str().into(), "".into(), "k".into(), Default::default(), FieldTable::default())).await,
        403,
        text,
    );
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(
        timeout(ch.queue_unbind(q.as_str().into(), "".into(), q.as_str().into(), FieldTable::default())).await,
        403,
        text,
    );
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(
        timeout(ch.exchange_bind("amq.fanout".into(), "".into(), "k".into(), Default::default(), FieldTable::default())).await,
        403,
        text,
    );
    let ch = timeout(conn.create_channel()).await.unwrap();
    assert_amqp_err(
        timeout(ch.exchange_bind("".into(), "amq.fanout".into(), "k".into(), Default::default(), FieldTable::default())).await,
        403,
        text,
    );
    // Publishing through the default exchange routes by queue name.
    let ch = confirm_channel(&conn).await;
    publish_c(&ch, "", &q, b"hello", Default::default()).await;
    assert_eq!(drain(&ch, &q).await, vec!["hello"]);
    b.stop().await;
}

#[tokio::test]
async fn exchange_to_exchange_bindings_route_through_two_hops() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let x1 = uniq("e2e-src");
    let x2 = uniq("e2e-dst");
    declare(&ch, &x1, ExchangeKind::Direct, Default::default()).await.unwrap();
    declare(&ch, &x2, ExchangeKind::Fanout, Default::default()).await.unwrap();
    let q = temp_queue(&ch).await;
    let both = temp_queue(&ch).await;
    timeout(ch.exchange_bind(x2.as_str().into(), x1.as_str().into(), "k".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_bind(q.as_str().into(), x2.as_str().into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    // `both` is reachable directly and through x2: it must get one copy.
    timeout(ch.queue_bind(both.as_str().into(), x1.as_str().into(), "k".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_bind(both.as_str().into(), x2.as_str().into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    publish_c(&ch, &x1, "k", b"m1", Default::default()).await;
    publish_c(&ch, &x1, "other", b"m2", Default::default()).await;
    assert_eq!(drain(&ch, &q).await, vec!["m1"]);
    assert_eq!(drain(&ch, &both).await, vec!["m1"]);
    // A cycle ends.
    timeout(ch.exchange_bind(x1.as_str().into(), x2.as_str().into(), "k".into(), Default::default(), FieldTable::default())).await.unwrap();
    publish_c(&ch, &x1, "k", b"m3", Default::default()).await;
    assert_eq!(drain(&ch, &q).await, vec!["m3"]);
    assert_eq!(drain(&ch, &both).await, vec!["m3"]);
    timeout(ch.exchange_unbind(x1.as_str().into(), x2.as_str().into(), "k".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.exchange_unbind(x2.as_str().into(), x1.as_str().into(), "k".into(), Default::default(), FieldTable::default())).await.unwrap();
    publish_c(&ch, &x1, "k", b"m4", Default::default()).await;
    assert!(drain(&ch, &q).await.is_empty(), "unbound: nothing reaches x2");
    assert_eq!(drain(&ch, &both).await, vec!["m4"]);
    // Unbinding something that does not exist is fine.
    timeout(ch.exchange_unbind(x2.as_str().into(), x1.as_str().into(), "nope".into(), Default::default(), FieldTable::default())).await.unwrap();
    for x in [&x1, &x2] {
        timeout(ch.exchange_delete(x.as_str().into(), Default::default())).await.unwrap();
    }
    b.stop().await;
}

#[tokio::test]
async fn direct_and_fanout_routing() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let xd = uniq("direct");
    let xf = uniq("fanout");
    declare(&ch, &xd, ExchangeKind::Direct, Default::default()).await.unwrap();
    declare(&ch, &xf, ExchangeKind::Fanout, Default::default()).await.unwrap();
    let qa = temp_queue(&ch).await;
    let qb = temp_queue(&ch).await;
    timeout(ch.queue_bind(qa.as_str().into(), xd.as_str().into(), "a".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_bind(qb.as_str().into(), xd.as_str().into(), "b".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_bind(qb.as_str().into(), xd.as_str().into(), "A".into(), Default::default(), FieldTable::default())).await.unwrap();
    for k in ["a", "b", "A", "c", "a.b", ""] {
        publish_c(&ch, &xd, k, k.as_bytes(), Default::default()).await;
    }
    assert_eq!(drain(&ch, &qa).await, vec!["a"]);
    assert_eq!(drain(&ch, &qb).await, vec!["b", "A"]);

    timeout(ch.queue_bind(qa.as_str().into(), xf.as_str().into(), "ignored".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.queue_bind(qb.as_str().into(), xf.as_str().into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    publish_c(&ch, &xf, "whatever", b"f1", Default::default()).await;
    publish_c(&ch, &xf, "", b"f2", Default::default()).await;
    assert_eq!(drain(&ch, &qa).await, vec!["f1", "f2"]);
    assert_eq!(drain(&ch, &qb).await, vec!["f1", "f2"]);
    for x in [&xd, &xf] {
        timeout(ch.exchange_delete(x.as_str().into(), Default::default())).await.unwrap();
    }
    b.stop().await;
}

#[tokio::test]
async fn topic_routing_matches_rabbitmq() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let x = uniq("topic");
    declare(&ch, &x, ExchangeKind::Topic, Default::default()).await.unwrap();
    let keys = ["", "a", "a.b", "a.b.c", "a.c", "b.a", "a..b", "a.x.b", ".", "a.", ".a", "a.b.b.c", "ab"];
    // (pattern, expected keys) as observed on RabbitMQ 3.10 (reference §3).
    let cases: &[(&str, &[&str])] = &[
        ("*", &["a", "ab"]),
        ("#", &keys),
        ("#.#", &keys),
        ("a.*", &["a.b", "a.c", "a."]),
        ("a.#", &["a", "a.b", "a.b.c", "a.c", "a..b", "a.x.b", "a.", "a.b.b.c"]),
        ("#.a", &["a", "b.a", ".a"]),
        ("*.a", &["b.a", ".a"]),
        ("a.#.c", &["a.b.c", "a.c", "a.b.b.c"]),
        ("*.*", &["a.b", "a.c", "b.a", ".", "a.", ".a"]),
        ("a.*.b", &["a..b", "a.x.b"]),
        ("", &[""]),
        ("#.b.#", &["a.b", "a.b.c", "b.a", "a..b", "a.x.b", "a.b.b.c"]),
        ("a.b", &["a.b"]),
    ];
    let mut queues = Vec::new();
    for (pattern, _) in cases {
        let q = temp_queue(&ch).await;
        timeout(ch.queue_bind(q.as_str().into(), x.as_str().into(), (*pattern).into(), Default::default(), FieldTable::default())).await.unwrap();
        queues.push(q);
    }
    for k in keys {
        publish_c(&ch, &x, k, k.as_bytes(), Default::default()).await;
    }
    for ((pattern, expected), q) in cases.iter().zip(&queues) {
        let got = drain(&ch, q).await;
        let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "topic pattern {pattern:?}");
    }
    timeout(ch.exchange_delete(x.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

fn i(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

#[tokio::test]
async fn headers_routing_matches_rabbitmq() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let s = lstr;
    // Messages: index -> headers (None = no headers property at all).
    let messages: Vec<Option<Vec<(&str, AMQPValue)>>> = vec![
        Some(vec![("a", i(1)), ("b", i(2))]),              // 0
        Some(vec![("a", i(1)), ("b", i(2)), ("c", i(3))]), // 1
        Some(vec![("a", i(1))]),                           // 2
        Some(vec![("a", s("1")), ("b", s("2"))]),          // 3
        Some(vec![]),                                      // 4
        Some(vec![("a", i(2))]),                           // 5
        Some(vec![("b", i(2)), ("z", i(0))]),              // 6
        None,                                              // 7
        Some(vec![("x-k", s("v"))]),                       // 8
        Some(vec![("x-k", s("w"))]),                       // 9
        Some(vec![("a", AMQPValue::Void)]),                // 10
    ];
    let cases: Vec<(Vec<(&str, AMQPValue)>, Vec<usize>)> = vec![
        (vec![("x-match", s("all")), ("a", i(1)), ("b", i(2))], vec![0, 1]),
        (vec![("x-match", s("any")), ("a", i(1)), ("b", i(2))], vec![0, 1, 2, 6]),
        (vec![("a", i(1))], vec![0, 1, 2]),
        (vec![("x-match", s("all"))], (0..messages.len()).collect()),
        (vec![("x-match", s("any"))], vec![]),
        (vec![("x-match", s("all")), ("x-k", s("v"))], (0..messages.len()).collect()),
        (vec![("x-match", s("all-with-x")), ("x-k", s("v"))], vec![8]),
        (vec![("x-match", s("any")), ("x-k", s("v")), ("a", i(1))], vec![0, 1, 2]),
        (vec![("x-match", s("any-with-x")), ("x-k", s("v")), ("a", i(1))], vec![0, 1, 2, 8]),
        (vec![("x-match", s("all")), ("a", AMQPValue::Void)], vec![0, 1, 2, 3, 5, 10]),
    ];
    let x = uniq("headers");
    declare(&ch, &x, ExchangeKind::Headers, Default::default()).await.unwrap();
    let mut queues = Vec::new();
    for (args, _) in &cases {
        let q = temp_queue(&ch).await;
        // The routing key is ignored by headers exchanges.
        timeout(ch.queue_bind(q.as_str().into(), x.as_str().into(), "rk".into(), Default::default(), ft(args))).await.unwrap();
        queues.push(q);
    }
    for (idx, h) in messages.iter().enumerate() {
        let props = match h {
            None => BasicProperties::default(),
            Some(h) => BasicProperties::default().with_headers(ft(h)),
        };
        publish_c(&ch, &x, "other", idx.to_string().as_bytes(), props).await;
    }
    for ((args, expected), q) in cases.iter().zip(&queues) {
        let got: BTreeSet<usize> = drain(&ch, q).await.iter().map(|s| s.parse().unwrap()).collect();
        let want: BTreeSet<usize> = expected.iter().copied().collect();
        assert_eq!(got, want, "headers binding {args:?}");
    }
    // amq.match and amq.headers are headers exchanges too.
    for hx in ["amq.match", "amq.headers"] {
        let q = temp_queue(&ch).await;
        timeout(ch.queue_bind(q.as_str().into(), hx.into(), "".into(), Default::default(), ft(&[("k", s(&q))]))).await.unwrap();
        publish_c(&ch, hx, "", b"yes", BasicProperties::default().with_headers(ft(&[("k", s(&q))]))).await;
        publish_c(&ch, hx, "", b"no", BasicProperties::default().with_headers(ft(&[("k", s("other"))]))).await;
        assert_eq!(drain(&ch, &q).await, vec!["yes"], "{hx}");
    }
    // A bad x-match is refused at bind time.
    let q = temp_queue(&ch).await;
    let r = timeout(ch.queue_bind(q.as_str().into(), x.as_str().into(), "".into(), Default::default(), ft(&[("x-match", s("bogus"))]))).await;
    assert_amqp_err(
        r,
        406,
        "PRECONDITION_FAILED - Invalid x-match field value <<\"bogus\">>; expected all, any, all-with-x, or any-with-x",
    );
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.exchange_delete(x.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn invalid_exchange_type_closes_connection_503() {
    let b = TestBroker::start().await;
    for (ty, text) in [
        ("foo", "COMMAND_INVALID - invalid exchange type 'foo'"),
        ("x-foo", "COMMAND_INVALID - unknown exchange type 'x-foo'"),
    ] {
        let (conn, ch) = b.channel().await;
        let r = declare(&ch, &uniq("x-bad"), ExchangeKind::Custom(ty.into()), Default::default()).await;
        assert_amqp_err(r, 503, text);
        // It is a connection error: the whole connection goes.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!conn.status().connected(), "connection must be closed after 503");
    }
    b.stop().await;
}

#[tokio::test]
async fn publish_to_internal_exchange_is_403() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.channel().await;
    let x = uniq("intx");
    declare(&ch, &x, ExchangeKind::Fanout, ExchangeDeclareOptions { internal: true, ..Default::default() }).await.unwrap();
    // Internal exchanges still route what reaches them via e2e bindings.
    let q = temp_queue(&ch).await;
    timeout(ch.queue_bind(q.as_str().into(), x.as_str().into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    timeout(ch.exchange_bind(x.as_str().into(), "amq.fanout".into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();
    let cch = confirm_channel(&conn).await;
    publish_c(&cch, "amq.fanout", "", b"via-e2e", Default::default()).await;
    assert_eq!(drain(&cch, &q).await, vec!["via-e2e"]);
    timeout(ch.exchange_unbind(x.as_str().into(), "amq.fanout".into(), "".into(), Default::default(), FieldTable::default())).await.unwrap();

    let (code, text) = error_after(&ch, ch.basic_publish(x.as_str().into(), "".into(), Default::default(), b"direct", Default::default())).await;
    assert_eq!((code, text.as_str()), (403, format!("ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'").as_str()));
    assert!(conn.status().connected(), "a channel error leaves the connection open");
    let ch = timeout(conn.create_channel()).await.unwrap();
    timeout(ch.exchange_delete(x.as_str().into(), Default::default())).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn publish_to_missing_exchange_is_404() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.channel().await;
    let x = uniq("nope");
    let (code, text) = error_after(&ch, ch.basic_publish(x.as_str().into(), "k".into(), Default::default(), b"m", Default::default())).await;
    assert_eq!((code, text), (404, format!("NOT_FOUND - no exchange '{x}' in vhost '/'")));
    let ch = timeout(conn.create_channel()).await.unwrap();
    let (code, text) = error_after(&ch, ch.basic_publish("amq.default".into(), "k".into(), Default::default(), b"m", Default::default())).await;
    assert_eq!((code, text.as_str()), (404, "NOT_FOUND - no exchange 'amq.default' in vhost '/'"));
    b.stop().await;
}
