//! Direct reply-to (`amq.rabbitmq.reply-to`): RPC replies go straight to the requesting
//! channel's no-ack consumer; RabbitMQ's errors for misuse. Passes against RabbitMQ 3.10
//! (WARREN_TEST_URL) and Warren.

use crate::common;

use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, BasicPublishOptions};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

fn no_ack() -> BasicConsumeOptions {
    BasicConsumeOptions { no_ack: true, ..Default::default() }
}

#[tokio::test]
async fn rpc_reply_reaches_the_requesting_channel() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let client = confirm_channel(&conn).await;
    let server_conn = b.connect().await;
    let server = confirm_channel(&server_conn).await;
    let rpc = uniq("rpc");
    named_queue(&server, &rpc).await;

    let mut replies = timeout(client.basic_consume(REPLY_TO.into(), "replies".into(), no_ack(), Default::default())).await.unwrap();
    let props = BasicProperties::default().with_reply_to(REPLY_TO.into()).with_correlation_id("42".into());
    publish_c(&client, "", &rpc, b"2+2", props).await;

    let req = timeout(server.basic_get(rpc.as_str().into(), BasicGetOptions { no_ack: true })).await.unwrap().expect("request");
    let reply_to = req.delivery.properties.reply_to().as_ref().expect("reply_to").to_string();
    assert!(reply_to.starts_with("amq.rabbitmq.reply-to."), "rewritten: {reply_to}");
    let p = BasicProperties::default().with_correlation_id("42".into());
    publish_c(&server, "", &reply_to, b"4", p).await;

    let d = next_delivery(&mut replies, WAIT).await.expect("reply");
    assert_eq!(&d.data[..], b"4");
    assert_eq!(d.routing_key.as_str(), reply_to);
    assert_eq!(d.properties.correlation_id().as_ref().map(|c| c.as_str()), Some("42"));

    // Once the client channel is gone, a reply is unroutable (returned when mandatory).
    timeout(client.close(200, "bye".into())).await.unwrap();
    let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
    let c = timeout(server.basic_publish("".into(), reply_to.as_str().into(), opts, b"late", Default::default())).await.unwrap();
    let c = timeout(c).await.unwrap();
    assert!(c.take_message().is_some(), "returned");
}

#[tokio::test]
async fn misuse_gets_rabbitmqs_errors() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;

    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch.basic_consume(REPLY_TO.into(), "".into(), Default::default(), Default::default())).await;
    assert_amqp_err(r, 406, "PRECONDITION_FAILED - reply consumer cannot acknowledge");

    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = temp_queue(&ch).await;
    let props = BasicProperties::default().with_reply_to(REPLY_TO.into());
    let (code, text) = error_after(&ch, ch.basic_publish("".into(), q.as_str().into(), Default::default(), b"x", props)).await;
    assert_eq!((code, text.as_str()), (406, "PRECONDITION_FAILED - fast reply consumer does not exist"));

    let ch = timeout(conn.create_channel()).await.unwrap();
    // The pseudo-queue answers a passive declare (RabbitMQ: 0 messages, 1 consumer).
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let ok = timeout(ch.queue_declare(REPLY_TO.into(), passive, Default::default())).await.expect("passive declare");
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
    timeout(ch.basic_consume(REPLY_TO.into(), "one".into(), no_ack(), Default::default())).await.unwrap();
    let r = timeout(ch.basic_consume(REPLY_TO.into(), "two".into(), no_ack(), Default::default())).await;
    assert_amqp_err(r, 406, "PRECONDITION_FAILED - reply consumer already set");
}
