//! The built-in exchange types, embedded as components built by `plugins/build.sh` (the
//! `.wasm` files are committed, so building the broker needs no Wasm toolchain).

/// (plugin name, component bytes) of every built-in exchange type.
pub const BUILTINS: [(&str, &[u8]); 4] = [
    ("direct", DIRECT),
    ("fanout", FANOUT),
    ("topic", TOPIC),
    ("headers", HEADERS),
];

pub const DIRECT: &[u8] = include_bytes!("../../plugins/builtin/direct.wasm");
pub const FANOUT: &[u8] = include_bytes!("../../plugins/builtin/fanout.wasm");
pub const TOPIC: &[u8] = include_bytes!("../../plugins/builtin/topic.wasm");
pub const HEADERS: &[u8] = include_bytes!("../../plugins/builtin/headers.wasm");
