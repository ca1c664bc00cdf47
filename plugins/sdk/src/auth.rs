//! Authentication and authorization backends (world `auth-backend`): RabbitMQ's
//! `rabbit_authn_backend` + `rabbit_authz_backend`.
//!
//! Implement [`AuthBackend`] and export it with [`crate::export_auth_backend!`]. The broker keeps
//! a pool of instances and may send any call to any of them: keep what a login needs to know
//! later in `User::state`, not in globals.

pub use crate::bindings::auth_backend::{Credentials, Decision, Permission, User, VhostResource};
pub use crate::bindings::auth_backend::warren::plugin::auth_types::ResourceKind;

/// An auth backend. Each function is the WIT export of the same name (see
/// `wit/auth-backend.wit`), with the same arguments.
pub trait AuthBackend: 'static {
    /// One line for `warren-plugins list`. Called once on load.
    fn describe() -> String;

    /// Checks the configuration (read with [`crate::host::config`]); `Err(reason)` refuses the
    /// plugin and the broker does not start. Default: `Ok(())`.
    fn init() -> Result<(), String> {
        Ok(())
    }

    /// Checks credentials: `Ok(user)` accepts, `Err(reason)` refuses (the reason goes to the
    /// broker log only) and the next backend of the chain is asked.
    fn login(credentials: Credentials) -> Result<User, String>;

    /// `connection.update-secret`. Default: `Ok(user)` unchanged, as the WIT asks of a backend
    /// whose logins never expire (the new secret is not looked at and grants nothing new).
    /// A backend whose users expire (tokens) must check `new_secret` and return the new user.
    fn update_secret(user: User, new_secret: String) -> Result<User, String> {
        let _ = new_secret;
        Ok(user)
    }

    /// May `user` open a connection to `vhost`? (`connection.open`.)
    fn check_vhost(user: User, vhost: String, peer: String) -> Decision;

    /// May `user` use the exchange or queue `resource` with `permission`?
    fn check_resource(user: User, resource: VhostResource, permission: Permission) -> Decision;

    /// May `user` publish (`write`) or bind (`read`) with `routing_key` on the topic exchange
    /// `resource`? Default: `Allow` (RabbitMQ: a user without topic permissions may use every
    /// routing key).
    fn check_topic(user: User, resource: VhostResource, permission: Permission, routing_key: String, variables: Vec<(String, String)>) -> Decision {
        let _ = (user, resource, permission, routing_key, variables);
        Decision::Allow
    }
}

/// Exports `$ty` (a type implementing [`AuthBackend`]) as the component's `auth-backend` world
/// and installs the panic hook ([`crate::panic::install_hook`]). Use it once per crate.
#[macro_export]
macro_rules! export_auth_backend {
    ($ty:ty) => {
        const _: () = {
            use $crate::auth::{AuthBackend, Credentials, Decision, Permission, User, VhostResource};
            struct WarrenAuthBackend;
            impl $crate::bindings::auth_backend::Guest for WarrenAuthBackend {
                fn describe() -> String {
                    $crate::panic::install_hook();
                    <$ty as AuthBackend>::describe()
                }
                fn init() -> Result<(), String> {
                    $crate::panic::install_hook();
                    <$ty as AuthBackend>::init()
                }
                fn login(c: Credentials) -> Result<User, String> {
                    $crate::panic::install_hook();
                    <$ty as AuthBackend>::login(c)
                }
                fn update_secret(u: User, new_secret: String) -> Result<User, String> {
                    $crate::panic::install_hook();
                    <$ty as AuthBackend>::update_secret(u, new_secret)
                }
                fn check_vhost(u: User, vhost: String, peer: String) -> Decision {
                    $crate::panic::install_hook();
                    <$ty as AuthBackend>::check_vhost(u, vhost, peer)
                }
                fn check_resource(u: User, r: VhostResource, p: Permission) -> Decision {
                    $crate::panic::install_hook();
                    <$ty as AuthBackend>::check_resource(u, r, p)
                }
                fn check_topic(u: User, r: VhostResource, p: Permission, routing_key: String, variables: Vec<(String, String)>) -> Decision {
                    $crate::panic::install_hook();
                    <$ty as AuthBackend>::check_topic(u, r, p, routing_key, variables)
                }
            }
            $crate::bindings::auth_backend::export_raw!(WarrenAuthBackend with_types_in $crate::bindings::auth_backend);
        };
    };
}
