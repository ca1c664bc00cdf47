//! rabbitmqctl's limit commands: `set_vhost_limits`, `clear_vhost_limits`, `list_vhost_limits
//! [--global]`, `set_user_limits`, `clear_user_limits USER NAME|all`, `list_user_limits [--user
//! U] [--global]`. Texts and exit codes are rabbitmqctl 3.10's (observed against the reference
//! node); the info lines are `cli::banner`'s.

use super::users::{EX_DATAERR, EX_SOFTWARE, EX_UNAVAILABLE};
use super::{Request, Response};
use crate::broker::Broker;
use crate::broker::access::AccessError;
use crate::broker::limits::{self, LimitScope};
use serde_json::Value;
use std::sync::Arc;

fn fail(code: u8, text: impl Into<String>) -> Response {
    Response { exit_code: Some(code), ..Response::error(text) }
}

fn no_vhost(v: &str) -> Response {
    Response { bare_error: true, ..fail(EX_DATAERR, format!("Virtual host '{v}' does not exist")) }
}

fn no_user(u: &str) -> Response {
    fail(EX_UNAVAILABLE, format!("{{:no_such_user, \"{u}\"}}"))
}

fn access_error(e: AccessError) -> Response {
    match e {
        AccessError::NoSuchUser(u) => no_user(&u),
        AccessError::NoSuchVhost(v) => no_vhost(&v),
        other => fail(EX_SOFTWARE, other.to_string()),
    }
}

/// The value of `--user U` among the arguments (rabbitmqctl's default user is guest).
fn user_option(args: &[String]) -> String {
    args.iter().position(|a| a == "--user").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "guest".into())
}

/// Handles the command if it is one of this module's.
pub fn handle(broker: &Arc<Broker>, req: &Request) -> Option<Response> {
    let a = &req.args;
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
    let vhost = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    let global = a.iter().any(|x| x == "--global");
    Some(match req.command.as_str() {
        "set_vhost_limits" => match limits::parse(LimitScope::Vhost, arg(0)) {
            Err(e) => fail(EX_UNAVAILABLE, e.to_string()),
            Ok(l) => broker.set_vhost_limits(&vhost, l).map(|_| Response::default()).unwrap_or_else(access_error),
        },
        "clear_vhost_limits" => match broker.clear_vhost_limits(&vhost) {
            Ok(true) => Response::default(),
            Ok(false) => fail(EX_UNAVAILABLE, "Parameter does not exist"),
            Err(e) => access_error(e),
        },
        "list_vhost_limits" if global => {
            let rows = broker
                .vhosts()
                .into_iter()
                .filter_map(|v| {
                    let l = v.limits.read().clone();
                    (!l.is_empty()).then(|| vec![Value::from(v.name.clone()), Value::from(limits::to_json(&l))])
                })
                .collect();
            Response::table(&["vhost", "limits"], rows)
        }
        "list_vhost_limits" => match broker.vhost_limits(&vhost) {
            None => no_vhost(&vhost),
            Some(l) if l.is_empty() => Response::message(""),
            Some(l) => Response::message(limits::to_json(&l)),
        },
        "set_user_limits" => match limits::parse(LimitScope::User, arg(1)) {
            Err(e) => fail(EX_UNAVAILABLE, e.to_string()),
            Ok(l) => broker.set_user_limits(arg(0), l).map(|_| Response::default()).unwrap_or_else(access_error),
        },
        "clear_user_limits" => broker.clear_user_limits(arg(0), arg(1)).map(|_| Response::default()).unwrap_or_else(access_error),
        "list_user_limits" if global => {
            let rows = broker
                .users()
                .into_iter()
                .filter(|u| !u.limits.is_empty())
                .map(|u| vec![Value::from(u.name.clone()), Value::from(limits::to_json(&u.limits))])
                .collect();
            Response::table(&["user", "limits"], rows)
        }
        "list_user_limits" => {
            let user = user_option(a);
            match broker.user_limits(&user) {
                None => no_user(&user),
                Some(l) if l.is_empty() => Response::message("{}"),
                Some(l) => Response::message(limits::to_json(&l)),
            }
        }
        _ => return None,
    })
}
