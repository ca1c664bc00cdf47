//! rabbitmqctl's policy commands: `set_policy [--priority N] [--apply-to queues|exchanges|all]
//! NAME PATTERN DEFINITION`, `clear_policy NAME`, `list_policies`, and the same for operator
//! policies (`set_operator_policy`, `clear_operator_policy`, `list_operator_policies`). Texts
//! and exit codes are rabbitmqctl 3.10's, observed against the reference node; the info lines
//! are `cli::banner`'s.

use super::users::{EX_DATAERR, EX_SOFTWARE, EX_UNAVAILABLE};
use super::{Request, Response};
use crate::broker::Broker;
use crate::broker::policies::PolicyCommandError;
use crate::broker::policy::PolicyKind;
use serde_json::json;
use std::sync::Arc;

/// The arguments of `set_policy` / `set_operator_policy`, options taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetArgs {
    pub positional: Vec<String>,
    /// `--priority` as given (default "0").
    pub priority: String,
    pub apply_to: String,
}

impl SetArgs {
    pub fn parse(args: &[String]) -> SetArgs {
        let mut out = SetArgs { positional: Vec::new(), priority: "0".into(), apply_to: "all".into() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--priority" => out.priority = it.next().cloned().unwrap_or_default(),
                "--apply-to" => out.apply_to = it.next().cloned().unwrap_or_default(),
                _ => match (a.strip_prefix("--priority="), a.strip_prefix("--apply-to=")) {
                    (Some(p), _) => out.priority = p.into(),
                    (_, Some(t)) => out.apply_to = t.into(),
                    _ => out.positional.push(a.clone()),
                },
            }
        }
        out
    }

    /// The priority, if it is an integer (rabbitmqctl refuses anything else before it calls
    /// the node: "Invalid options for this command: --priority : x", 64).
    pub fn priority(&self) -> Option<i64> {
        self.priority.parse().ok()
    }

    fn arg(&self, i: usize) -> &str {
        self.positional.get(i).map(String::as_str).unwrap_or("")
    }
}

fn kind_of(command: &str) -> PolicyKind {
    if command.contains("operator") { PolicyKind::Operator } else { PolicyKind::User }
}

fn fail(code: u8, text: impl Into<String>) -> Response {
    Response { exit_code: Some(code), ..Response::error(text) }
}

fn no_vhost(v: &str) -> Response {
    Response { bare_error: true, ..fail(EX_DATAERR, format!("Virtual host '{v}' does not exist")) }
}

fn command_error(e: PolicyCommandError) -> Response {
    match e {
        PolicyCommandError::NoSuchVhost(v) => no_vhost(&v),
        PolicyCommandError::Invalid(e) => fail(EX_UNAVAILABLE, e.to_string()),
        PolicyCommandError::NotFound => fail(EX_UNAVAILABLE, "Parameter does not exist"),
        PolicyCommandError::Store(s) => fail(EX_SOFTWARE, format!("the store refused the change: {s}")),
    }
}

/// Handles the command if it is one of this module's.
pub fn handle(broker: &Arc<Broker>, req: &Request) -> Option<Response> {
    let vhost = req.vhost.clone().unwrap_or_else(|| broker.config.auth.default_vhost.clone());
    let kind = kind_of(&req.command);
    Some(match req.command.as_str() {
        "set_policy" | "set_operator_policy" => {
            let a = SetArgs::parse(&req.args);
            let Some(priority) = a.priority() else {
                return Some(fail(super::users::EX_USAGE, format!("Invalid options for this command:\n--priority : {}", a.priority)));
            };
            match broker.set_policy(kind, &vhost, a.arg(0), a.arg(1), &a.apply_to, priority, a.arg(2)) {
                Ok(()) => Response::default(),
                Err(e) => command_error(e),
            }
        }
        "clear_policy" | "clear_operator_policy" => {
            match broker.clear_policy(kind, &vhost, req.args.first().map(String::as_str).unwrap_or("")) {
                Ok(()) => Response::default(),
                Err(e) => command_error(e),
            }
        }
        "list_policies" | "list_operator_policies" => match broker.policies(kind, &vhost) {
            None => no_vhost(&vhost),
            Some(ps) => {
                let rows = ps
                    .iter()
                    .map(|p| {
                        vec![json!(vhost), json!(p.name), json!(p.pattern), json!(p.apply_to.as_str()), json!(p.definition_json()), json!(p.priority)]
                    })
                    .collect();
                Response::table(&["vhost", "name", "pattern", "apply-to", "definition", "priority"], rows)
            }
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::SetArgs;

    #[test]
    fn options_anywhere_and_with_equals() {
        let a = SetArgs::parse(&["n".into(), "--priority=3".into(), "p".into(), "{}".into(), "--apply-to".into(), "queues".into()]);
        assert_eq!((a.positional.len(), a.priority(), a.apply_to.as_str()), (3, Some(3), "queues"));
        assert_eq!(SetArgs::parse(&["--priority".into(), "x".into()]).priority(), None);
    }
}
