//! Requeued messages go back to their original place in the queue, whatever order the nacks
//! come in (RabbitMQ's classic queues; aio-pika's iterator cancels its consumer and then nacks
//! the prefetched messages one by one, oldest first).
use crate::common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;

async fn requeue_in_order(order: &[usize]) -> Vec<(String, bool)> {
    let b = TestBroker::start().await;
    let (_c, ch) = b.channel().await;
    let q = uniq("requeue");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    for i in 0..10 {
        timeout(ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), format!("{i}").as_bytes(), Default::default()))
            .await
            .unwrap();
    }
    timeout(ch.basic_qos(10, BasicQosOptions::default())).await.unwrap();
    let mut consumer = timeout(ch.basic_consume(q.as_str().into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())).await.unwrap();
    let mut tags = Vec::new();
    while tags.len() < 10 {
        let d = timeout(consumer.next()).await.expect("delivery").expect("ok");
        tags.push(d.delivery_tag);
    }
    let got = cancel_requeue_and_get(&ch, &q, &tags, order).await;
    b.stop().await;
    got
}

/// Cancels consumer "c", nacks (requeue) `tags` in `order`, then gets the queue's ten messages:
/// (body, redelivered) in the order they come.
async fn cancel_requeue_and_get(ch: &lapin::Channel, q: &str, tags: &[u64], order: &[usize]) -> Vec<(String, bool)> {
    timeout(ch.basic_cancel("c".into(), BasicCancelOptions::default())).await.unwrap();
    for &i in order {
        timeout(ch.basic_nack(tags[i], BasicNackOptions { multiple: false, requeue: true })).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        if let Some(m) = timeout(ch.basic_get(q.into(), BasicGetOptions { no_ack: true })).await.unwrap() {
            got.push((String::from_utf8(m.delivery.data.clone()).unwrap(), m.delivery.redelivered));
        }
    }
    got
}

fn expected() -> Vec<(String, bool)> {
    (0..10).map(|i| (i.to_string(), true)).collect()
}

#[tokio::test]
async fn nacks_oldest_first_restore_the_original_order() {
    assert_eq!(requeue_in_order(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).await, expected());
}

#[tokio::test]
async fn nacks_in_any_order_restore_the_original_order() {
    assert_eq!(requeue_in_order(&[3, 4, 5, 6, 7, 8, 9, 0, 1, 2]).await, expected());
    assert_eq!(requeue_in_order(&[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]).await, expected());
    assert_eq!(requeue_in_order(&[5, 0, 9, 2, 7, 1, 8, 3, 6, 4]).await, expected());
}

/// A message that finds the queue empty goes straight to a consumer with credit, not through the
/// queue; requeued, it still goes back to its own place: ahead of the messages queued after it,
/// in the order they all arrived.
#[tokio::test]
async fn messages_handed_over_on_arrival_requeue_ahead_of_those_queued_after_them() {
    let b = TestBroker::start().await;
    let (_c, ch) = b.channel().await;
    let q = uniq("requeue-arrival");
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())).await.unwrap();
    timeout(ch.basic_qos(4, BasicQosOptions::default())).await.unwrap();
    let mut consumer = timeout(ch.basic_consume(q.as_str().into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())).await.unwrap();
    // 0-3 are handed over as they arrive; 4 finds the consumer without credit and is queued
    // first, 5-9 behind it.
    for i in 0..10 {
        timeout(ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), format!("{i}").as_bytes(), Default::default()))
            .await
            .unwrap();
    }
    let mut tags = Vec::new();
    for i in 0..4 {
        let d = timeout(consumer.next()).await.expect("delivery").expect("ok");
        assert_eq!((String::from_utf8(d.data.clone()).unwrap(), d.redelivered), (i.to_string(), false));
        tags.push(d.delivery_tag);
    }
    let got = cancel_requeue_and_get(&ch, &q, &tags, &[2, 0, 3, 1]).await;
    let want: Vec<(String, bool)> = (0..10).map(|i| (i.to_string(), i < 4)).collect();
    assert_eq!(got, want);
    b.stop().await;
}
