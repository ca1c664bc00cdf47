//! alternate-exchange: what an exchange cannot route goes to its alternate exchange (and its
//! AE's AE); such a message counts as routed for `mandatory`. Passes against RabbitMQ 3.10
//! (WARREN_TEST_URL) and Warren.

use crate::common;

use common::*;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::{BasicProperties, ExchangeKind};

async fn exchange(ch: &lapin::Channel, name: &str, kind: ExchangeKind, ae: Option<&str>) {
    let args = match ae {
        Some(ae) => ft(&[("alternate-exchange", lstr(ae))]),
        None => Default::default(),
    };
    timeout(ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), args)).await.expect("exchange.declare");
}

async fn bind(ch: &lapin::Channel, q: &str, x: &str, key: &str) {
    timeout(ch.queue_bind(q.into(), x.into(), key.into(), Default::default(), Default::default())).await.expect("bind");
}

/// Publishes with mandatory and returns whether the message came back (basic.return).
async fn returned(ch: &lapin::Channel, x: &str, key: &str, body: &[u8]) -> bool {
    let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
    let c = timeout(ch.basic_publish(x.into(), key.into(), opts, body, BasicProperties::default())).await.unwrap();
    let c = timeout(c).await.unwrap();
    assert!(c.is_ack());
    c.take_message().is_some()
}

#[tokio::test]
async fn unroutable_messages_go_to_the_alternate_exchange() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let (main, ae, ae2) = (uniq("main"), uniq("ae"), uniq("ae2"));
    let (routed, unrouted, last) = (uniq("routed"), uniq("unrouted"), uniq("last"));
    exchange(&ch, &ae2, ExchangeKind::Fanout, None).await;
    exchange(&ch, &ae, ExchangeKind::Direct, Some(&ae2)).await;
    exchange(&ch, &main, ExchangeKind::Direct, Some(&ae)).await;
    for q in [&routed, &unrouted, &last] {
        named_queue(&ch, q).await;
    }
    bind(&ch, &routed, &main, "k").await;
    bind(&ch, &unrouted, &ae, "other").await;
    bind(&ch, &last, &ae2, "").await;

    assert!(!returned(&ch, &main, "k", b"direct").await);
    assert!(!returned(&ch, &main, "other", b"via ae").await, "routed by the AE: not returned");
    assert!(!returned(&ch, &main, "nowhere", b"via ae2").await, "routed by the AE's AE");
    assert_eq!(drain(&ch, &routed).await, vec!["direct"]);
    assert_eq!(drain(&ch, &unrouted).await, vec!["via ae"]);
    assert_eq!(drain(&ch, &last).await, vec!["via ae2"]);

    // An AE that routes nowhere either: the message is returned.
    let (lonely, empty_ae) = (uniq("lonely"), uniq("empty-ae"));
    exchange(&ch, &empty_ae, ExchangeKind::Direct, None).await;
    exchange(&ch, &lonely, ExchangeKind::Direct, Some(&empty_ae)).await;
    assert!(returned(&ch, &lonely, "k", b"lost").await);
    // A missing AE is the same as none.
    let orphan = uniq("orphan");
    exchange(&ch, &orphan, ExchangeKind::Direct, Some("no-such-exchange")).await;
    assert!(returned(&ch, &orphan, "k", b"lost").await);
}
