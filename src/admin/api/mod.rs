//! The admin operations behind the management HTTP API: typed rows per resource (one file per
//! resource), called by HTTP-serving plugins through the `admin` host import as
//! `call(op, args)` with JSON arguments and answers. Every operation runs as the logged-in
//! [`Caller`] and checks its tags and vhost permissions as RabbitMQ's management plugin does;
//! the rows carry RabbitMQ's management field names (which are also rabbitmqctl's info keys).

pub mod bindings;
pub mod connections;
pub mod definitions;
pub mod exchanges;
pub mod fields;
pub mod global_parameters;
pub mod messages;
pub mod metrics;
pub mod overview;
pub mod parameters;
pub mod paging;
pub mod policies;
pub mod queues;
pub mod stats;
pub mod topic_permissions;
pub mod user_limits;
pub mod users;
pub mod vhost_limits;
pub mod vhosts;

use crate::auth_backend::{Access, AuthUser, ResourceKind};
use crate::broker::{Broker, Vhost};
use crate::http::auth::has_tag;
use crate::protocol::reply::ReplyError;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;

/// Who runs an operation: the user logged in to the HTTP API.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: AuthUser,
}

/// A failed operation: RabbitMQ's HTTP status and `{"error", "reason"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: u16, error: &str, reason: impl Into<String>) -> ApiError {
        ApiError { status, error: error.into(), reason: reason.into() }
    }
    pub fn not_found() -> ApiError {
        ApiError::new(404, "Object Not Found", "Not Found")
    }
    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", reason)
    }
    pub fn not_admin() -> ApiError {
        ApiError::new(401, "not_authorised", "Not administrator user")
    }
    pub fn access_refused(reason: impl Into<String>) -> ApiError {
        ApiError::new(401, "not_authorised", reason)
    }
}

impl From<ReplyError> for ApiError {
    /// An AMQP refusal as the management API reports it: 400 with the explanation (without
    /// the `NAME - ` prefix), or 401 for access refusals.
    fn from(e: ReplyError) -> ApiError {
        let reason = e.text.split_once(" - ").map_or(e.text.as_str(), |(_, r)| r).to_string();
        match e.kind {
            crate::protocol::ErrorKind::AccessRefused => ApiError::access_refused(reason),
            crate::protocol::ErrorKind::NotFound => ApiError::not_found(),
            _ => ApiError::bad_request(reason),
        }
    }
}

impl From<crate::broker::access::AccessError> for ApiError {
    fn from(e: crate::broker::access::AccessError) -> ApiError {
        use crate::broker::access::AccessError as A;
        match e {
            A::NoSuchUser(_) | A::NoSuchVhost(_) => ApiError::not_found(),
            A::Store(s) => ApiError::new(500, "internal_error", s),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

pub type ApiResult = Result<Value, ApiError>;

impl Caller {
    pub fn name(&self) -> &str {
        &self.user.username
    }
    pub fn is(&self, tag: &str) -> bool {
        has_tag(&self.user, tag)
    }
    pub fn require(&self, tag: &str) -> Result<(), ApiError> {
        if self.is(tag) {
            Ok(())
        } else if tag == "administrator" {
            Err(ApiError::not_admin())
        } else {
            Err(ApiError::new(401, "not_authorised", format!("Not {tag} user")))
        }
    }
    /// May the caller see vhost `name`'s contents? (monitoring and administrator see all).
    pub fn sees_vhost(&self, broker: &Broker, name: &str) -> bool {
        self.is("monitoring") || self.can_enter(broker, name)
    }
    fn can_enter(&self, _broker: &Broker, name: &str) -> bool {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        self.user.backend.check_vhost(&self.user, name, peer).allowed()
    }
    /// Vhost `name` for an operation on its contents: 404 if missing, 401 if the caller has no
    /// access to it (RabbitMQ's "User not authorised to access virtual host").
    pub fn vhost(&self, broker: &Broker, name: &str) -> Result<Arc<Vhost>, ApiError> {
        let v = broker.vhost(name).ok_or_else(ApiError::not_found)?;
        if !self.can_enter(broker, name) && !self.is("administrator") {
            return Err(ApiError::access_refused("User not authorised to access virtual host"));
        }
        Ok(v)
    }
    /// `access` on resource `kind` `name` of `vhost`, with RabbitMQ's refusal text.
    pub fn check(&self, vhost: &str, kind: ResourceKind, name: &str, access: Access) -> Result<(), ApiError> {
        if self.user.backend.check_resource(&self.user, vhost, kind, name, access).allowed() {
            return Ok(());
        }
        let a = match access {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        };
        Err(ApiError::access_refused(format!(
            "access to {} '{name}' in vhost '{vhost}' refused for user '{}'",
            kind.as_str(),
            self.name()
        ))
        .with_perm(a))
    }
}

impl Caller {
    /// RabbitMQ's topic authorisation of `routing_key` on exchange `x` with `access` (write to
    /// publish, read to bind), for topic exchanges only: on refusal, the AMQP refusal text
    /// ("access to topic 'K' in exchange 'X' in vhost 'V' refused for user 'U'").
    pub fn check_topic(&self, x: &crate::broker::exchange::Exchange, routing_key: &str, access: Access) -> Result<(), String> {
        let backend = &self.user.backend;
        if x.kind != "topic" || !backend.restricts_topics() {
            return Ok(());
        }
        let d = backend.check_topic(&self.user, &x.vhost, &x.name, routing_key, access);
        if d.allowed() {
            return Ok(());
        }
        let base = format!("access to topic '{routing_key}' in exchange '{}' in vhost '{}' refused for user '{}'", x.name, x.vhost, self.name());
        Err(d.refusal_text(base, backend.name()))
    }
}

impl ApiError {
    fn with_perm(self, _perm: &str) -> ApiError {
        self
    }
}

/// Reads the arguments of an operation.
pub fn args<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("invalid arguments: {e}")))
}

/// Runs operation `op` for a request without a logged-in user (a path outside the plugin's
/// protected prefixes, e.g. RabbitMQ's unauthenticated `/metrics`): only the read-only
/// `metrics.*` operations are open to it; anything else is 401 "Login required".
pub fn call_public(broker: &Arc<Broker>, op: &str, a: &Value) -> ApiResult {
    if metrics::OPS.contains(&op) {
        metrics::call(broker, op, a)
    } else {
        Err(ApiError::new(401, "not_authorised", "Login required"))
    }
}

/// The operations answering one object that take the `query` of the list operations, for its
/// `columns` (RabbitMQ filters every single-object reply but a connection's and a channel's).
const ONE: &[&str] = &[
    "overview",
    "nodes.get",
    "whoami",
    "aliveness_test",
    "vhosts.get",
    "users.get",
    "queues.get",
    "exchanges.get",
    "bindings.get",
    "policies.get",
    "parameters.get",
    "global_parameters.get",
    "cluster_name.get",
    "definitions.get",
];

/// Runs operation `op` with JSON `args` for `caller`.
pub fn call(broker: &Arc<Broker>, caller: &Caller, op: &str, a: &Value) -> ApiResult {
    let answer = dispatch(broker, caller, op, a)?;
    if !ONE.contains(&op) {
        return Ok(answer);
    }
    let maps = if op == "overview" { paging::OVERVIEW_MAPS } else { paging::MAPS };
    Ok(paging::Query::of(a)?.one(answer, maps))
}

fn dispatch(broker: &Arc<Broker>, caller: &Caller, op: &str, a: &Value) -> ApiResult {
    if metrics::OPS.contains(&op) {
        return metrics::call(broker, op, a);
    }
    match op {
        "overview" => overview::overview(broker, caller),
        "nodes" => match overview::nodes(broker, caller)? {
            Value::Array(rows) => paging::Query::of(a)?.values(rows, false),
            other => Ok(other),
        },
        "nodes.get" => overview::node(broker, caller, a),
        "whoami" => Ok(serde_json::json!({"name": caller.name(), "tags": caller.user.tags})),
        "aliveness_test" => overview::aliveness(broker, caller, a),
        "health_check" => overview::health(broker, caller, a),
        "vhosts.list" => vhosts::list(broker, caller, a),
        "vhosts.get" => vhosts::get(broker, caller, a),
        "vhosts.put" => vhosts::put(broker, caller, a),
        "vhosts.delete" => vhosts::delete(broker, caller, a),
        "users.list" => users::list(broker, caller, a),
        "users.get" => users::get(broker, caller, a),
        "users.put" => users::put(broker, caller, a),
        "users.delete" => users::delete(broker, caller, a),
        "permissions.list" => users::permissions(broker, caller, a),
        "permissions.put" => users::put_permission(broker, caller, a),
        "permissions.delete" => users::delete_permission(broker, caller, a),
        "topic_permissions.list" => topic_permissions::list(broker, caller, a),
        "topic_permissions.put" => topic_permissions::put(broker, caller, a),
        "topic_permissions.delete" => topic_permissions::delete(broker, caller, a),
        "queues.list" => queues::list(broker, caller, a),
        "queues.get" => queues::get(broker, caller, a),
        "queues.put" => queues::put(broker, caller, a),
        "queues.delete" => queues::delete(broker, caller, a),
        "queues.purge" => queues::purge(broker, caller, a),
        "queues.get_messages" => messages::get(broker, caller, a),
        "exchanges.list" => exchanges::list(broker, caller, a),
        "exchanges.get" => exchanges::get(broker, caller, a),
        "exchanges.put" => exchanges::put(broker, caller, a),
        "exchanges.delete" => exchanges::delete(broker, caller, a),
        "exchanges.publish" => messages::publish(broker, caller, a),
        "bindings.list" => bindings::list(broker, caller, a),
        "bindings.post" => bindings::post(broker, caller, a),
        "bindings.get" => bindings::get(broker, caller, a),
        "bindings.delete" => bindings::delete(broker, caller, a),
        "connections.list" => connections::list(broker, caller, a),
        "connections.get" => connections::get(broker, caller, a),
        "connections.delete" => connections::delete(broker, caller, a),
        "channels.list" => connections::channels(broker, caller, a),
        "consumers.list" => connections::consumers(broker, caller, a),
        "policies.list" => policies::list(broker, caller, a),
        "policies.get" => policies::get(broker, caller, a),
        "policies.put" => policies::put(broker, caller, a),
        "policies.delete" => policies::delete(broker, caller, a),
        "parameters.list" => parameters::list(broker, caller, a),
        "parameters.get" => parameters::get(broker, caller, a),
        "parameters.put" => parameters::put(broker, caller, a),
        "parameters.delete" => parameters::delete(broker, caller, a),
        "global_parameters.list" => global_parameters::list(broker, caller),
        "global_parameters.get" => global_parameters::get(broker, caller, a),
        "global_parameters.put" => global_parameters::put(broker, caller, a),
        "global_parameters.delete" => global_parameters::delete(broker, caller, a),
        "cluster_name.get" => global_parameters::cluster_name(broker),
        "cluster_name.put" => global_parameters::put_cluster_name(broker, caller, a),
        "vhost_limits.list" => vhost_limits::list(broker, caller, a),
        "vhost_limits.put" => vhost_limits::put(broker, caller, a),
        "vhost_limits.delete" => vhost_limits::delete(broker, caller, a),
        "user_limits.list" => user_limits::list(broker, caller, a),
        "user_limits.put" => user_limits::put(broker, caller, a),
        "user_limits.delete" => user_limits::delete(broker, caller, a),
        "definitions.get" => definitions::export(broker, caller, a),
        "definitions.post" => definitions::import(broker, caller, a),
        other => Err(ApiError::bad_request(format!("unknown admin operation '{other}'"))),
    }
}
