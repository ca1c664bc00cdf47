//! Frame reading and writing against the generated codec, byte for byte.

use super::*;
use amq_protocol::types::{AMQPValue, FieldTable};

fn generated(channel: u16, m: AMQPClass) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_method(&mut out, channel, m);
    out.to_vec()
}

#[test]
fn deliver_matches_generated_encoder() {
    let mut out = BytesMut::new();
    Deliver { consumer_tag: "amq.ctag-x", delivery_tag: 42, redelivered: true, exchange: "amq.topic", routing_key: "a.b.c" }.write(&mut out, 7);
    let m = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
        consumer_tag: "amq.ctag-x".into(),
        delivery_tag: 42,
        redelivered: true,
        exchange: "amq.topic".into(),
        routing_key: "a.b.c".into(),
    }));
    assert_eq!(out.to_vec(), generated(7, m));
}

/// `write_delivery` writes what `Deliver::write`, `write_header_raw` and `write_body` write,
/// for empty, one-frame and several-frame bodies, after existing output.
#[test]
fn delivery_matches_its_three_frames() {
    let header = encode_header(5, &AMQPProperties::default().with_message_id("m".into()));
    for body_len in [0usize, 1, 120, 121, 500] {
        let body: Vec<u8> = (0..body_len).map(|i| i as u8).collect();
        let (tag, x, rk) = ("amq.ctag-1", "amq.topic", "k".repeat(body_len.min(255)));
        let mut one = BytesMut::from(&b"before"[..]);
        let d = Deliver { consumer_tag: tag, delivery_tag: 9 + body_len as u64, redelivered: body_len % 2 == 1, exchange: x, routing_key: &rk };
        write_delivery(&mut one, 4, &d, &header, &body, 128);
        let mut three = BytesMut::from(&b"before"[..]);
        d.write(&mut three, 4);
        write_header_raw(&mut three, 4, &header);
        if !body.is_empty() {
            write_body(&mut three, 4, &body, 128);
        }
        assert_eq!(one, three, "body of {body_len} bytes");
    }
}

#[test]
fn ack_matches_generated_encoder() {
    let mut out = BytesMut::new();
    write_ack(&mut out, 3, 99, true);
    let m = AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 99, multiple: true }));
    assert_eq!(out.to_vec(), generated(3, m));
}

/// The hand-read basic.publish and basic.ack give what the generated decoder gives, for
/// every flag combination, empty and 255-byte strings; and their layouts are the spec's.
#[test]
fn hot_methods_decode_as_the_generated_decoder() {
    use super::super::guard::{Field, method_layout};
    assert_eq!(method_layout(60, 40), Some(&[Field::Fixed(2), Field::ShortStr, Field::ShortStr, Field::Fixed(1)][..]));
    assert_eq!(method_layout(60, 80), Some(&[Field::Fixed(8), Field::Fixed(1)][..]));
    let long = "k".repeat(255);
    let mut methods = Vec::new();
    for (exchange, key) in [("", ""), ("amq.topic", "a.b.c"), ("x", long.as_str())] {
        for (mandatory, immediate) in [(false, false), (true, false), (false, true), (true, true)] {
            methods.push(AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: exchange.into(),
                routing_key: key.into(),
                mandatory,
                immediate,
            })));
        }
    }
    for (delivery_tag, multiple) in [(0, false), (1, true), (u64::MAX, false)] {
        methods.push(AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag, multiple })));
    }
    for m in methods {
        let frame = generated(1, m.clone());
        let payload = &frame[7..frame.len() - 1];
        let hot = decode_hot(ids(payload).0, ids(payload).1, payload).expect("hot path taken");
        let (_, gen_decoded) = amq_protocol::protocol::parse_class(payload).unwrap();
        assert_eq!(hot, gen_decoded);
        assert_eq!(hot, m);
    }
}

/// A publish's exchange and routing key that are not UTF-8 are taken with `?` for each byte
/// of an invalid sequence (same length), as the guard does for other methods' short strings.
#[test]
fn hot_publish_takes_non_utf8_short_strings_as_the_guard_does() {
    let mut payload = vec![0, 60, 0, 40, 0, 0, 2, b'e', 0xFF, 4, b'k', 0xC3, 0x28, b'z', 1];
    let Some(AMQPClass::Basic(basic::AMQPMethod::Publish(p))) = decode_hot(60, 40, &payload) else { panic!("hot path not taken") };
    assert_eq!((p.exchange.as_str(), p.routing_key.as_str(), p.mandatory), ("e?", "k?(z", true));
    // Through parse_frame, as a client sends it: a `Frame::Publish` on a channel, a method
    // (for the connection to refuse) on channel 0.
    let frame = |channel: u8, payload: &[u8]| {
        let mut f = BytesMut::new();
        f.extend_from_slice(&[1, 0, channel, 0, 0, 0, payload.len() as u8]);
        f.extend_from_slice(payload);
        f.extend_from_slice(&[FRAME_END]);
        f
    };
    let Ok(Some(Frame::Publish { channel: 1, publish })) = parse_frame(&mut frame(1, &payload), 4096) else { panic!("not a publish") };
    assert_eq!((publish.exchange.as_str(), publish.routing_key.as_str(), publish.mandatory, publish.immediate), ("e?", "k?(z", true, false));
    let Ok(Some(Frame::Method { channel: 0, method })) = parse_frame(&mut frame(0, &payload), 4096) else { panic!("not a method") };
    assert_eq!(method, AMQPClass::Basic(basic::AMQPMethod::Publish(p)));
    payload.push(0);
    assert_eq!(decode_hot(60, 40, &payload), None);
    assert!(matches!(parse_frame(&mut frame(1, &payload), 4096), Err(FrameError::Malformed { class_id: 60, method_id: 40, .. })));
}

/// Truncated or over-long payloads leave the hot path, so the generated decoder reports them.
#[test]
fn hot_methods_leave_bad_payloads_to_the_generated_decoder() {
    let frame = generated(1, AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish { exchange: "e".into(), routing_key: "k".into(), mandatory: true, immediate: false })));
    let payload = &frame[7..frame.len() - 1];
    for cut in 4..payload.len() {
        assert_eq!(decode_hot(60, 40, &payload[..cut]), None, "cut at {cut}");
    }
    let mut longer = payload.to_vec();
    longer.push(0);
    assert_eq!(decode_hot(60, 40, &longer), None);
    assert_eq!(decode_hot(60, 80, &[0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    let mut b = BytesMut::new();
    b.extend_from_slice(&[1, 0, 1, 0, 0, 0, 7, 0, 60, 0, 40, 0, 0, 9, 0xCE]);
    assert!(matches!(parse_frame(&mut b, 4096), Err(FrameError::Malformed { class_id: 60, method_id: 40, .. })));
}

#[test]
fn header_without_properties_decodes_as_the_generated_decoder() {
    let raw = encode_header(16, &AMQPProperties::default());
    assert_eq!(raw.len(), 14);
    let h = decode_header(1, raw.clone(), None).unwrap();
    assert_eq!((h.class_id, h.body_size, h.raw), (60, 16, raw.clone()));
    assert_eq!(*h.properties, basic::parse_properties(&raw[12..]).unwrap().1);
}

#[test]
fn splits_frames_and_keeps_bodies() {
    let mut buf = BytesMut::new();
    write_method(&mut buf, 1, AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 5, global: false })));
    let mut props = AMQPProperties::default().with_delivery_mode(2);
    let mut headers = FieldTable::default();
    headers.insert("k".into(), AMQPValue::LongLongInt(-5));
    props = props.with_headers(headers);
    let raw = encode_header(10, &props);
    write_header_raw(&mut buf, 1, &raw);
    write_body(&mut buf, 1, b"0123456789", 4096);
    let partial = buf.split_to(5);
    let mut rd = partial;
    assert!(parse_frame(&mut rd, 131072).unwrap().is_none());
    rd.unsplit(buf);
    match parse_frame(&mut rd, 131072).unwrap() {
        Some(Frame::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::Qos(q)) }) => assert_eq!(q.prefetch_count, 5),
        other => panic!("{other:?}"),
    }
    match parse_frame(&mut rd, 131072).unwrap() {
        Some(Frame::Header { header, .. }) => {
            assert_eq!(header.body_size, 10);
            assert_eq!(header.properties.delivery_mode(), &Some(2));
            assert_eq!(header.raw, raw);
        }
        other => panic!("{other:?}"),
    }
    match parse_frame(&mut rd, 131072).unwrap() {
        Some(Frame::Body { payload, .. }) => assert_eq!(&payload[..], b"0123456789"),
        other => panic!("{other:?}"),
    }
    assert!(rd.is_empty());
}

#[test]
fn rejects_bad_frames() {
    let mut b = BytesMut::from(&[1u8, 0, 1, 0, 0, 0x10, 0][..]);
    assert!(matches!(parse_frame(&mut b, 4096), Err(FrameError::TooLarge { .. })));
    let mut b = BytesMut::from(&[8u8, 0, 0, 0, 0, 0, 0, 0xCD][..]);
    assert_eq!(parse_frame(&mut b, 4096).unwrap_err().to_string(), "type 8, all octets = <<>>: {invalid_frame_end_marker,205}");
    let mut b = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c', 0xCE][..]);
    assert_eq!(parse_frame(&mut b, 4096).unwrap_err().to_string(), "type 9, all octets = <<\"abc\">>: unknown_frame");
    assert_eq!(erlang_binary(&[0, 60]), "<<0,60>>");
    assert_eq!(payload_snippet(&[b'a'; 17]), "first 16 octets = <<\"aaaaaaaaaaaaaaaa\">>");
    let mut b = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 4, 0, 99, 0, 10, 0xCE][..]);
    assert!(matches!(parse_frame(&mut b, 4096), Err(FrameError::UnknownMethod { class_id: 99, method_id: 10 })));
}

/// `take_content` takes a publish's header and body exactly when `parse_frame` would have
/// returned them one by one, equal to what it returns; in every other case it takes nothing.
#[test]
fn take_content_takes_whole_content_or_nothing() {
    let mut headers = FieldTable::default();
    headers.insert("k".into(), AMQPValue::LongString("v".into()));
    let with_props = AMQPProperties::default().with_delivery_mode(2).with_headers(headers);
    // (header properties, body, frame_max for the body) -> taken as parse_frame reads it
    for (props, body) in [(AMQPProperties::default(), &b"0123456789"[..]), (with_props.clone(), &b"x"[..]), (with_props, &b""[..])] {
        let mut buf = BytesMut::new();
        write_header_raw(&mut buf, 3, &encode_header(body.len() as u64, &props));
        if !body.is_empty() {
            write_body(&mut buf, 3, body, 4096);
        }
        buf.extend_from_slice(b"next");
        let mut one_by_one = buf.clone();
        let (header, payload) = take_content(&mut buf, 3, 4096).expect("whole content taken");
        let Ok(Some(Frame::Header { channel: 3, header: h })) = parse_frame(&mut one_by_one, 4096) else { panic!("header") };
        assert_eq!((header.class_id, header.body_size, &header.raw, &*header.properties), (h.class_id, h.body_size, &h.raw, &*h.properties));
        match payload {
            None => assert!(body.is_empty()),
            Some(p) => {
                let Ok(Some(Frame::Body { channel: 3, payload: b })) = parse_frame(&mut one_by_one, 4096) else { panic!("body") };
                assert_eq!((&p[..], &b[..]), (body, body));
            }
        }
        assert_eq!((&buf[..], &one_by_one[..]), (&b"next"[..], &b"next"[..]));
    }
    // Nothing taken: the buffer stays as it was.
    let whole = |body: &[u8], header_channel: u16, body_channel: u16, frame_max: u32| {
        let mut buf = BytesMut::new();
        write_header_raw(&mut buf, header_channel, &encode_header(body.len() as u64, &AMQPProperties::default()));
        write_body(&mut buf, body_channel, body, frame_max);
        buf
    };
    let cases: Vec<(&str, BytesMut, u32)> = vec![
        ("body in two frames", whole(&[1; 100], 1, 1, 64), 4096),
        ("header on another channel", whole(b"ab", 2, 1, 4096), 4096),
        ("body on another channel", whole(b"ab", 1, 2, 4096), 4096),
        ("body not arrived yet", { let mut b = whole(b"abcdef", 1, 1, 4096); b.truncate(b.len() - 1); b }, 4096),
        ("header not arrived yet", { let mut b = whole(b"ab", 1, 1, 4096); b.truncate(10); b }, 4096),
        ("frame over frame_max", whole(&[1; 100], 1, 1, 4096), 64),
        ("bad end marker", { let mut b = whole(b"ab", 1, 1, 4096); let n = b.len(); b[n - 1] = 0; b }, 4096),
        ("body shorter than announced", { let mut b = BytesMut::new(); write_header_raw(&mut b, 1, &encode_header(3, &AMQPProperties::default())); write_body(&mut b, 1, b"ab", 4096); b }, 4096),
        ("a method, not a header", { let mut b = BytesMut::new(); write_method(&mut b, 1, AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 1, multiple: false }))); b }, 4096),
        ("non-UTF-8 property (repaired by parse_frame)", {
            let mut raw = encode_header(0, &AMQPProperties::default().with_content_type("ab".into())).to_vec();
            let n = raw.len();
            raw[n - 1] = 0xFF;
            let mut b = BytesMut::new();
            write_header_raw(&mut b, 1, &raw);
            b
        }, 4096),
        ("malformed properties", { let mut b = BytesMut::new(); write_header_raw(&mut b, 1, &[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 9]); b }, 4096),
    ];
    for (what, buf, frame_max) in cases {
        let mut taken = buf.clone();
        assert!(take_content(&mut taken, 1, frame_max).is_none(), "{what}: taken");
        assert_eq!(taken, buf, "{what}: the buffer changed");
    }
}

#[test]
fn body_split_at_frame_max() {
    let mut out = BytesMut::new();
    write_body(&mut out, 1, &vec![7u8; 10_000], 4096);
    let mut n = 0;
    let mut total = 0;
    while let Some(Frame::Body { payload, .. }) = parse_frame(&mut out, 4096).unwrap() {
        n += 1;
        total += payload.len();
    }
    assert_eq!((n, total), (3, 10_000));
}
