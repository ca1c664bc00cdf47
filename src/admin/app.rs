//! `stop_app`, `start_app`, `reset` and `force_reset`: RabbitMQ's "rabbit application" on a
//! running node.
//!
//! `stop_app` closes the AMQP listeners (TCP and TLS) and the plugins' HTTP listeners and closes
//! every client connection with 320 CONNECTION_FORCED "broker forced connection closure with
//! reason 'shutdown'", as RabbitMQ does; the process, the store and the control socket stay up.
//! `start_app` binds the same listeners again (same ports, same TLS configuration, the enabled
//! plugins' HTTP listeners) and the broker serves its durable state as before; non-durable
//! queues and exchanges are gone, as after a restart (and as in RabbitMQ 3.10). Both may be
//! repeated (a second `stop_app` or a `start_app` on a running app does nothing, as RabbitMQ).
//!
//! While the app is stopped every other command is refused with RabbitMQ's error (exit 64, the
//! command's usage), except `reset`/`force_reset` (which need the stopped app) and
//! `warren-plugins` (an http-handler plugin enabled then opens its listener at `start_app`).
//! `reset` returns the node to its first start (`broker/reset.rs`); on a single node
//! `force_reset` is the same.
//!
//! The admin API does not know how listeners are made: it sees [`AppControl`], which
//! `server.rs` fills in at start.

use super::{Admin, Request, Response};
use std::sync::atomic::Ordering;

/// The broker's listeners as the admin API sees them. Both calls block until done: call them
/// from a blocking thread (the control socket runs commands on tokio's blocking pool), never
/// from an async task.
pub trait AppControl: Send + Sync {
    /// Marks the app stopped (`Broker::app_running`), closes the AMQP and HTTP listeners and
    /// every client connection; returns once the listeners are closed and the connections told.
    /// Nothing happens if the app is stopped already.
    fn stop(&self);
    /// Binds the listeners again and marks the app running; `Err` with why a listener could not
    /// be bound (the app then stays stopped). Nothing happens if the app is running.
    fn start(&self) -> Result<(), String>;
}

/// RabbitMQ's refusal of a command that needs the running app.
pub const NEEDS_RUNNING: &str =
    "Error: this command requires the 'rabbit' app to be running on the target node. Start it with 'warrenctl start_app'.";
/// RabbitMQ's refusal of `reset` on a running app.
pub const NEEDS_STOPPED: &str =
    "Error: this command requires the 'rabbit' app to be stopped on the target node. Stop it with 'warrenctl stop_app'.";

/// The `message` of a `plugins_set` answered while the app is stopped.
pub const OFFLINE_CHANGE: &str = "offline";

/// Commands that answer whatever the app's state.
/// (`warren-plugins enable/disable` on a stopped app change the enabled set, as
/// rabbitmq-plugins' offline change does; HTTP listeners open at `start_app`.)
const ANY_STATE: [&str; 5] = ["stop_app", "start_app", "plugins_list", "plugins_set", "check_app_state"];
/// Commands that need the stopped app.
const NEEDS_STOPPED_APP: [&str; 2] = ["reset", "force_reset"];

/// Whether `command` may run in the app's present state: `Err` with RabbitMQ's refusal (the
/// whole text, usage included) otherwise.
fn state_check(admin: &Admin, command: &str, args: &[String]) -> Result<(), Response> {
    let running = admin.broker.app_running.load(Ordering::Acquire);
    let refusal = if NEEDS_STOPPED_APP.contains(&command) {
        running.then_some(NEEDS_STOPPED)
    } else if ANY_STATE.contains(&command) {
        None
    } else {
        (!running).then_some(NEEDS_RUNNING)
    };
    match refusal {
        None => Ok(()),
        Some(text) => {
            let mut r = Response::error(super::cli::usage_error(text, command, args));
            r.exit_code = Some(64);
            r.bare_error = true;
            Err(r)
        }
    }
}

/// The client side (`warrenctl`, after argument validation and before the info line, as
/// rabbitmqctl checks): asks the broker in `data_dir` whether the app's state allows `command`;
/// `Err` with the refusal and exit code if not. A broker that cannot be reached is reported by
/// the command's own call, and so is a broker that does not answer within `limit` (the
/// command's timeout: the caller gives its own call what is left of it).
pub fn check_state(data_dir: &std::path::Path, command: &str, args: &[String], limit: Option<std::time::Duration>) -> Result<(), (String, u8)> {
    let check = Request { command: "check_app_state".into(), args: std::iter::once(command.to_string()).chain(args.iter().cloned()).collect(), vhost: None };
    match super::control::call_within(data_dir, &check, limit) {
        Ok(Response { error: Some(e), exit_code: Some(code), bare_error: true, .. }) => Err((e, code)),
        _ => Ok(()),
    }
}

/// The app commands, and the refusal of any other command the app's state does not allow;
/// `None` for a command to be run by the other handlers.
pub fn handle(admin: &Admin, req: &Request) -> Option<Response> {
    let command = req.command.as_str();
    if command == "check_app_state" {
        // warrenctl asks before printing a command's info line, as rabbitmqctl validates first.
        let (asked, args) = req.args.split_first().map_or(("", &[][..]), |(c, a)| (c.as_str(), a));
        return Some(state_check(admin, asked, args).err().unwrap_or_default());
    }
    if let Err(r) = state_check(admin, command, &req.args) {
        return Some(r);
    }
    if command == "plugins_set" && !admin.broker.app_running.load(Ordering::Acquire) {
        // Applied, but nothing listens until start_app: warren-plugins says so as
        // rabbitmq-plugins does ("Offline change; ...").
        let mut r = super::plugins::handle(admin.plugins.as_deref(), req)?;
        r.message = Some(OFFLINE_CHANGE.into());
        return Some(r);
    }
    let app = || admin.app.as_deref().ok_or_else(|| Response::error("this broker runs without listeners to stop or start"));
    Some(match command {
        "stop_app" => match app() {
            Ok(app) => {
                app.stop();
                // As RabbitMQ: what a restart would lose is gone after stop_app.
                admin.broker.drop_non_durable();
                Response::default()
            }
            Err(r) => r,
        },
        "start_app" => match app() {
            Ok(app) => {
                // After a reset the node starts as on its first start: the defaults come back.
                if let Err(e) = admin.broker.restore_defaults() {
                    return Some(Response::error(e.to_string()));
                }
                match app.start() {
                    Ok(()) => Response::default(),
                    Err(e) => Response::error(e),
                }
            }
            Err(r) => r,
        },
        "reset" | "force_reset" => match admin.broker.reset() {
            Ok(()) => Response::default(),
            Err(e) => Response::error(e.to_string()),
        },
        _ => return None,
    })
}
