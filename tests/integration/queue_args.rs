//! Queue arguments are validated at declare with RabbitMQ's 406 texts (checked against a
//! RabbitMQ 3.10 node with WARREN_TEST_URL).

use crate::common;

use amq_protocol::types::AMQPValue;
use common::*;
use lapin::options::QueueDeclareOptions;

/// Each bad argument closes the channel with RabbitMQ's exact text; the connection stays usable.
#[tokio::test]
async fn bad_queue_arguments_get_rabbitmqs_406() {
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let i = AMQPValue::LongInt;
    let cases: Vec<(&str, AMQPValue, String)> = vec![
        ("x-message-ttl", lstr("abc"), "\"expected integer, got longstr\"".into()),
        ("x-message-ttl", i(-1), "{value_negative,-1}".into()),
        ("x-message-ttl", AMQPValue::LongLongInt(1 << 40), "{value_too_large,1099511627776}".into()),
        ("x-expires", i(0), "{value_zero,0}".into()),
        ("x-expires", i(-5), "{value_negative,-5}".into()),
        ("x-max-length", i(-1), "{value_negative,-1}".into()),
        ("x-max-length-bytes", lstr("x"), "\"expected integer, got longstr\"".into()),
        ("x-max-priority", i(300), "{max_value_exceeded,300}".into()),
        ("x-max-priority", i(-1), "{value_negative,-1}".into()),
        ("x-overflow", lstr("bogus"), "invalid_overflow".into()),
        ("x-overflow", i(5), "{unacceptable_type,signedint}".into()),
        ("x-queue-type", lstr("bogus"), "\"unsupported queue type 'bogus'\"".into()),
        ("x-dead-letter-routing-key", lstr("rk"), "routing_key_but_no_dlx_defined".into()),
        ("x-single-active-consumer", lstr("yes"), "{unacceptable_type,longstr}".into()),
        ("x-queue-mode", lstr("bogus"), "\"unsupported queue mode 'bogus'\"".into()),
    ];
    for (arg, value, why) in cases {
        let q = uniq("qargs");
        let ch = timeout(conn.create_channel()).await.unwrap();
        let r = timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), ft(&[(arg, value.clone())]))).await;
        assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {why}"));
    }
    let q = uniq("qargs");
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), ft(&[("x-dead-letter-exchange", i(5))]))).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'"));
    let q = uniq("qargs");
    let ch = timeout(conn.create_channel()).await.unwrap();
    let r = timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), ft(&[("x-delivery-limit", i(5))]))).await;
    assert_amqp_err(r, 406, &format!("PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '{q}' in vhost '/' of queue type rabbit_classic_queue"));
    // Valid values of every typed argument are accepted.
    let ch = timeout(conn.create_channel()).await.unwrap();
    let q = uniq("qargs-ok");
    let args = ft(&[
        ("x-message-ttl", i(0)),
        ("x-expires", i(60_000)),
        ("x-max-length", i(10)),
        ("x-max-length-bytes", i(1000)),
        ("x-max-priority", i(0)),
        ("x-overflow", lstr("reject-publish")),
        ("x-dead-letter-exchange", lstr("")),
        ("x-dead-letter-routing-key", lstr("dead")),
        ("x-queue-mode", lstr("lazy")),
        ("x-queue-type", lstr("classic")),
    ]);
    timeout(ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), args)).await.expect("valid arguments");
    timeout(ch.queue_delete(q.as_str().into(), Default::default())).await.unwrap();
}
