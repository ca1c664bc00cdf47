//! HTTP Basic authentication of the management listeners, with RabbitMQ's rules: the
//! credentials go through the broker's auth backend chain (and `loopback_users`), and the user
//! needs one of the management tags. Administrator-only operations are checked later, by the
//! admin operations themselves.

use super::HttpResponse;
use crate::auth_backend::{AuthUser, Credentials};
use crate::broker::Broker;
use base64::Engine;
use std::net::SocketAddr;

/// Tags that open the management API (RabbitMQ's `management`, and the tags that include it).
pub const MANAGEMENT_TAGS: [&str; 4] = ["management", "policymaker", "monitoring", "administrator"];

/// Whether `user` has tag `tag` (RabbitMQ: `administrator` implies every other tag,
/// `monitoring` and `policymaker` imply `management`).
pub fn has_tag(user: &AuthUser, tag: &str) -> bool {
    let has = |t: &str| user.tags.iter().any(|x| x == t);
    match tag {
        "administrator" => has("administrator"),
        "monitoring" => has("monitoring") || has("administrator"),
        "policymaker" => has("policymaker") || has("administrator"),
        _ => MANAGEMENT_TAGS.iter().any(|t| has(t)),
    }
}

/// The user of a request with `authorization` header value `header` (None: no header), or the
/// 401 answer RabbitMQ gives.
pub fn login(broker: &Broker, header: Option<&str>, peer: SocketAddr, local: SocketAddr) -> Result<AuthUser, HttpResponse> {
    let Some((user, pass)) = header.and_then(decode_basic) else {
        return Err(challenge(HttpResponse { status: 401, headers: Vec::new(), body: Vec::new() }));
    };
    let loopback_ok = !broker.config.auth.loopback_users.contains(&user) || local.ip().is_loopback();
    let login = broker.auth.login(&Credentials { username: &user, password: &pass, peer });
    match login {
        Ok(u) if loopback_ok => {
            if has_tag(&u, "management") {
                Ok(u)
            } else {
                Err(challenge(HttpResponse::error(401, "not_authorised", "Not management user")))
            }
        }
        _ => Err(challenge(HttpResponse::error(401, "not_authorized", "Login failed"))),
    }
}

fn challenge(mut r: HttpResponse) -> HttpResponse {
    r.headers.push(("www-authenticate".into(), "Basic realm=\"RabbitMQ Management\"".into()));
    r
}

/// `Basic <base64(user:pass)>` → (user, pass).
fn decode_basic(h: &str) -> Option<(String, String)> {
    let (scheme, rest) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_decodes() {
        assert_eq!(decode_basic("Basic Z3Vlc3Q6Z3Vlc3Q="), Some(("guest".into(), "guest".into())));
        assert_eq!(decode_basic("basic Z3Vlc3Q6YTpi"), Some(("guest".into(), "a:b".into())));
        assert_eq!(decode_basic("Bearer xyz"), None);
        assert_eq!(decode_basic("Basic !!!"), None);
    }
}
