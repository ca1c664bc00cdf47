//! Sender-selected distribution: `CC` and `BCC` headers route a message to more keys; `BCC`
//! is removed before delivery; dead-lettering records CC keys in x-death and drops both
//! headers. Passes against RabbitMQ 3.10 (WARREN_TEST_URL) and Warren.

use crate::common;

use amq_protocol::types::{AMQPValue, FieldArray};
use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};

fn keys(k: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(k.iter().map(|s| lstr(s)).collect::<Vec<_>>()))
}

async fn get(ch: &lapin::Channel, q: &str) -> lapin::message::BasicGetMessage {
    timeout(ch.basic_get(q.into(), BasicGetOptions { no_ack: true })).await.unwrap().unwrap_or_else(|| panic!("nothing on {q}"))
}

#[tokio::test]
async fn cc_and_bcc_route_to_more_queues() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let (a, c, d) = (uniq("cc-a"), uniq("cc-c"), uniq("cc-d"));
    for q in [&a, &c, &d] {
        named_queue(&ch, q).await;
    }
    let headers = ft(&[("CC", keys(&[&c])), ("BCC", keys(&[&d])), ("x", lstr("y"))]);
    publish_c(&ch, "", &a, b"m", BasicProperties::default().with_headers(headers)).await;
    for q in [&a, &c, &d] {
        let m = get(&ch, q).await;
        assert_eq!(m.delivery.routing_key.as_str(), a, "delivered with the original key");
        let h = m.delivery.properties.headers().clone().unwrap();
        assert_eq!(h.inner().get("CC"), Some(&keys(&[&c])));
        assert!(!h.inner().contains_key("BCC"), "BCC is removed: {h:?}");
        assert_eq!(h.inner().get("x"), Some(&lstr("y")));
    }
}

#[tokio::test]
async fn dead_lettering_records_cc_keys_and_drops_the_headers() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let (src, other, dead) = (uniq("cc-src"), uniq("cc-other"), uniq("cc-dead"));
    named_queue(&ch, &other).await;
    named_queue(&ch, &dead).await;
    let args = ft(&[("x-dead-letter-exchange", lstr("")), ("x-dead-letter-routing-key", lstr(&dead))]);
    timeout(ch.queue_declare(src.as_str().into(), QueueDeclareOptions::default(), args)).await.unwrap();
    publish_c(&ch, "", &src, b"m", BasicProperties::default().with_headers(ft(&[("CC", keys(&[&other]))]))).await;
    get(&ch, &other).await;
    let m = timeout(ch.basic_get(src.as_str().into(), BasicGetOptions::default())).await.unwrap().expect("message");
    timeout(m.delivery.acker.reject(BasicRejectOptions { requeue: false })).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let d = loop {
        if let Some(d) = timeout(ch.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap() {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let h = d.delivery.properties.headers().clone().unwrap();
    assert!(!h.inner().contains_key("CC"), "{h:?}");
    let Some(AMQPValue::FieldArray(x)) = h.inner().get("x-death") else { panic!("{h:?}") };
    let Some(AMQPValue::FieldTable(e)) = x.as_slice().first() else { panic!("{x:?}") };
    assert_eq!(e.inner().get("routing-keys"), Some(&keys(&[&src, &other])));
}
