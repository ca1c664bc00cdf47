//! rabbitmqctl's user, vhost and permission commands: `add_user`, `delete_user`,
//! `change_password`, `clear_password`, `authenticate_user`, `set_user_tags`, `list_users`,
//! `add_vhost`, `delete_vhost`, `set_permissions`, `clear_permissions`, `list_permissions`,
//! `list_user_permissions`. Error texts and exit codes are rabbitmqctl 3.10's (observed against
//! the reference node); the info lines ("Adding user ...") are printed by `warrenctl` itself.

use super::{Request, Response};
use crate::broker::Broker;
use crate::broker::access::AccessError;
use serde_json::{Value, json};
use std::sync::Arc;

/// rabbitmqctl's exit codes (sysexits).
pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOUSER: u8 = 67;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_SOFTWARE: u8 = 70;

pub(super) fn fail(code: u8, text: impl Into<String>) -> Response {
    Response { exit_code: Some(code), ..Response::error(text) }
}

/// An error printed without the "Error:" line, as rabbitmqctl does for a few commands.
pub(super) fn fail_bare(code: u8, text: impl Into<String>) -> Response {
    Response { bare_error: true, ..fail(code, text) }
}

pub(super) fn ok() -> Response {
    Response::default()
}

fn store_failed(e: &AccessError) -> Option<Response> {
    match e {
        AccessError::Store(s) => Some(fail(EX_SOFTWARE, format!("the store refused the change: {s}"))),
        _ => None,
    }
}

/// `User "x" does not exist` (67), the text of delete_user, change_password, set_user_tags.
fn quoted_user_errors(e: AccessError) -> Response {
    if let Some(r) = store_failed(&e) {
        return r;
    }
    match e {
        AccessError::NoSuchUser(u) => fail(EX_NOUSER, format!("User \"{u}\" does not exist")),
        AccessError::UserExists(u) => fail(EX_SOFTWARE, format!("User \"{u}\" already exists")),
        other => fail(EX_SOFTWARE, other.to_string()),
    }
}

/// set_permissions / clear_permissions: `User x does not exist` (67), `Virtual host v does not
/// exist` (69), `{:invalid_regexp, '(', {'reason', 1}}` (69).
pub(super) fn permission_errors(e: AccessError) -> Response {
    if let Some(r) = store_failed(&e) {
        return r;
    }
    match e {
        AccessError::NoSuchUser(u) => fail(EX_NOUSER, format!("User {u} does not exist")),
        AccessError::NoSuchVhost(v) => fail(EX_UNAVAILABLE, format!("Virtual host {v} does not exist")),
        AccessError::InvalidRegex(p, why, at) => fail(EX_UNAVAILABLE, format!("{{:invalid_regexp, '{p}', {{'{why}', {at}}}}}")),
        other => fail(EX_SOFTWARE, other.to_string()),
    }
}

fn tags_value(tags: &[String]) -> Value {
    json!(tags)
}

/// Handles the command if it is one of this module's.
pub fn handle(broker: &Arc<Broker>, req: &Request) -> Option<Response> {
    let a = &req.args;
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
    let vhost = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    Some(match req.command.as_str() {
        "add_user" => match broker.create_user(arg(0), arg(1)) {
            Ok(()) => ok(),
            Err(e) => quoted_user_errors(e),
        },
        "delete_user" => match broker.delete_user(arg(0)) {
            Ok(()) => ok(),
            Err(e) => quoted_user_errors(e),
        },
        "change_password" => match broker.set_password(arg(0), Some(arg(1))) {
            Ok(()) => ok(),
            Err(e) => quoted_user_errors(e),
        },
        "clear_password" => match broker.set_password(arg(0), None) {
            Ok(()) => ok(),
            Err(AccessError::NoSuchUser(u)) => fail(EX_UNAVAILABLE, format!("{{:no_such_user, \"{u}\"}}")),
            Err(e) => quoted_user_errors(e),
        },
        "authenticate_user" => {
            if broker.authenticate(arg(0), arg(1)) {
                Response::message("Success")
            } else {
                let u = arg(0);
                fail(EX_DATAERR, format!("Error: failed to authenticate user \"{u}\"\nuser '{u}' - invalid credentials"))
            }
        }
        "set_user_tags" => match broker.set_user_tags(arg(0), a.iter().skip(1).cloned().collect()) {
            Ok(()) => ok(),
            Err(e) => quoted_user_errors(e),
        },
        "list_users" => {
            let rows = broker.users().iter().map(|u| vec![json!(u.name), tags_value(&u.tags)]).collect();
            Response::table(&["user", "tags"], rows)
        }
        "add_vhost" => match broker.create_vhost(arg(0)) {
            Ok(_) => ok(),
            Err(e) => store_failed(&e).unwrap_or_else(|| fail(EX_SOFTWARE, e.to_string())),
        },
        "delete_vhost" => match broker.delete_vhost(arg(0)) {
            Ok(()) => ok(),
            Err(AccessError::NoSuchVhost(v)) => fail_bare(EX_DATAERR, format!("Virtual host '{v}' does not exist")),
            Err(e) => store_failed(&e).unwrap_or_else(|| fail(EX_SOFTWARE, e.to_string())),
        },
        "set_permissions" => match broker.set_permissions(arg(0), &vhost, arg(1), arg(2), arg(3)) {
            Ok(()) => ok(),
            Err(e) => permission_errors(e),
        },
        "clear_permissions" => match broker.clear_permissions(arg(0), &vhost) {
            Ok(()) => ok(),
            Err(e) => permission_errors(e),
        },
        "list_permissions" => {
            if broker.vhost(&vhost).is_none() {
                return Some(fail_bare(EX_DATAERR, format!("Virtual host '{vhost}' does not exist")));
            }
            let rows = broker
                .permissions()
                .into_iter()
                .filter(|(v, _, _)| *v == vhost)
                .map(|(_, u, p)| vec![json!(u), json!(p.patterns[0]), json!(p.patterns[1]), json!(p.patterns[2])])
                .collect();
            Response::table(&["user", "configure", "write", "read"], rows)
        }
        "list_user_permissions" => {
            let user = arg(0);
            if broker.user(user).is_none() {
                return Some(fail(EX_UNAVAILABLE, format!("{{:no_such_user, \"{user}\"}}")));
            }
            let rows = broker
                .permissions()
                .into_iter()
                .filter(|(_, u, _)| u == user)
                .map(|(v, _, p)| vec![json!(v), json!(p.patterns[0]), json!(p.patterns[1]), json!(p.patterns[2])])
                .collect();
            Response::table(&["vhost", "configure", "write", "read"], rows)
        }
        _ => return None,
    })
}
