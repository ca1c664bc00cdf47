//! rabbitmqctl's global parameter commands: `set_global_parameter NAME VALUE` (VALUE is JSON),
//! `clear_global_parameter NAME`, `list_global_parameters` (values printed as JSON text).
//! Texts and exit codes are rabbitmqctl 3.10's (observed against the reference node); the
//! info lines are `cli::banner`'s. Warren has `cluster_name` and `internal_cluster_id`
//! (`broker/global_parameters.rs`); another name is refused.

use super::users::EX_UNAVAILABLE;
use super::{Request, Response};
use crate::broker::Broker;
use serde_json::Value;
use std::sync::Arc;

fn fail(text: impl Into<String>) -> Response {
    Response { exit_code: Some(EX_UNAVAILABLE), ..Response::error(text) }
}

/// Handles the command if it is one of this module's.
pub fn handle(broker: &Arc<Broker>, req: &Request) -> Option<Response> {
    let arg = |i: usize| req.args.get(i).map(String::as_str).unwrap_or("");
    Some(match req.command.as_str() {
        "set_global_parameter" => match serde_json::from_str::<Value>(arg(1)) {
            Err(_) => fail("JSON decoding error. Reason: badarg"),
            Ok(v) => match broker.set_global_parameter(arg(0), v) {
                Ok(()) => Response::default(),
                Err(e) => fail(e.0),
            },
        },
        "clear_global_parameter" => match broker.clear_global_parameter(arg(0)) {
            Ok(true) => Response::default(),
            Ok(false) => fail("Parameter does not exist"),
            Err(e) => fail(e.0),
        },
        "list_global_parameters" => {
            let rows = broker.global_parameters().into_iter().map(|(n, v)| vec![Value::from(n), Value::from(v.to_string())]).collect();
            Response::table(&["name", "value"], rows)
        }
        _ => return None,
    })
}
