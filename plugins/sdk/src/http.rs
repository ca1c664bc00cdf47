//! HTTP handlers (world `http-handler`): plugins that serve HTTP on a listener the broker owns
//! (management API and UI, prometheus).
//!
//! Implement [`HttpHandler`] and export it with [`crate::export_http_handler!`]. Every request
//! runs in a fresh instance. [`admin::call`] runs the broker's admin operations as the
//! request's user.

pub use crate::bindings::http_handler::warren::plugin::admin;
pub use crate::bindings::http_handler::warren::plugin::http_types::Principal;
pub use crate::bindings::http_handler::{Request, Response};

/// An HTTP handler. Each function is the WIT export of the same name (see
/// `wit/http-handler.wit`).
pub trait HttpHandler: 'static {
    /// One line for `warren-plugins list`. Called once on load.
    fn describe() -> String;

    /// Path prefixes (e.g. "/api/") whose requests need the credentials of a management user;
    /// the broker checks them before `handle`. Called once on load. Default: none.
    fn protected_prefixes() -> Vec<String> {
        Vec::new()
    }

    /// Handles one request.
    fn handle(request: Request) -> Response;
}

/// Exports `$ty` (a type implementing [`HttpHandler`]) as the component's `http-handler` world
/// and installs the panic hook ([`crate::panic::install_hook`]). Use it once per crate.
#[macro_export]
macro_rules! export_http_handler {
    ($ty:ty) => {
        const _: () = {
            use $crate::http::{HttpHandler, Request, Response};
            struct WarrenHttpHandler;
            impl $crate::bindings::http_handler::Guest for WarrenHttpHandler {
                fn describe() -> String {
                    $crate::panic::install_hook();
                    <$ty as HttpHandler>::describe()
                }
                fn protected_prefixes() -> Vec<String> {
                    $crate::panic::install_hook();
                    <$ty as HttpHandler>::protected_prefixes()
                }
                fn handle(request: Request) -> Response {
                    $crate::panic::install_hook();
                    <$ty as HttpHandler>::handle(request)
                }
            }
            $crate::bindings::http_handler::export_raw!(WarrenHttpHandler with_types_in $crate::bindings::http_handler);
        };
    };
}

/// Percent-decoding of one path segment ("%2F" → "/"); bytes that are not UTF-8 become U+FFFD.
pub fn decode_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// A query string's parameters in order, form-decoded (`+` is a space), as RabbitMQ reads them.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}
