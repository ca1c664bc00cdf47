//! Guest panics to the broker log.

use std::sync::Once;

/// Sends the message of a panic to the broker log (`host.log` at error level, one line) before
/// the guest aborts. With `panic = "abort"` on `wasm32-unknown-unknown` the message is otherwise
/// lost: the host sees only an `unreachable` trap. The export macros call this at the start of
/// every export (after the first call it is one atomic load), so you need not call it yourself.
pub fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let text = info.to_string();
            crate::log::error(&text.lines().collect::<Vec<_>>().join(" "));
        }))
    });
}
