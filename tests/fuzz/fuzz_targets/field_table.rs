//! A field table as it appears in arguments and headers: the guard walk, then (when the guard
//! accepts it) the generated decoder, the encoder, and the decoder again must agree.
#![no_main]
use amq_protocol::types::generation::gen_field_table;
use amq_protocol::types::parsing::parse_field_table;
use amq_protocol::frame::WriteContext;
use libfuzzer_sys::fuzz_target;
use warren_fuzz::protocol::guard;

fuzz_target!(|data: &[u8]| {
    // queue.declare(ticket 0, queue "q", flags 0, arguments = data as the table body).
    let mut payload = vec![0u8, 50, 0, 10, 0, 0, 1, b'q', 0];
    payload.extend_from_slice(&(data.len() as u32).to_be_bytes());
    payload.extend_from_slice(data);
    if guard::method(&mut payload).is_err() {
        return;
    }
    let table_bytes = &payload[9..];
    let Ok((rest, table)) = parse_field_table(table_bytes) else { return };
    assert!(rest.is_empty());
    let ctx = WriteContext::from(Vec::new());
    let (encoded, _) = gen_field_table(&table)(ctx).expect("encoding to a Vec").into_inner();
    let (rest, again) = parse_field_table(&encoded[..]).expect("our own encoding decodes");
    assert!(rest.is_empty());
    // Compared as bytes: a NaN float is not equal to itself.
    let (encoded_again, _) = gen_field_table(&again)(WriteContext::from(Vec::new())).expect("encoding to a Vec").into_inner();
    assert_eq!(encoded_again, encoded);
});

