//! A short string read from a frame without copying it.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// A UTF-8 string held as `Bytes`: a basic.publish's exchange and routing key are views of the
/// frame they arrived in (no allocation, no copy per message), and a message keeps them so.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ShortStr(Bytes);

impl ShortStr {
    /// Takes `bytes` as they are if they are UTF-8; otherwise a copy in which each byte of an
    /// invalid sequence is `?` (same length, as RabbitMQ's byte strings are kept by
    /// `guard::sanitize_utf8`).
    pub fn from_wire(bytes: Bytes) -> ShortStr {
        // Names are nearly always ASCII: checked inline, word by word, before the full check.
        if bytes.is_ascii() || std::str::from_utf8(&bytes).is_ok() {
            return ShortStr(bytes);
        }
        let mut v = bytes.to_vec();
        super::guard::sanitize_utf8(&mut v);
        ShortStr(Bytes::from(v))
    }

    pub fn as_str(&self) -> &str {
        self
    }
}

impl Deref for ShortStr {
    type Target = str;

    fn deref(&self) -> &str {
        // SAFETY: every constructor stores UTF-8: `from_wire` checks it (or stores a sanitized
        // copy, which is UTF-8), `From<String>`/`From<&str>` take a `str`'s bytes; `Bytes` is
        // immutable and the field is private, so the bytes never change afterwards. The unit
        // test below builds one of each kind, invalid input included, and reads it back.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl From<String> for ShortStr {
    fn from(s: String) -> ShortStr {
        ShortStr(Bytes::from(s))
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> ShortStr {
        ShortStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&ShortStr> for amq_protocol::types::ShortString {
    fn from(s: &ShortStr) -> amq_protocol::types::ShortString {
        s.as_str().into()
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constructor_reads_back_utf8() {
        let frame = Bytes::from_static(b"\x08perf-q-0rest");
        let view = ShortStr::from_wire(frame.slice(1..9));
        assert_eq!(view.as_str(), "perf-q-0");
        assert_eq!(view.as_str().as_ptr(), frame[1..].as_ptr(), "a view of the frame, not a copy");
        let bad = ShortStr::from_wire(Bytes::from_static(b"k\xC3\x28z\xFF"));
        assert_eq!(bad.as_str(), "k?(z?");
        assert!(std::str::from_utf8(bad.as_str().as_bytes()).is_ok());
        assert_eq!(ShortStr::from(String::from("é.x")).as_str(), "é.x");
        assert_eq!(ShortStr::from("a.b"), "a.b");
        assert_eq!(ShortStr::default().as_str(), "");
        assert_eq!(format!("{} {:?}", view, bad), "perf-q-0 \"k?(z?\"");
    }
}
