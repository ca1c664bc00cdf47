//! Frame splitting and writing.
//!
//! A frame is `type:u8 channel:u16 size:u32 payload[size] 0xCE`. Reading works on a `BytesMut`
//! filled by the connection: each complete frame is split off and frozen, so a body frame's payload
//! is a zero-copy `Bytes` view of the socket buffer. Method payloads are decoded with the types
//! generated from the spec; content headers keep their raw payload so that deliveries forward the
//! publisher's properties byte for byte.

use super::{AMQPClass, Properties, ShortStr, basic, guard};
use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame};
use amq_protocol::protocol::basic::AMQPProperties;
use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// type + channel + size, and the end octet.
pub const FRAME_OVERHEAD: usize = 8;
/// The smallest frame_max a peer may negotiate (spec FRAME-MIN-SIZE).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// One decoded frame.
#[derive(Debug)]
pub enum Frame {
    Method { channel: u16, method: AMQPClass },
    /// basic.publish on a channel (once per message): read by hand, its strings are views of
    /// the frame (`read_publish`). On channel 0 it is a `Method` (a connection error anyway).
    Publish { channel: u16, publish: Publish },
    Header { channel: u16, header: ContentHeader },
    Body { channel: u16, payload: Bytes },
    Heartbeat { channel: u16 },
}

/// basic.publish's arguments (the ticket is ignored, as RabbitMQ does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub mandatory: bool,
    pub immediate: bool,
}

/// A content header frame: the decoded fields plus the raw payload for forwarding.
#[derive(Debug, Clone)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    /// Boxed when set: the properties are a few hundred bytes, and a frame moves several times
    /// between the socket and the queue (a profile showed those moves as 16 % of the broker's
    /// CPU); shared when none is set (`Properties`).
    pub properties: Properties,
    /// The whole header payload as received (class, weight, body size, flags, properties).
    pub raw: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Texts follow RabbitMQ's (`type T, all octets = <<…>>: reason`, see [`payload_snippet`]).
    #[error("type {kind}, all octets = <<>>: {{frame_too_large,{size},{max}}}")]
    TooLarge { kind: u8, size: u32, max: u32 },
    #[error("type {kind}, {}: {{invalid_frame_end_marker,{end}}}", payload_snippet(payload))]
    BadEnd { kind: u8, payload: Bytes, end: u8 },
    #[error("type {kind}, {}: unknown_frame", payload_snippet(payload))]
    UnknownType { kind: u8, payload: Bytes },
    #[error("unknown method {class_id}/{method_id}")]
    UnknownMethod { class_id: u16, method_id: u16 },
    /// A valid method with an argument Warren (like RabbitMQ) does not implement: 540.
    #[error("{text}")]
    NotImplemented { class_id: u16, method_id: u16, text: String },
    #[error("cannot decode {what} on channel {channel}")]
    Malformed { channel: u16, what: &'static str, class_id: u16, method_id: u16 },
    /// Field tables or arrays nested deeper than `guard::MAX_NESTING`.
    #[error("cannot decode {what} on channel {channel}: field tables nested deeper than {} levels", guard::MAX_NESTING)]
    TooDeep { channel: u16, what: &'static str, class_id: u16, method_id: u16 },
}

/// Splits one complete frame off the front of `buf`. `Ok(None)` means more bytes are needed.
/// `frame_max` is the negotiated maximum frame size including the 8 bytes of overhead.
pub fn parse_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if size as u64 + FRAME_OVERHEAD as u64 > frame_max as u64 {
        return Err(FrameError::TooLarge { kind, size, max: frame_max - FRAME_OVERHEAD as u32 });
    }
    let total = size as usize + FRAME_OVERHEAD;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let end = buf[total - 1];
    let mut frame = split_frame(buf, size as usize);
    if end != FRAME_END {
        return Err(FrameError::BadEnd { kind, payload: frame.freeze(), end });
    }
    // Bounded nesting and byte-tolerant short strings before the generated decoder (guard.rs).
    let mut repaired = None;
    let checked = match kind {
        FRAME_METHOD => guard::method(&mut frame),
        FRAME_HEADER => match guard::content_header(&mut frame, false) {
            // Decode a repaired copy; the raw header forwarded to consumers stays as sent.
            Ok(true) => {
                let mut copy = frame.clone();
                guard::content_header(&mut copy, true).map(|_| repaired = Some(copy))
            }
            other => other.map(drop),
        },
        _ => Ok(()),
    };
    let payload = frame.freeze();
    if let Err(e) = checked {
        let (class_id, method_id) = if kind == FRAME_METHOD { ids(&payload) } else { (0, 0) };
        let what = if kind == FRAME_METHOD { "method frame" } else { "content header" };
        return Err(match e {
            guard::GuardError::TooDeep => FrameError::TooDeep { channel, what, class_id, method_id },
            guard::GuardError::Malformed => FrameError::Malformed { channel, what, class_id, method_id },
        });
    }
    match kind {
        FRAME_METHOD => {
            if channel != 0
                && ids(&payload) == (60, 40)
                && let Some(publish) = read_publish(&payload)
            {
                return Ok(Some(Frame::Publish { channel, publish }));
            }
            decode_method(channel, &payload).map(|method| Some(Frame::Method { channel, method }))
        }
        FRAME_HEADER => decode_header(channel, payload, repaired.as_deref()).map(|header| Some(Frame::Header { channel, header })),
        FRAME_BODY => Ok(Some(Frame::Body { channel, payload })),
        FRAME_HEARTBEAT => Ok(Some(Frame::Heartbeat { channel })),
        kind => Err(FrameError::UnknownType { kind, payload }),
    }
}

/// The content of a basic.publish just parsed on `channel`, when it follows whole in `buf`: a
/// content header frame that `parse_frame` would accept as it is (no short string to repair)
/// and, unless the body is empty, one body frame carrying all of it. Both are taken from `buf`
/// and returned as `parse_frame` would have returned them one by one. None, with nothing taken,
/// in every other case (content still arriving, a body in several frames, anything invalid):
/// `parse_frame` then reads the frames one at a time, with its errors.
pub fn take_content(buf: &mut BytesMut, channel: u16, frame_max: u32) -> Option<(ContentHeader, Option<Bytes>)> {
    let head = frame_at(buf, 0, FRAME_HEADER, channel, frame_max)?;
    // As `parse_frame`: the guard's walk, then the decoder, here on the bytes in place (the walk
    // without repair only reads them).
    if guard::content_header(&mut buf[7..7 + head], false) != Ok(false) {
        return None;
    }
    let (class_id, body_size, properties) = header_fields(&buf[7..7 + head])?;
    let h_total = head + FRAME_OVERHEAD;
    let body = if body_size == 0 {
        0
    } else {
        match frame_at(buf, h_total, FRAME_BODY, channel, frame_max) {
            Some(n) if n as u64 == body_size => n,
            _ => return None,
        }
    };
    let header = ContentHeader { class_id, body_size, properties, raw: split_frame(buf, head).freeze() };
    if body == 0 {
        return Some((header, None));
    }
    Some((header, Some(split_frame(buf, body).freeze())))
}

/// Splits the complete frame with a payload of `size` bytes off the front of `buf`: its payload.
#[inline]
fn split_frame(buf: &mut BytesMut, size: usize) -> BytesMut {
    let mut frame = buf.split_to(size + FRAME_OVERHEAD);
    frame.advance(7);
    frame.truncate(size);
    frame
}

/// The payload size of the complete frame of type `kind` on `channel` at `buf[at..]`, if there
/// is one there within `frame_max` and with its end marker.
fn frame_at(buf: &[u8], at: usize, kind: u8, channel: u16, frame_max: u32) -> Option<usize> {
    let f = buf.get(at..)?;
    if f.len() < 7 || f[0] != kind || u16::from_be_bytes([f[1], f[2]]) != channel {
        return None;
    }
    let size = u32::from_be_bytes([f[3], f[4], f[5], f[6]]);
    if size as u64 + FRAME_OVERHEAD as u64 > frame_max as u64 {
        return None;
    }
    let size = size as usize;
    (f.len() >= size + FRAME_OVERHEAD && f[size + 7] == FRAME_END).then_some(size)
}

/// How RabbitMQ quotes a frame payload in frame errors (`rabbit_reader:payload_snippet`): all of
/// it up to 16 bytes, else the first 16.
pub fn payload_snippet(b: &[u8]) -> String {
    if b.len() <= 16 {
        format!("all octets = {}", erlang_binary(b))
    } else {
        format!("first 16 octets = {}", erlang_binary(&b[..16]))
    }
}

/// Formats bytes as Erlang prints a binary: `<<"text">>` if printable, else `<<1,2,3>>`.
pub fn erlang_binary(b: &[u8]) -> String {
    if !b.is_empty() && b.iter().all(|c| (32..127).contains(c)) {
        let mut s = String::from("<<\"");
        for c in b {
            if *c == b'"' || *c == b'\\' {
                s.push('\\');
            }
            s.push(*c as char);
        }
        s.push_str("\">>");
        return s;
    }
    let parts: Vec<String> = b.iter().map(|c| c.to_string()).collect();
    format!("<<{}>>", parts.join(","))
}

fn ids(payload: &[u8]) -> (u16, u16) {
    if payload.len() < 4 {
        return (0, 0);
    }
    (u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]))
}

fn known_method(class_id: u16, method_id: u16) -> bool {
    matches!(
        (class_id, method_id),
        (10, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51 | 60 | 61)
            | (20, 10 | 11 | 20 | 21 | 40 | 41)
            | (30, 10 | 11)
            | (40, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 51)
            | (50, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51)
            | (60, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 50 | 60 | 70 | 71 | 72 | 80 | 90 | 100 | 110 | 111 | 120)
            | (85, 10 | 11)
            | (90, 10 | 11 | 20 | 21 | 30 | 31)
    )
}

fn decode_method(channel: u16, payload: &[u8]) -> Result<AMQPClass, FrameError> {
    let (class_id, method_id) = ids(payload);
    // The generated basic.qos drops prefetch-size (it is always 0 for clients); RabbitMQ refuses
    // any other value, so look at the raw field first.
    if (class_id, method_id) == (60, 10) && payload.len() >= 8 {
        let prefetch_size = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        if prefetch_size != 0 {
            return Err(FrameError::NotImplemented { class_id, method_id, text: format!("prefetch_size!=0 ({prefetch_size})") });
        }
    }
    if let Some(method) = decode_hot(class_id, method_id, payload) {
        return Ok(method);
    }
    match amq_protocol::protocol::parse_class(payload) {
        Ok((rest, method)) if rest.is_empty() => Ok(method),
        _ if !known_method(class_id, method_id) => Err(FrameError::UnknownMethod { class_id, method_id }),
        _ => Err(FrameError::Malformed { channel, what: "method frame", class_id, method_id }),
    }
}

/// basic.publish and basic.ack arrive once per message. The generated decoder builds their bit
/// flags as a `Vec` of `(String, bool)` (three allocations and a name lookup per flag, ~10 % of
/// the broker's CPU per message in a profile), so these two are read here, like [`Deliver`]
/// is written by hand. `guard::method` has already walked the ack's payload against the spec's
/// layout; the publish's is not walked there (`read_publish` checks its lengths and makes its
/// short strings UTF-8 the guard's way). Anything unexpected (trailing bytes) returns
/// None and takes the generated decoder's path, which reports the error. Unit tests check both
/// decoders agree, on the layouts generated from the spec too.
fn decode_hot(class_id: u16, method_id: u16, payload: &[u8]) -> Option<AMQPClass> {
    match (class_id, method_id) {
        (60, 40) => {
            // Only on channel 0 (elsewhere parse_frame makes a `Frame::Publish`) and in tests.
            let p = read_publish(&Bytes::copy_from_slice(payload))?;
            Some(AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: (&p.exchange).into(),
                routing_key: (&p.routing_key).into(),
                mandatory: p.mandatory,
                immediate: p.immediate,
            })))
        }
        (60, 80) => {
            // delivery-tag:u64 bits(multiple)
            let rest: &[u8; 9] = payload[4..].try_into().ok()?;
            let delivery_tag = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
            Some(AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag, multiple: rest[8] & 1 != 0 })))
        }
        _ => None,
    }
}

/// basic.publish's arguments from its method payload: exchange and routing key are views of
/// `payload`, taken as RabbitMQ takes short strings (bytes: invalid UTF-8 sequences become `?`,
/// as `guard::method` does for the other methods; basic.publish is not walked there). None if
/// a length runs past the payload or bytes follow the flags.
fn read_publish(payload: &Bytes) -> Option<Publish> {
    // class:u16 method:u16 ticket:u16 exchange:shortstr routing-key:shortstr bits(mandatory, immediate)
    let x_len = *payload.get(6)? as usize;
    let exchange = 7..7 + x_len;
    let k_len = *payload.get(exchange.end)? as usize;
    let key = exchange.end + 1..exchange.end + 1 + k_len;
    if payload.len() != key.end + 1 {
        return None;
    }
    let bits = payload[key.end];
    Some(Publish {
        exchange: ShortStr::from_wire(payload.slice(exchange)),
        routing_key: ShortStr::from_wire(payload.slice(key)),
        mandatory: bits & 1 != 0,
        immediate: bits & 2 != 0,
    })
}

/// `repaired`: the payload with non-UTF-8 short strings replaced (guard.rs), to decode from.
fn decode_header(channel: u16, payload: Bytes, repaired: Option<&[u8]>) -> Result<ContentHeader, FrameError> {
    let Some((class_id, body_size, properties)) = header_fields(repaired.unwrap_or(&payload)) else {
        return Err(FrameError::Malformed { channel, what: "content header", class_id: 0, method_id: 0 });
    };
    Ok(ContentHeader { class_id, body_size, properties, raw: payload })
}

/// A content header payload's class, body size and properties; None if it is malformed.
#[inline]
fn header_fields(payload: &[u8]) -> Option<(u16, u64, Properties)> {
    if payload.len() < 14 {
        return None;
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let body_size = u64::from_be_bytes(payload[4..12].try_into().expect("8 bytes"));
    if payload.len() == 14 && payload[12..14] == [0, 0] {
        // No property flag set: the defaults, without the generated decoder (once per message).
        return Some((class_id, body_size, Properties::default()));
    }
    match basic::parse_properties(&payload[12..]) {
        Ok((rest, properties)) if rest.is_empty() => Some((class_id, body_size, Properties::new(properties))),
        _ => None,
    }
}

/// Appends a method frame.
pub fn write_method(out: &mut BytesMut, channel: u16, method: AMQPClass) {
    let frame = AMQPFrame::Method(channel, method);
    let ctx = WriteContext::from(Vec::with_capacity(64));
    let (bytes, _) = gen_frame(&frame)(ctx).expect("writing to a Vec cannot fail").into_inner();
    out.extend_from_slice(&bytes);
}

/// Appends a heartbeat frame.
pub fn write_heartbeat(out: &mut BytesMut) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Appends a content header frame from a raw header payload (as received from a publisher).
pub fn write_header_raw(out: &mut BytesMut, channel: u16, raw: &[u8]) {
    out.reserve(raw.len() + FRAME_OVERHEAD);
    put_frame(out, FRAME_HEADER, channel, raw);
}

/// Encodes a content header payload for properties the broker made itself.
pub fn encode_header(body_size: u64, properties: &AMQPProperties) -> Bytes {
    let frame = AMQPFrame::Header(
        0,
        amq_protocol::frame::AMQPContentHeader { class_id: super::CLASS_BASIC, body_size, properties: properties.clone() },
    );
    let ctx = WriteContext::from(Vec::with_capacity(64));
    let (bytes, _) = gen_frame(&frame)(ctx).expect("writing to a Vec cannot fail").into_inner();
    Bytes::copy_from_slice(&bytes[7..bytes.len() - 1])
}

/// Appends body frames, splitting `body` so that no frame exceeds `frame_max`.
pub fn write_body(out: &mut BytesMut, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    out.reserve(body.len() + FRAME_OVERHEAD * body.len().div_ceil(chunk));
    for part in body.chunks(chunk) {
        put_frame(out, FRAME_BODY, channel, part);
    }
}

/// Puts one frame around `payload` (into a `BytesMut`, or a slice already sized for it).
#[inline]
fn put_frame(w: &mut impl BufMut, kind: u8, channel: u16, payload: &[u8]) {
    w.put_u8(kind);
    w.put_u16(channel);
    w.put_u32(payload.len() as u32);
    w.put_slice(payload);
    w.put_u8(FRAME_END);
}

#[inline]
fn put_shortstr(w: &mut impl BufMut, s: &str) {
    let b = s.as_bytes();
    debug_assert!(b.len() <= 255);
    w.put_u8(b.len() as u8);
    w.put_slice(b);
}

/// A delivery's basic.deliver arguments. This is the hottest frame the broker writes, so it is
/// encoded here without building an `AMQPClass` (which would allocate its strings); a unit test
/// checks it byte for byte against the generated encoder.
pub struct Deliver<'a> {
    pub consumer_tag: &'a str,
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: &'a str,
    pub routing_key: &'a str,
}

impl Deliver<'_> {
    #[inline]
    fn payload_size(&self) -> usize {
        4 + 1 + self.consumer_tag.len() + 8 + 1 + 1 + self.exchange.len() + 1 + self.routing_key.len()
    }

    #[inline]
    fn frame_size(&self) -> usize {
        self.payload_size() + FRAME_OVERHEAD
    }

    /// Appends the basic.deliver method frame.
    pub fn write(&self, out: &mut BytesMut, channel: u16) {
        out.reserve(self.frame_size());
        self.put(out, channel);
    }

    /// Puts the basic.deliver method frame.
    #[inline]
    fn put(&self, w: &mut impl BufMut, channel: u16) {
        w.put_u8(FRAME_METHOD);
        w.put_u16(channel);
        w.put_u32(self.payload_size() as u32);
        w.put_u16(60);
        w.put_u16(60);
        put_shortstr(w, self.consumer_tag);
        w.put_u64(self.delivery_tag);
        w.put_u8(self.redelivered as u8);
        put_shortstr(w, self.exchange);
        put_shortstr(w, self.routing_key);
        w.put_u8(FRAME_END);
    }
}

/// Appends a whole delivery: basic.deliver, the content header as received (`header_raw`) and
/// the body in frames of at most `frame_max`, as [`Deliver::write`], [`write_header_raw`] and
/// [`write_body`] one after the other would. When the body fits one frame (nearly always) the
/// three frames are written after one reservation, into the buffer as a slice, without a
/// capacity check per field.
pub fn write_delivery(out: &mut BytesMut, channel: u16, d: &Deliver<'_>, header_raw: &[u8], body: &[u8], frame_max: u32) {
    let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    if body.len() > chunk {
        d.write(out, channel);
        write_header_raw(out, channel, header_raw);
        write_body(out, channel, body, frame_max);
        return;
    }
    let mut total = d.frame_size() + header_raw.len() + FRAME_OVERHEAD;
    if !body.is_empty() {
        total += body.len() + FRAME_OVERHEAD;
    }
    let start = out.len();
    out.resize(start + total, 0);
    let mut w: &mut [u8] = &mut out[start..];
    d.put(&mut w, channel);
    put_frame(&mut w, FRAME_HEADER, channel, header_raw);
    if !body.is_empty() {
        put_frame(&mut w, FRAME_BODY, channel, body);
    }
    debug_assert!(w.is_empty());
}

/// Appends a basic.ack (confirm) frame; encoded by hand like [`Deliver`], tested the same way.
pub fn write_ack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    out.reserve(21);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(13);
    out.put_u16(60);
    out.put_u16(80);
    out.put_u64(delivery_tag);
    out.put_u8(multiple as u8);
    out.put_u8(FRAME_END);
}

#[cfg(test)]
mod tests;
