//! Consumer features: x-single-active-consumer (the oldest consumer receives; the next takes
//! over when it leaves) and consumer priorities (`x-priority` on basic.consume). Passes against
//! RabbitMQ 3.10 (WARREN_TEST_URL) and Warren.

use crate::common;

use amq_protocol::types::AMQPValue;
use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};

fn no_ack() -> BasicConsumeOptions {
    BasicConsumeOptions { no_ack: true, ..Default::default() }
}

async fn bodies(c: &mut lapin::Consumer, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let d = next_delivery(c, WAIT).await.expect("delivery");
        out.push(String::from_utf8_lossy(&d.data).into_owned());
    }
    out
}

#[tokio::test]
async fn single_active_consumer_gets_everything_until_it_leaves() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("sac");
    let args = ft(&[("x-single-active-consumer", AMQPValue::Boolean(true))]);
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), args)).await.unwrap();
    let (cha, chb) = (timeout(conn.create_channel()).await.unwrap(), timeout(conn.create_channel()).await.unwrap());
    let mut a = timeout(cha.basic_consume(q.as_str().into(), "a".into(), no_ack(), Default::default())).await.unwrap();
    let mut bc = timeout(chb.basic_consume(q.as_str().into(), "b".into(), no_ack(), Default::default())).await.unwrap();
    for i in 1..=4 {
        publish_c(&ch, "", &q, format!("m{i}").as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(bodies(&mut a, 4).await, vec!["m1", "m2", "m3", "m4"]);
    assert!(next_delivery(&mut bc, QUIET).await.is_none(), "the second consumer is on standby");
    timeout(cha.basic_cancel("a".into(), Default::default())).await.unwrap();
    for i in 5..=6 {
        publish_c(&ch, "", &q, format!("m{i}").as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(bodies(&mut bc, 2).await, vec!["m5", "m6"]);
}

/// Messages go to the highest-priority consumer with room; lower ones get what it cannot take.
#[tokio::test]
async fn consumer_priorities_serve_the_highest_first() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = uniq("cprio");
    named_queue(&ch, &q).await;
    let (chl, chh) = (timeout(conn.create_channel()).await.unwrap(), timeout(conn.create_channel()).await.unwrap());
    for c in [&chl, &chh] {
        timeout(c.basic_qos(1, BasicQosOptions::default())).await.unwrap();
    }
    let mut low = timeout(chl.basic_consume(q.as_str().into(), "low".into(), Default::default(), ft(&[("x-priority", AMQPValue::LongInt(1))])))
        .await
        .unwrap();
    let mut high = timeout(chh.basic_consume(q.as_str().into(), "high".into(), Default::default(), ft(&[("x-priority", AMQPValue::LongInt(10))])))
        .await
        .unwrap();
    for i in 1..=3 {
        publish_c(&ch, "", &q, format!("m{i}").as_bytes(), BasicProperties::default()).await;
    }
    let h1 = next_delivery(&mut high, WAIT).await.expect("high first");
    assert_eq!(&h1.data[..], b"m1");
    let l1 = next_delivery(&mut low, WAIT).await.expect("low when high is full");
    assert_eq!(&l1.data[..], b"m2");
    timeout(h1.acker.ack(BasicAckOptions::default())).await.unwrap();
    let h2 = next_delivery(&mut high, WAIT).await.expect("high again");
    assert_eq!(&h2.data[..], b"m3");
    let _ = l1;

    let bad = timeout(chl.basic_consume(q.as_str().into(), "bad".into(), Default::default(), ft(&[("x-priority", lstr("high"))]))).await;
    assert_amqp_err(bad, 406, &format!("PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': \"expected integer, got longstr\""));
}
