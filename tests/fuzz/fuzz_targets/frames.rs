//! A byte stream as a connection's reader sees it: frames are split off one by one with the
//! connection's frame_max, methods and content headers are decoded (after the guard walk), and
//! whatever decodes is encoded again and decoded back to the same value. Errors become reply
//! texts that must fit a short string. Nothing may panic, overflow the stack or allocate without
//! bound.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_fuzz::protocol::frame::{self, Frame, parse_frame};
use warren_fuzz::protocol::reply::{ErrorKind, ReplyError};

fuzz_target!(|data: &[u8]| {
    // The first byte picks frame_max: the smallest allowed, the default, or something between.
    let Some((&pick, stream)) = data.split_first() else { return };
    let frame_max = match pick % 3 {
        0 => frame::FRAME_MIN_SIZE,
        1 => 131_072,
        _ => frame::FRAME_MIN_SIZE + (pick as u32) * 64,
    };
    let mut buf = BytesMut::from(stream);
    loop {
        match parse_frame(&mut buf, frame_max) {
            Ok(None) => break,
            Ok(Some(Frame::Method { channel, method })) => {
                let mut out = BytesMut::new();
                frame::write_method(&mut out, channel, method.clone());
                let again = parse_frame(&mut out, u32::MAX).expect("our own encoding decodes").expect("a whole frame");
                match again {
                    Frame::Method { method: m2, .. } => assert_eq!(format!("{m2:?}"), format!("{method:?}")),
                    other => panic!("re-encoded method decoded as {other:?}"),
                }
            }
            Ok(Some(Frame::Publish { channel, publish })) => {
                // basic.publish read by hand: encoded by the generated encoder, read back the same.
                let method = warren_fuzz::protocol::AMQPClass::Basic(warren_fuzz::protocol::basic::AMQPMethod::Publish(
                    warren_fuzz::protocol::basic::Publish {
                        exchange: publish.exchange.as_str().into(),
                        routing_key: publish.routing_key.as_str().into(),
                        mandatory: publish.mandatory,
                        immediate: publish.immediate,
                    },
                ));
                let mut out = BytesMut::new();
                frame::write_method(&mut out, channel, method);
                match parse_frame(&mut out, u32::MAX).expect("our own encoding decodes").expect("a whole frame") {
                    Frame::Publish { publish: p2, .. } => assert_eq!(p2, publish),
                    other => panic!("re-encoded publish decoded as {other:?}"),
                }
                // Its content taken with it as one unit (`take_content`, as the connection does) is
                // what the frames read one by one give; the stream itself goes on frame by frame.
                let mut whole = buf.clone();
                if let Some((header, body)) = frame::take_content(&mut whole, channel, frame_max) {
                    let mut one = buf.clone();
                    let Ok(Some(Frame::Header { channel: c, header: h })) = parse_frame(&mut one, frame_max) else {
                        panic!("take_content took a header that parse_frame does not return as it is")
                    };
                    assert_eq!((c, h.class_id, h.body_size, &h.raw), (channel, header.class_id, header.body_size, &header.raw));
                    assert!(*h.properties == *header.properties);
                    match body {
                        None => assert_eq!(header.body_size, 0),
                        Some(body) => {
                            let Ok(Some(Frame::Body { channel: c, payload })) = parse_frame(&mut one, frame_max) else {
                                panic!("take_content took a body that parse_frame does not return")
                            };
                            assert_eq!((c, &payload, body.len() as u64), (channel, &body, header.body_size));
                        }
                    }
                    assert_eq!(one, whole);
                }
            }
            Ok(Some(Frame::Header { header, .. })) => {
                let raw = frame::encode_header(header.body_size, &header.properties);
                assert!(raw.len() >= 14);
            }
            Ok(Some(Frame::Body { .. } | Frame::Heartbeat { .. })) => {}
            Err(e) => {
                let text = ReplyError::new(ErrorKind::FrameError, e.to_string()).wire_text();
                assert!(text.as_str().len() <= 255);
                break;
            }
        }
    }
});
