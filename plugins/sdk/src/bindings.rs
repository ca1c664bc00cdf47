//! The generated bindings of the three worlds of `warren:plugin@0.1.0` (the folder `wit/`,
//! two levels up from this crate: `plugins/sdk` in Warren's checkout, `vendor/warren-plugin-sdk`
//! in a project made by `warren-plugins new`).
//!
//! Generated here with wit-bindgen's options for library crates: `pub_export_macro` (the export
//! macros can be used from the plugin's crate), `default_bindings_module` (they find these
//! modules by path) and `export_macro_name`. With `pub_export_macro` a world's exports are only
//! described to `wit-component` where its export macro is used; its imports (types included)
//! are described whenever its module is compiled in, so each module is behind the cargo feature
//! of its world and a plugin enables exactly one.
//!
//! Plugins normally use the traits and macros of [`crate::exchange`], [`crate::auth`] and
//! [`crate::http`] instead of these modules.

/// World `exchange-type` (and the interfaces `types` and `host`).
#[cfg(feature = "exchange-type")]
pub mod exchange_type {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "exchange-type",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        default_bindings_module: "warren_plugin_sdk::bindings::exchange_type",
        export_macro_name: "export_raw",
    });
}

/// World `auth-backend` (and the interfaces `auth-types` and `host`).
#[cfg(feature = "auth-backend")]
pub mod auth_backend {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "auth-backend",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        default_bindings_module: "warren_plugin_sdk::bindings::auth_backend",
        export_macro_name: "export_raw",
    });
}

/// World `http-handler` (and the interfaces `http-types`, `admin` and `host`).
#[cfg(feature = "http-handler")]
pub mod http_handler {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "http-handler",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        default_bindings_module: "warren_plugin_sdk::bindings::http_handler",
        export_macro_name: "export_raw",
    });
}

#[cfg(feature = "exchange-type")]
pub use exchange_type::warren::plugin::host;
#[cfg(feature = "auth-backend")]
pub use auth_backend::warren::plugin::host;
#[cfg(feature = "http-handler")]
pub use http_handler::warren::plugin::host;
