//! A published message as the broker holds it.

use crate::protocol::{Properties, ShortStr};
use bytes::Bytes;

/// One message, shared (`Arc`) by every queue it was routed to. The body and the raw content
/// header are views of the publisher's socket buffer and are written to consumers as they are.
#[derive(Debug)]
pub struct Message {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    /// Boxed (or the shared defaults), so that building and moving a message copies a
    /// pointer, not the properties.
    pub properties: Properties,
    /// Raw content-header payload (class, weight, body size, property flags and properties).
    pub header_raw: Bytes,
    pub body: Bytes,
}

impl Message {
    /// delivery_mode 2.
    pub fn is_persistent(&self) -> bool {
        matches!(self.properties.delivery_mode(), Some(2))
    }
}

impl Message {
    /// A copy with header `key` set to `value` (the content header is encoded anew).
    pub fn with_header(&self, key: &str, value: amq_protocol::types::AMQPValue) -> Message {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(key.into(), value);
        self.with_headers(headers)
    }

    /// A copy with these headers (the content header is encoded anew).
    pub fn with_headers(&self, headers: amq_protocol::types::FieldTable) -> Message {
        let properties = Properties::new((*self.properties).clone().with_headers(headers));
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            header_raw: crate::protocol::frame::encode_header(self.body.len() as u64, &properties),
            properties,
            body: self.body.clone(),
        }
    }
}
