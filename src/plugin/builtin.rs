//! The plugins inside the binary, as components built by `plugins/build.sh` and
//! `plugins/examples/build-all.sh` (the `.wasm` files are committed, so building the broker needs
//! no Wasm toolchain; CI checks they match a fresh build).
//!
//! - Built-in exchange types (direct, fanout, topic, headers): always enabled (`[e*]`).
//! - Shipped plugins: optional, listed by `warren-plugins list` on a fresh data directory and
//!   enabled by name like RabbitMQ's bundled plugins; RabbitMQ's names are accepted as aliases.

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

/// An optional plugin shipped inside the binary.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    /// Warren's name, used in `enabled_plugins`.
    pub name: &'static str,
    /// RabbitMQ's names for the same plugin, accepted everywhere a name is.
    pub aliases: &'static [&'static str],
    pub bytes: &'static [u8],
}

/// The shipped plugins, sorted by name.
pub const SHIPPED: [Shipped; 5] = [
    Shipped {
        name: "warren_auth_backend_oauth2",
        aliases: &["rabbitmq_auth_backend_oauth2"],
        // plugins/auth-oauth2 (built by plugins/build.sh): an auth-backend, used by naming it in
        // [auth] backends and configured by [auth_oauth2].
        bytes: include_bytes!("../../plugins/shipped/auth-oauth2.wasm"),
    },
    Shipped {
        name: "warren_consistent_hash_exchange",
        aliases: &["rabbitmq_consistent_hash_exchange"],
        // The Rust example (plugins/examples/consistent-hash), x-consistent-hash.
        bytes: include_bytes!("../../plugins/examples/consistent-hash/consistent-hash.wasm"),
    },
    Shipped {
        name: "warren_management",
        aliases: &["rabbitmq_management"],
        // plugins/management: RabbitMQ's HTTP API (world http-handler), on [management] port.
        bytes: include_bytes!("../../plugins/shipped/management.wasm"),
    },
    Shipped {
        name: "warren_prometheus",
        aliases: &["rabbitmq_prometheus"],
        // plugins/prometheus: RabbitMQ's Prometheus metrics (world http-handler), on [prometheus]
        // port; its paths need no login and may only run the read-only metrics.* operations.
        bytes: include_bytes!("../../plugins/shipped/prometheus.wasm"),
    },
    Shipped {
        name: "warren_random_exchange",
        aliases: &["rabbitmq_random_exchange"],
        // The C example (plugins/examples/random-c), x-random.
        bytes: include_bytes!("../../plugins/examples/random-c/random-c.wasm"),
    },
];

/// The shipped plugin called `name` (Warren's name or one of RabbitMQ's).
pub fn shipped(name: &str) -> Option<&'static Shipped> {
    SHIPPED.iter().find(|s| s.name == name || s.aliases.contains(&name))
}

/// Whether `name` is a built-in exchange type's plugin.
pub fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|(n, _)| *n == name)
}
