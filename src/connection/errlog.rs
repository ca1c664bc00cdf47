//! Channel and connection errors in the log, as RabbitMQ 3.10 writes them (`rabbit_channel`,
//! `rabbit_reader`): every error sent to a client leaves a line naming the connection, the
//! channel, the operation, the error and its text.
//!
//! ```text
//! Channel error on connection 7 (127.0.0.1:49310 -> 127.0.0.1:5672, vhost: '/', user: 'guest'), channel 1:
//! operation queue.declare caused a channel exception not_found: no queue 'q' in vhost '/'
//! Error on AMQP connection 7 (127.0.0.1:49310 -> 127.0.0.1:5672, vhost: '/', user: 'guest', state: running), channel 0:
//!  operation none caused a connection exception frame_error: "type 9, ..."
//! ```
//! (RabbitMQ shows an Erlang pid where Warren shows the connection id of `list_connections pid`.)

use crate::protocol::reply::ReplyError;

/// RabbitMQ's name of a method (`queue.declare`), `none` for 0/0.
pub fn method_name(class_id: u16, method_id: u16) -> String {
    let class = match class_id {
        0 => return "none".into(),
        10 => "connection",
        20 => "channel",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        _ => return format!("{class_id}.{method_id}"),
    };
    let method = match (class_id, method_id) {
        (10, 10) => "start",
        (10, 11) => "start_ok",
        (10, 20) => "secure",
        (10, 21) => "secure_ok",
        (10, 30) => "tune",
        (10, 31) => "tune_ok",
        (10, 40) => "open",
        (10, 41) => "open_ok",
        (10, 50) => "close",
        (10, 51) => "close_ok",
        (10, 60) => "blocked",
        (10, 61) => "unblocked",
        (20, 10) => "open",
        (20, 11) => "open_ok",
        (20, 20) => "flow",
        (20, 21) => "flow_ok",
        (20, 40) => "close",
        (20, 41) => "close_ok",
        (40, 10) | (50, 10) => "declare",
        (40, 11) | (50, 11) => "declare_ok",
        (40, 20) | (50, 40) => "delete",
        (40, 21) | (50, 41) => "delete_ok",
        (40, 30) | (50, 20) => "bind",
        (40, 31) | (50, 21) => "bind_ok",
        (40, 40) | (50, 50) => "unbind",
        (40, 51) | (50, 51) => "unbind_ok",
        (50, 30) => "purge",
        (50, 31) => "purge_ok",
        (60, 10) => "qos",
        (60, 11) => "qos_ok",
        (60, 20) => "consume",
        (60, 21) => "consume_ok",
        (60, 30) => "cancel",
        (60, 31) => "cancel_ok",
        (60, 40) => "publish",
        (60, 50) => "return",
        (60, 60) => "deliver",
        (60, 70) => "get",
        (60, 71) => "get_ok",
        (60, 72) => "get_empty",
        (60, 80) => "ack",
        (60, 90) => "reject",
        (60, 100) => "recover_async",
        (60, 110) => "recover",
        (60, 111) => "recover_ok",
        (60, 120) => "nack",
        (85, 10) => "select",
        (85, 11) => "select_ok",
        (90, 10) => "select",
        (90, 11) => "select_ok",
        (90, 20) => "commit",
        (90, 21) => "commit_ok",
        (90, 30) => "rollback",
        (90, 31) => "rollback_ok",
        _ => return format!("{class}.{method_id}"),
    };
    format!("{class}.{method}")
}

/// The explanation part of a reply text (`NOT_FOUND - no queue` → `no queue`).
fn explanation(err: &ReplyError) -> &str {
    let name = err.kind.name();
    err.text.strip_prefix(name).map(|t| t.strip_prefix(" - ").unwrap_or(t)).unwrap_or(&err.text)
}

/// Who a connection is, as RabbitMQ names it in the log.
pub struct ConnLabel {
    pub id: u64,
    /// `peer -> local`.
    pub name: String,
    pub vhost: String,
    pub user: String,
}

pub fn channel_error(c: &ConnLabel, channel: u16, err: &ReplyError) -> String {
    format!(
        "Channel error on connection {} ({}, vhost: '{}', user: '{}'), channel {channel}:\noperation {} caused a channel exception {}: {}",
        c.id,
        c.name,
        c.vhost,
        c.user,
        method_name(err.class_id, err.method_id),
        err.kind.name().to_ascii_lowercase(),
        explanation(err)
    )
}

pub fn connection_error(c: &ConnLabel, channel: u16, err: &ReplyError) -> String {
    format!(
        "Error on AMQP connection {} ({}, vhost: '{}', user: '{}', state: running), channel {channel}:\n operation {} caused a connection exception {}: {:?}",
        c.id,
        c.name,
        c.vhost,
        c.user,
        method_name(err.class_id, err.method_id),
        err.kind.name().to_ascii_lowercase(),
        explanation(err)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::reply::{ErrorKind, not_found, precondition};

    fn label() -> ConnLabel {
        ConnLabel { id: 7, name: "127.0.0.1:49310 -> 127.0.0.1:5672".into(), vhost: "/".into(), user: "guest".into() }
    }

    #[test]
    fn texts_as_rabbitmq() {
        let e = not_found("queue", "nope-q-x", "/").on(50, 10);
        assert_eq!(
            channel_error(&label(), 1, &e),
            "Channel error on connection 7 (127.0.0.1:49310 -> 127.0.0.1:5672, vhost: '/', user: 'guest'), channel 1:\n\
             operation queue.declare caused a channel exception not_found: no queue 'nope-q-x' in vhost '/'"
        );
        let e = precondition("invalid message: {delivery_mode_unknown,3}").on(60, 40);
        assert!(channel_error(&label(), 2, &e).ends_with("operation basic.publish caused a channel exception precondition_failed: invalid message: {delivery_mode_unknown,3}"));
        let e = ReplyError::new(ErrorKind::FrameError, "bad frame");
        assert_eq!(
            connection_error(&label(), 0, &e),
            "Error on AMQP connection 7 (127.0.0.1:49310 -> 127.0.0.1:5672, vhost: '/', user: 'guest', state: running), channel 0:\n \
             operation none caused a connection exception frame_error: \"bad frame\""
        );
        assert_eq!(method_name(90, 20), "tx.commit");
        assert_eq!(method_name(60, 120), "basic.nack");
        assert_eq!(method_name(40, 30), "exchange.bind");
        assert_eq!(method_name(50, 20), "queue.bind");
    }
}
