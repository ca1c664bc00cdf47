//! Direct reply-to (`amq.rabbitmq.reply-to`): RPC replies delivered straight to a consuming
//! channel, with no queue.
//!
//! A channel consumes from the pseudo-queue `amq.rabbitmq.reply-to` (no-ack only) and gets a
//! token; its requests published with `reply_to = amq.rabbitmq.reply-to` carry
//! `amq.rabbitmq.reply-to.<token>` instead; a reply published to the default exchange with that
//! routing key is delivered to the consumer at once (or is unroutable if it is gone).

use super::delivery::ChannelShared;
use super::message::Message;
use crate::protocol::frame;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// The pseudo-queue's name; reply routing keys are this, a dot and a token.
pub const PSEUDO_QUEUE: &str = "amq.rabbitmq.reply-to";

struct ReplyConsumer {
    channel: Weak<ChannelShared>,
    tag: String,
}

/// The reply consumers of one vhost, by token.
#[derive(Default)]
pub struct ReplyTo {
    consumers: Mutex<HashMap<String, ReplyConsumer>>,
}

/// The routing key of a reply for `token`.
pub fn reply_key(token: &str) -> String {
    format!("{PSEUDO_QUEUE}.{token}")
}

impl ReplyTo {
    /// Registers the reply consumer `tag` of `channel`; returns its token.
    pub fn register(&self, channel: &Arc<ChannelShared>, tag: &str) -> String {
        use base64::Engine as _;
        let bytes: [u8; 18] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.consumers.lock().insert(token.clone(), ReplyConsumer { channel: Arc::downgrade(channel), tag: tag.to_owned() });
        token
    }

    pub fn unregister(&self, token: &str) {
        self.consumers.lock().remove(token);
    }

    /// Delivers a reply published with routing key `key` (`amq.rabbitmq.reply-to.<token>`);
    /// false if no such consumer exists any more.
    pub fn deliver(&self, key: &str, msg: &Message) -> bool {
        let Some(token) = key.strip_prefix(PSEUDO_QUEUE).and_then(|t| t.strip_prefix('.')) else { return false };
        let Some(ch) = self.consumers.lock().get(token).and_then(|c| Some((c.channel.upgrade()?, c.tag.clone()))) else {
            return false;
        };
        let (ch, tag) = ch;
        if !ch.open.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        // Tag and frames under the channel's delivery lock, so tags reach the client in order.
        let mut st = ch.state.lock();
        let delivery_tag = st.next_tag;
        st.next_tag += 1;
        let frame_max = ch.conn.frame_max();
        let d = frame::Deliver { consumer_tag: &tag, delivery_tag, redelivered: false, exchange: &msg.exchange, routing_key: &msg.routing_key };
        ch.conn.send(|out| frame::write_delivery(out, ch.number, &d, &msg.header_raw, &msg.body, frame_max));
        true
    }
}
