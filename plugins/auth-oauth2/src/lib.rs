//! warren_auth_backend_oauth2: authentication and authorization with OAuth 2.0 JWT tokens, with
//! the semantics of RabbitMQ 3.10's rabbitmq_auth_backend_oauth2.
//!
//! The client sends the token as its password (the user name is ignored unless the token names
//! no one). The token's signature is checked with the configured key (HS256/384/512 with a
//! `kty = "oct"` key, RS256/384/512 with an RSA key), its `aud` must contain
//! `resource_server_id`, `exp` (and `nbf`) are checked against the host's clock, and its scopes
//! `<resource_server_id>.configure|write|read:<vhost>/<name>[/<routing key>]` and
//! `<resource_server_id>.tag:<tag>` become the user's permissions and tags. The user name is the
//! token's `client_id`, else its `sub`.
//!
//! Configuration: the host's `config` keys (from the broker's `[auth_oauth2]` section):
//! `resource_server_id`, `default_key`, `additional_scopes_key`, `algorithms` (JSON list),
//! `signing_keys` (JSON object: key id → JWK `{kty, k}` / `{kty, n, e}` or `{pem}`).

pub mod scope;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod guest {
    use super::scope::{self, Perm};
    use super::token::{self, Claims, Settings};
    use std::sync::OnceLock;
    use warren_plugin_sdk::auth::*;
    use warren_plugin_sdk::host;

    static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();

    fn settings() -> Result<&'static Settings, String> {
        SETTINGS.get_or_init(|| Settings::parse(host::config)).as_ref().map_err(|e| format!("[auth_oauth2] {e}"))
    }

    fn now_secs() -> i64 {
        (host::now_millis() / 1000) as i64
    }

    fn perm(p: Permission) -> Perm {
        match p {
            Permission::Configure => Perm::Configure,
            Permission::Write => Perm::Write,
            Permission::Read => Perm::Read,
        }
    }

    /// The user of a checked token (the broker keeps the claims as the user's state).
    fn user_of(claims: Claims, client_username: &str) -> Result<User, String> {
        let username = match &claims.name {
            Some(n) => n.clone(),
            None if !client_username.is_empty() => client_username.to_string(),
            None => return Err("Authentication using an OAuth 2/JWT token failed: the token has no sub or client_id and no user name was given".into()),
        };
        Ok(User {
            username,
            tags: claims.tags(),
            expires_at: claims.exp.map(|e| (e.max(0) as u64).saturating_mul(1000)),
            state: serde_json::to_vec(&claims).expect("claims serialise"),
        })
    }

    /// RabbitMQ's `with_decoded_token`: the claims of `u`, unless the token has expired.
    fn with_claims(u: &User, f: impl FnOnce(&Claims) -> bool) -> Decision {
        let Ok(claims) = serde_json::from_slice::<Claims>(&u.state) else {
            return Decision::Error("the user's token state is unreadable".into());
        };
        if let Some(e) = claims.expiry_error(now_secs()) {
            host::log(host::LogLevel::Error, &e);
            return Decision::Error(e);
        }
        if f(&claims) { Decision::Allow } else { Decision::Deny }
    }

    struct OAuth2;

    impl AuthBackend for OAuth2 {
        fn describe() -> String {
            "OAuth 2.0 (JWT) authentication and authorisation: tokens as passwords, scopes as permissions (rabbitmq_auth_backend_oauth2)".into()
        }

        fn init() -> Result<(), String> {
            settings().map(|_| ())
        }

        fn login(c: Credentials) -> Result<User, String> {
            let s = settings()?;
            let claims = token::check(s, &c.password, now_secs())?;
            user_of(claims, &c.username)
        }

        fn update_secret(u: User, new_secret: String) -> Result<User, String> {
            let s = settings()?;
            let claims = token::check(s, &new_secret, now_secs())?;
            let mut new = user_of(claims, &u.username)?;
            new.username = u.username;
            Ok(new)
        }

        fn check_vhost(u: User, vhost: String, _peer: String) -> Decision {
            with_claims(&u, |c| scope::vhost_access(&vhost, &c.scope))
        }

        fn check_resource(u: User, r: VhostResource, p: Permission) -> Decision {
            with_claims(&u, |c| scope::resource_access(&r.vhost, &r.name, perm(p), &c.scope))
        }

        fn check_topic(u: User, r: VhostResource, p: Permission, routing_key: String, _variables: Vec<(String, String)>) -> Decision {
            with_claims(&u, |c| scope::topic_access(&r.vhost, &r.name, &routing_key, perm(p), &c.scope))
        }
    }

    warren_plugin_sdk::export_auth_backend!(OAuth2);
}
