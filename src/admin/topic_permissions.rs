//! rabbitmqctl's topic permission commands: `set_topic_permissions`, `clear_topic_permissions`,
//! `list_topic_permissions`, `list_user_topic_permissions`. Texts, columns and exit codes are
//! rabbitmqctl 3.10's (observed against the reference node).

use super::users::{EX_DATAERR, EX_UNAVAILABLE, fail, fail_bare, ok, permission_errors};
use super::{Request, Response};
use crate::broker::Broker;
use crate::broker::access::AccessError;
use serde_json::json;
use std::sync::Arc;

/// Handles the command if it is one of this module's.
pub fn handle(broker: &Arc<Broker>, req: &Request) -> Option<Response> {
    let a = &req.args;
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
    let vhost = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    Some(match req.command.as_str() {
        "set_topic_permissions" => match broker.set_topic_permissions(arg(0), &vhost, arg(1), arg(2), arg(3)) {
            Ok(()) => ok(),
            // A topic pattern is shown as an Elixir string ("("), a permission's as a charlist.
            Err(AccessError::InvalidRegex(p, why, at)) => {
                fail(EX_UNAVAILABLE, format!("{{:invalid_regexp, {}, {{'{why}', {at}}}}}", json!(p)))
            }
            Err(e) => permission_errors(e),
        },
        "clear_topic_permissions" => match broker.clear_topic_permissions(arg(0), &vhost, a.get(1).map(String::as_str)) {
            Ok(_) => ok(),
            Err(e) => permission_errors(e),
        },
        "list_topic_permissions" => {
            if broker.vhost(&vhost).is_none() {
                return Some(fail_bare(EX_DATAERR, format!("Virtual host '{vhost}' does not exist")));
            }
            let rows = broker
                .topic_permissions()
                .into_iter()
                .filter(|r| r.vhost == vhost)
                .map(|r| vec![json!(r.user), json!(r.exchange), json!(r.write), json!(r.read)])
                .collect();
            Response::table(&["user", "exchange", "write", "read"], rows)
        }
        "list_user_topic_permissions" => {
            let user = arg(0);
            if broker.user(user).is_none() {
                return Some(fail(EX_UNAVAILABLE, format!("{{:no_such_user, \"{user}\"}}")));
            }
            let rows = broker
                .topic_permissions()
                .into_iter()
                .filter(|r| r.user == user)
                .map(|r| vec![json!(r.vhost), json!(r.exchange), json!(r.write), json!(r.read)])
                .collect();
            Response::table(&["vhost", "exchange", "write", "read"], rows)
        }
        _ => return None,
    })
}
