//! The routes of runtime parameters and limits: `/api/parameters` (all, per component, per
//! component and vhost, one with GET/PUT/DELETE), `/api/global-parameters` (`/NAME`),
//! `PUT /api/cluster-name`, `/api/vhost-limits` and `/api/user-limits` (lists; one limit PUT and
//! DELETE, GET of one limit 405 as RabbitMQ 3.10), onto the `parameters.*`,
//! `global_parameters.*`, `cluster_name.put`, `vhost_limits.*` and `user_limits.*` operations.

use super::{Failure, body, call, created, empty, method_not_allowed, with};
use serde_json::{Value, json};
use warren_plugin_sdk::http::{Request, Response};

type Answer<'a> = &'a dyn Fn(&str, Value) -> Result<Response, Failure>;

/// The answer to `req` (path segments `s` after `/api/`) if it is one of these routes; `list`
/// and `one` answer a list or an object with the request's query parameters applied.
pub(super) fn route(req: &Request, s: &[&str], list: Answer<'_>, one: Answer<'_>) -> Option<Result<Response, Failure>> {
    answer(req, s, list, one).transpose()
}

fn answer(req: &Request, s: &[&str], list: Answer<'_>, one: Answer<'_>) -> Result<Option<Response>, Failure> {
    let m = req.method.as_str();
    let get = m == "GET" || m == "HEAD";
    let r = match (m, s) {
        (_, ["parameters", rest @ ..]) if rest.len() <= 2 && get => list("parameters.list", json!({"component": rest.first(), "vhost": rest.get(1)})),
        (_, ["parameters", component, vhost, name]) => {
            let at = json!({"component": component, "vhost": vhost, "name": name});
            match m {
                "GET" | "HEAD" => one("parameters.get", at),
                "PUT" => Ok(created(call("parameters.put", with(at, json!({"body": body(req)?})))?)),
                "DELETE" => {
                    call("parameters.delete", at)?;
                    Ok(empty(204))
                }
                _ => method_not_allowed(),
            }
        }
        // GET /api/cluster-name is served with the overview's routes.
        ("PUT", ["cluster-name"]) => Ok(created(call("cluster_name.put", json!({"body": body(req)?}))?)),
        (_, ["cluster-name"]) if !get => method_not_allowed(),
        (_, ["global-parameters"]) if get => list("global_parameters.list", json!({})),
        (_, ["global-parameters", name]) => match m {
            "GET" | "HEAD" => one("global_parameters.get", json!({"name": name})),
            "PUT" => Ok(created(call("global_parameters.put", json!({"name": name, "body": body(req)?}))?)),
            "DELETE" => {
                call("global_parameters.delete", json!({"name": name}))?;
                Ok(empty(204))
            }
            _ => method_not_allowed(),
        },
        (_, [kind @ ("vhost-limits" | "user-limits"), rest @ ..]) if rest.len() <= 2 => {
            let (op, key) = if *kind == "vhost-limits" { ("vhost_limits", "vhost") } else { ("user_limits", "user") };
            match (m, rest) {
                (_, [] | [_]) if get => list(&format!("{op}.list"), json!({ key: rest.first() })),
                ("PUT", [on, name]) => Ok(created(call(&format!("{op}.put"), json!({ key: on, "name": name, "body": body(req)? }))?)),
                ("DELETE", [on, name]) => {
                    call(&format!("{op}.delete"), json!({ key: on, "name": name }))?;
                    Ok(empty(204))
                }
                _ => method_not_allowed(),
            }
        }
        _ => return Ok(None),
    };
    r.map(Some)
}
