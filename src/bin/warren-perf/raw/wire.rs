//! The frames of the raw client's hot path, encoded and decoded by hand.
//!
//! Publishing writes a per-target template (basic.publish + content header + body frames, built
//! once) and patches the send time into the body; reading scans frames in place and recognises
//! basic.deliver, content headers, bodies, confirms (basic.ack/nack) and heartbeats without
//! building the generated method types. Everything else (connection.close, channel.close,
//! connection.blocked, basic.cancel, ...) goes through Warren's protocol module, i.e. the types
//! generated from the spec. The unit tests check every hand-made frame byte for byte against
//! amq-protocol's generated encoder.

use bytes::{Buf, BufMut, BytesMut};
use warren::protocol::frame::{
    FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_OVERHEAD, Frame, encode_header,
    parse_frame, write_header_raw,
};
use warren::protocol::basic::AMQPProperties;

/// basic class id and the method ids the hot path knows.
const BASIC: u16 = 60;
const PUBLISH: u16 = 40;
const DELIVER: u16 = 60;
const ACK: u16 = 80;
const NACK: u16 = 120;

fn put_shortstr(out: &mut BytesMut, s: &str) {
    let b = s.as_bytes();
    assert!(b.len() <= 255, "short string longer than 255 bytes");
    out.put_u8(b.len() as u8);
    out.extend_from_slice(b);
}

/// Appends a basic.publish method frame (ticket 0).
pub fn put_publish(out: &mut BytesMut, channel: u16, exchange: &str, routing_key: &str, mandatory: bool) {
    let size = 4 + 2 + 1 + exchange.len() + 1 + routing_key.len() + 1;
    out.reserve(size + FRAME_OVERHEAD);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(size as u32);
    out.put_u16(BASIC);
    out.put_u16(PUBLISH);
    out.put_u16(0); // ticket
    put_shortstr(out, exchange);
    put_shortstr(out, routing_key);
    out.put_u8(mandatory as u8); // bit 0 mandatory, bit 1 immediate
    out.put_u8(FRAME_END);
}

/// Appends a basic.ack method frame (consumer acknowledgement).
pub fn put_ack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    out.reserve(21);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(13);
    out.put_u16(BASIC);
    out.put_u16(ACK);
    out.put_u64(delivery_tag);
    out.put_u8(multiple as u8);
    out.put_u8(FRAME_END);
}

/// Appends body frames, none larger than `frame_max`.
pub fn put_body(out: &mut BytesMut, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    for part in body.chunks(chunk) {
        out.reserve(part.len() + FRAME_OVERHEAD);
        out.put_u8(FRAME_BODY);
        out.put_u16(channel);
        out.put_u32(part.len() as u32);
        out.extend_from_slice(part);
        out.put_u8(FRAME_END);
    }
}

/// One message as it goes on the wire, built once per routing target: publishing copies it and
/// writes the send time into the first 8 body bytes at `stamp_at`.
#[derive(Clone)]
pub struct Template {
    pub bytes: Vec<u8>,
    pub stamp_at: usize,
}

impl Template {
    pub fn new(channel: u16, exchange: &str, routing_key: &str, properties: &AMQPProperties, size: usize, frame_max: u32) -> Self {
        let mut out = BytesMut::new();
        put_publish(&mut out, channel, exchange, routing_key, false);
        // The content header is encoded by the generated encoder (once per target, not per message).
        write_header_raw(&mut out, channel, &encode_header(size as u64, properties));
        let stamp_at = out.len() + 7; // after the first body frame's type, channel and size
        put_body(&mut out, channel, &vec![0u8; size], frame_max);
        Template { bytes: out.to_vec(), stamp_at }
    }

    /// Appends the message stamped with `sent_ns`.
    #[inline]
    pub fn put(&self, out: &mut BytesMut, sent_ns: u64) {
        let at = out.len() + self.stamp_at;
        out.extend_from_slice(&self.bytes);
        out[at..at + 8].copy_from_slice(&sent_ns.to_le_bytes());
    }
}

/// What the hot path reads from a broker.
#[derive(Debug)]
pub enum Event {
    /// basic.deliver: its delivery tag.
    Deliver { delivery_tag: u64 },
    /// A content header: the body size that follows.
    Header { body_size: u64 },
    /// A body frame: its length and, if it holds at least 8 bytes, the first 8 (the send time).
    Body { len: usize, stamp: Option<u64> },
    /// A publisher confirm.
    Ack { delivery_tag: u64, multiple: bool },
    Nack { delivery_tag: u64, multiple: bool },
    Heartbeat,
    /// Any other frame, decoded with the generated types.
    Other(Frame),
}

/// Takes one complete frame off the front of `buf` (`Ok(None)`: more bytes needed).
pub fn next_event(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Event>, String> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    let total = size + FRAME_OVERHEAD;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(format!("frame without end marker (type {kind})"));
    }
    let p = &buf[7..7 + size];
    let event = match kind {
        FRAME_METHOD if size >= 4 && u16::from_be_bytes([p[0], p[1]]) == BASIC => {
            let method = u16::from_be_bytes([p[2], p[3]]);
            match method {
                // consumer-tag (shortstr), delivery-tag (u64), redelivered, exchange, routing-key
                DELIVER if size >= 5 && size >= 5 + p[4] as usize + 8 => {
                    let at = 5 + p[4] as usize;
                    Some(Event::Deliver { delivery_tag: u64::from_be_bytes(p[at..at + 8].try_into().expect("8 bytes")) })
                }
                ACK | NACK if size >= 13 => {
                    let delivery_tag = u64::from_be_bytes(p[4..12].try_into().expect("8 bytes"));
                    let multiple = p[12] & 1 != 0;
                    Some(if method == ACK { Event::Ack { delivery_tag, multiple } } else { Event::Nack { delivery_tag, multiple } })
                }
                _ => None,
            }
        }
        FRAME_HEADER if size >= 12 => Some(Event::Header { body_size: u64::from_be_bytes(p[4..12].try_into().expect("8 bytes")) }),
        FRAME_BODY => Some(Event::Body {
            len: size,
            stamp: (size >= 8).then(|| u64::from_le_bytes(p[..8].try_into().expect("8 bytes"))),
        }),
        FRAME_HEARTBEAT => Some(Event::Heartbeat),
        _ => None,
    };
    match event {
        Some(e) => {
            buf.advance(total);
            Ok(Some(e))
        }
        None => match parse_frame(buf, frame_max) {
            Ok(Some(f)) => Ok(Some(Event::Other(f))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, WriteContext, gen_frame};
    use amq_protocol::protocol::{AMQPClass, basic, channel};
    use amq_protocol::types::{AMQPValue, FieldTable};

    fn generated(frame: AMQPFrame) -> Vec<u8> {
        let ctx = WriteContext::from(Vec::new());
        gen_frame(&frame)(ctx).expect("encode").into_inner().0
    }

    fn publish(exchange: &str, rk: &str, mandatory: bool) -> AMQPClass {
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: exchange.into(),
            routing_key: rk.into(),
            mandatory,
            immediate: false,
        }))
    }

    #[test]
    fn publish_matches_generated_encoder() {
        for (ex, rk, mandatory) in [("", "perf-q-0", false), ("amq.topic", "a.b.c", true), ("x", "", false)] {
            let mut out = BytesMut::new();
            put_publish(&mut out, 1, ex, rk, mandatory);
            assert_eq!(out.to_vec(), generated(AMQPFrame::Method(1, publish(ex, rk, mandatory))), "{ex}/{rk}");
        }
        let long = "k".repeat(255);
        let mut out = BytesMut::new();
        put_publish(&mut out, 513, &long, &long, false);
        assert_eq!(out.to_vec(), generated(AMQPFrame::Method(513, publish(&long, &long, false))));
    }

    #[test]
    fn ack_matches_generated_encoder() {
        for (tag, multiple) in [(1, false), (u64::MAX, true), (4242, true)] {
            let mut out = BytesMut::new();
            put_ack(&mut out, 2, tag, multiple);
            let m = AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: tag, multiple }));
            assert_eq!(out.to_vec(), generated(AMQPFrame::Method(2, m)));
        }
    }

    #[test]
    fn body_matches_generated_encoder_and_splits_at_frame_max() {
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        put_body(&mut out, 1, &body, 4096);
        let mut expected = Vec::new();
        for part in body.chunks(4096 - 8) {
            expected.extend(generated(AMQPFrame::Body(1, part.to_vec())));
        }
        assert_eq!(out.to_vec(), expected);
    }

    #[test]
    fn template_is_publish_header_body_with_the_stamp() {
        let mut headers = FieldTable::default();
        headers.insert("perf-queue".into(), AMQPValue::LongString("perf-q-3".into()));
        let props = AMQPProperties::default().with_delivery_mode(2).with_headers(headers);
        for (size, frame_max) in [(16usize, 131072u32), (10_000, 4096)] {
            let t = Template::new(1, "perf-x-headers", "perf-q-3", &props, size, frame_max);
            let mut out = BytesMut::from(&b"xyz"[..]);
            t.put(&mut out, 0x0102030405060708);
            let mut body = vec![0u8; size];
            body[..8].copy_from_slice(&0x0102030405060708u64.to_le_bytes());
            let mut expected = b"xyz".to_vec();
            expected.extend(generated(AMQPFrame::Method(1, publish("perf-x-headers", "perf-q-3", false))));
            let header = AMQPContentHeader { class_id: 60, body_size: size as u64, properties: props.clone() };
            expected.extend(generated(AMQPFrame::Header(1, header)));
            for part in body.chunks(frame_max as usize - 8) {
                expected.extend(generated(AMQPFrame::Body(1, part.to_vec())));
            }
            assert_eq!(out.to_vec(), expected, "size {size}");
        }
    }

    #[test]
    fn decodes_what_the_generated_encoder_writes() {
        let mut buf = BytesMut::new();
        let deliver = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: "warren-perf-0".into(),
            delivery_tag: 77,
            redelivered: true,
            exchange: "".into(),
            routing_key: "perf-q-0".into(),
        }));
        buf.extend(generated(AMQPFrame::Method(1, deliver)));
        let header = AMQPContentHeader { class_id: 60, body_size: 16, properties: AMQPProperties::default() };
        buf.extend(generated(AMQPFrame::Header(1, header)));
        let mut body = 123456789u64.to_le_bytes().to_vec();
        body.extend([0u8; 8]);
        buf.extend(generated(AMQPFrame::Body(1, body)));
        buf.extend(generated(AMQPFrame::Body(1, vec![1, 2, 3])));
        let ack = AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 9, multiple: true }));
        buf.extend(generated(AMQPFrame::Method(1, ack)));
        let nack = AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack { delivery_tag: 10, multiple: false, requeue: true }));
        buf.extend(generated(AMQPFrame::Method(1, nack)));
        buf.extend(generated(AMQPFrame::Heartbeat));
        let close = AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 404,
            reply_text: "NOT_FOUND - no queue 'q'".into(),
            class_id: 60,
            method_id: 20,
        }));
        let whole = {
            let mut b = buf.clone();
            b.extend(generated(AMQPFrame::Method(1, close.clone())));
            b
        };
        // Byte by byte: nothing is decoded before its frame is complete.
        let mut events = Vec::new();
        let mut partial = BytesMut::new();
        for byte in whole.iter() {
            partial.put_u8(*byte);
            while let Some(e) = next_event(&mut partial, 131072).unwrap() {
                events.push(format!("{e:?}"));
            }
        }
        assert!(partial.is_empty());
        assert_eq!(events[..7], [
            "Deliver { delivery_tag: 77 }".to_string(),
            "Header { body_size: 16 }".into(),
            "Body { len: 16, stamp: Some(123456789) }".into(),
            "Body { len: 3, stamp: None }".into(),
            "Ack { delivery_tag: 9, multiple: true }".into(),
            "Nack { delivery_tag: 10, multiple: false }".into(),
            "Heartbeat".into(),
        ]);
        assert!(events[7].contains("reply_code: 404"), "{}", events[7]);
        assert_eq!(events.len(), 8);
    }

    #[test]
    fn refuses_a_frame_without_end_marker() {
        let mut b = BytesMut::from(&[3u8, 0, 1, 0, 0, 0, 1, 9, 0xCD][..]);
        assert!(next_event(&mut b, 131072).is_err());
    }
}
