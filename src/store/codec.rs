//! Binary encoding of a persistent message record (the value stored under
//! `(queue_id, seq)` in `v1.messages`).
//!
//! Layout, version 1 (all lengths LEB128 varints unless noted):
//!
//! ```text
//! u8      version            = 1
//! u8      flags              bit 0: delivered (may have been delivered before)
//!                            bit 1: a publish time follows
//!                            other bits must be zero
//! u64 BE  published          (only with flag bit 1) ms since the Unix epoch: recovery
//!                            computes TTL expiry from it
//! u8      exchange length    (AMQP shortstr, <= 255)
//! [u8]    exchange           UTF-8
//! u8      routing key length (AMQP shortstr, <= 255)
//! [u8]    routing key        UTF-8
//! varint  properties length
//! [u8]    properties         content-header property flags + property list, as received
//! varint  body length
//! [u8]    body
//! ```
//!
//! Nothing may follow the body: a record with trailing bytes, a short one, an
//! unknown version or unknown flag bits is rejected with [`CodecError`].
//! Decoding from a `Bytes` is zero-copy for properties and body.

use bytes::{BufMut, Bytes, BytesMut};

pub const RECORD_VERSION: u8 = 1;
const FLAG_DELIVERED: u8 = 0x01;
const FLAG_PUBLISHED: u8 = 0x02;
const KNOWN_FLAGS: u8 = FLAG_DELIVERED | FLAG_PUBLISHED;

/// The publish time (ms since the Unix epoch) of an encoded record, if it carries one, read
/// without decoding the rest.
pub fn peek_published(record: &[u8]) -> Option<u64> {
    if record.len() < 10 || record[0] != RECORD_VERSION || record[1] & FLAG_PUBLISHED == 0 {
        return None;
    }
    Some(u64::from_be_bytes(record[2..10].try_into().ok()?))
}

/// The body length of an encoded record, read without decoding (no allocation): what recovery
/// needs of each message to count a queue's bytes. None for a record that does not parse.
pub fn peek_body_len(record: &[u8]) -> Option<u32> {
    let mut r = Reader { buf: record, pos: 0 };
    if r.u8("version").ok()? != RECORD_VERSION {
        return None;
    }
    if r.u8("flags").ok()? & FLAG_PUBLISHED != 0 {
        r.range(8, "publish time").ok()?;
    }
    let ex = r.u8("exchange length").ok()? as usize;
    r.range(ex, "exchange").ok()?;
    let rk = r.u8("routing key length").ok()? as usize;
    r.range(rk, "routing key").ok()?;
    let p = r.varint("properties length").ok()?;
    r.range(p, "properties").ok()?;
    let b = r.varint("body length").ok()?;
    (r.pos.checked_add(b)? == record.len()).then_some(b as u32)
}

/// A persistent message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub exchange: String,
    pub routing_key: String,
    /// Raw content-header properties: property flags + property list, opaque.
    pub properties: Bytes,
    pub body: Bytes,
    /// The message may have been delivered to a consumer before it was
    /// (re)written; recovery should set `redelivered` for it. Note that the
    /// store never rewrites a record on delivery: after a restart the broker
    /// should treat every recovered message as possibly delivered (as RabbitMQ
    /// does) unless it keeps its own finer-grained bookkeeping.
    pub delivered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty message record")]
    Empty,
    #[error("unknown message record version {0}")]
    UnknownVersion(u8),
    #[error("unknown flag bits {0:#04x} in message record")]
    UnknownFlags(u8),
    #[error("message record truncated while reading {0}")]
    Truncated(&'static str),
    #[error("{0} is not valid UTF-8")]
    BadUtf8(&'static str),
    #[error("{0} length does not fit (too long)")]
    BadLength(&'static str),
    #[error("{0} trailing bytes after message record")]
    TrailingBytes(usize),
    #[error("{0} longer than 255 bytes")]
    ShortStrTooLong(&'static str),
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

impl StoredMessage {
    /// Size of the encoded record in bytes.
    pub fn encoded_len(&self) -> usize {
        4 + self.exchange.len()
            + self.routing_key.len()
            + varint_len(self.properties.len() as u64)
            + self.properties.len()
            + varint_len(self.body.len() as u64)
            + self.body.len()
    }

    /// Encode into a fresh buffer. Fails only if exchange or routing key is
    /// longer than an AMQP shortstr allows.
    pub fn encode(&self) -> Result<Bytes, CodecError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut buf)?;
        Ok(buf.freeze())
    }

    pub fn encode_into(&self, buf: &mut BytesMut) -> Result<(), CodecError> {
        self.encode_into_with(buf, None)
    }

    /// Encode with the message's publish time (for messages with a TTL; see
    /// [`peek_published`]).
    pub fn encode_with_published(&self, published_ms: u64) -> Result<Bytes, CodecError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len() + 8);
        self.encode_into_with(&mut buf, Some(published_ms))?;
        Ok(buf.freeze())
    }

    fn encode_into_with(&self, buf: &mut BytesMut, published: Option<u64>) -> Result<(), CodecError> {
        if self.exchange.len() > 255 {
            return Err(CodecError::ShortStrTooLong("exchange"));
        }
        if self.routing_key.len() > 255 {
            return Err(CodecError::ShortStrTooLong("routing key"));
        }
        buf.reserve(self.encoded_len());
        buf.put_u8(RECORD_VERSION);
        let flags = if self.delivered { FLAG_DELIVERED } else { 0 } | if published.is_some() { FLAG_PUBLISHED } else { 0 };
        buf.put_u8(flags);
        if let Some(t) = published {
            buf.put_u64(t);
        }
        buf.put_u8(self.exchange.len() as u8);
        buf.put_slice(self.exchange.as_bytes());
        buf.put_u8(self.routing_key.len() as u8);
        buf.put_slice(self.routing_key.as_bytes());
        put_varint(buf, self.properties.len() as u64);
        buf.put_slice(&self.properties);
        put_varint(buf, self.body.len() as u64);
        buf.put_slice(&self.body);
        Ok(())
    }

    /// Decode a record; properties and body are slices of `record` (no copy).
    pub fn decode(record: Bytes) -> Result<StoredMessage, CodecError> {
        let mut r = Reader {
            buf: &record,
            pos: 0,
        };
        let version = r.u8("version").map_err(|_| CodecError::Empty)?;
        if version != RECORD_VERSION {
            return Err(CodecError::UnknownVersion(version));
        }
        let flags = r.u8("flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(CodecError::UnknownFlags(flags & !KNOWN_FLAGS));
        }
        if flags & FLAG_PUBLISHED != 0 {
            r.range(8, "publish time")?;
        }
        let ex_len = r.u8("exchange length")? as usize;
        let exchange = r.str(ex_len, "exchange")?;
        let rk_len = r.u8("routing key length")? as usize;
        let routing_key = r.str(rk_len, "routing key")?;
        let p_len = r.varint("properties length")?;
        let p = r.range(p_len, "properties")?;
        let b_len = r.varint("body length")?;
        let b = r.range(b_len, "body")?;
        if r.pos != record.len() {
            return Err(CodecError::TrailingBytes(record.len() - r.pos));
        }
        Ok(StoredMessage {
            exchange,
            routing_key,
            properties: record.slice(p),
            body: record.slice(b),
            delivered: flags & FLAG_DELIVERED != 0,
        })
    }

    /// Decode from a borrowed slice (copies it once into a `Bytes`).
    pub fn decode_slice(record: &[u8]) -> Result<StoredMessage, CodecError> {
        Self::decode(Bytes::copy_from_slice(record))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        let b = *self.buf.get(self.pos).ok_or(CodecError::Truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, what: &'static str) -> Result<usize, CodecError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            let bits = (b & 0x7f) as u64;
            if i == 9 && bits > 1 {
                return Err(CodecError::BadLength(what));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return usize::try_from(v).map_err(|_| CodecError::BadLength(what));
            }
        }
        Err(CodecError::BadLength(what))
    }

    fn range(
        &mut self,
        len: usize,
        what: &'static str,
    ) -> Result<std::ops::Range<usize>, CodecError> {
        let end = self
            .pos
            .checked_add(len)
            .ok_or(CodecError::BadLength(what))?;
        if end > self.buf.len() {
            return Err(CodecError::Truncated(what));
        }
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }

    fn str(&mut self, len: usize, what: &'static str) -> Result<String, CodecError> {
        let r = self.range(len, what)?;
        std::str::from_utf8(&self.buf[r])
            .map(str::to_owned)
            .map_err(|_| CodecError::BadUtf8(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body_len: usize) -> StoredMessage {
        StoredMessage {
            exchange: "amq.direct".into(),
            routing_key: "orders.eu".into(),
            properties: Bytes::from_static(&[0x90, 0x00, 0x0a, b't', b'e', b'x', b't', 2]),
            body: Bytes::from((0..body_len).map(|i| i as u8).collect::<Vec<u8>>()),
            delivered: false,
        }
    }

    #[test]
    fn round_trip_various_sizes() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 1 << 20] {
            for delivered in [false, true] {
                let m = StoredMessage {
                    delivered,
                    ..sample(len)
                };
                let enc = m.encode().unwrap();
                assert_eq!(enc.len(), m.encoded_len());
                assert_eq!(StoredMessage::decode(enc.clone()).unwrap(), m);
                assert_eq!(StoredMessage::decode_slice(&enc).unwrap(), m);
                assert_eq!(peek_body_len(&enc), Some(len as u32));
                let with_time = m.encode_with_published(1_700_000_000_000).unwrap();
                assert_eq!(peek_body_len(&with_time), Some(len as u32));
                assert_eq!(peek_body_len(&enc[..enc.len() - 1]), None, "a short record");
            }
        }
    }

    #[test]
    fn round_trip_empty_names_and_max_shortstr() {
        let m = StoredMessage {
            exchange: String::new(),
            routing_key: "k".repeat(255),
            properties: Bytes::new(),
            body: Bytes::new(),
            delivered: true,
        };
        let enc = m.encode().unwrap();
        assert_eq!(enc.len(), 4 + 255 + 2);
        assert_eq!(StoredMessage::decode(enc).unwrap(), m);
    }

    #[test]
    fn rejects_overlong_shortstr() {
        let mut m = sample(1);
        m.exchange = "e".repeat(256);
        assert_eq!(m.encode(), Err(CodecError::ShortStrTooLong("exchange")));
    }

    #[test]
    fn decode_is_zero_copy() {
        let enc = sample(4096).encode().unwrap();
        let m = StoredMessage::decode(enc.clone()).unwrap();
        let range = enc.as_ptr() as usize..enc.as_ptr() as usize + enc.len();
        assert!(range.contains(&(m.body.as_ptr() as usize)));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let enc = sample(300).encode().unwrap();
        for cut in 0..enc.len() {
            let r = StoredMessage::decode(enc.slice(..cut));
            assert!(r.is_err(), "truncated at {cut} decoded: {r:?}");
        }
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut v = sample(10).encode().unwrap().to_vec();
        v.push(0);
        assert_eq!(
            StoredMessage::decode(Bytes::from(v)),
            Err(CodecError::TrailingBytes(1))
        );
    }

    #[test]
    fn garbled_headers_rejected() {
        let enc = sample(10).encode().unwrap().to_vec();
        let mut v = enc.clone();
        v[0] = 2;
        assert_eq!(
            StoredMessage::decode(Bytes::from(v)),
            Err(CodecError::UnknownVersion(2))
        );
        let mut v = enc.clone();
        v[1] = 0x80;
        assert_eq!(
            StoredMessage::decode(Bytes::from(v)),
            Err(CodecError::UnknownFlags(0x80))
        );
        // Exchange name bytes made invalid UTF-8.
        let mut v = enc.clone();
        v[3] = 0xff;
        assert_eq!(
            StoredMessage::decode(Bytes::from(v)),
            Err(CodecError::BadUtf8("exchange"))
        );
        // An overlong varint for the properties length.
        let mut v = enc[..3 + 10 + 1 + 9].to_vec();
        v.extend_from_slice(&[0xff; 11]);
        assert!(matches!(
            StoredMessage::decode(Bytes::from(v)),
            Err(CodecError::BadLength(_))
        ));
        // A huge body length claims more than is there.
        let mut v = enc[..enc.len() - 11].to_vec();
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(StoredMessage::decode(Bytes::from(v)).is_err());
        assert_eq!(StoredMessage::decode(Bytes::new()), Err(CodecError::Empty));
    }

    #[test]
    fn random_garbage_never_panics() {
        // Deterministic xorshift so the test is reproducible.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let mut v = Vec::with_capacity(len);
            let mut y = x;
            for _ in 0..len {
                y = y.wrapping_mul(6364136223846793005).wrapping_add(1);
                v.push((y >> 33) as u8);
            }
            if !v.is_empty() {
                v[0] = RECORD_VERSION;
            }
            let _ = peek_body_len(&v);
            let _ = StoredMessage::decode(Bytes::from(v));
        }
    }

    /// A record with a publish time decodes to the same message, and the time reads back
    /// without decoding; records without one have none.
    #[test]
    fn publish_time_round_trips() {
        let m = sample(100);
        let rec = m.encode_with_published(1_700_000_000_123).unwrap();
        assert_eq!(peek_published(&rec), Some(1_700_000_000_123));
        assert_eq!(StoredMessage::decode(rec).unwrap(), m);
        assert_eq!(peek_published(&m.encode().unwrap()), None);
    }
}
