//! The `plugins_*` admin commands (`warren-plugins list/enable/disable/set` on a running broker).
//!
//! The admin API does not know how plugins are made: it sees the [`PluginControl`] trait, which
//! `server.rs` fills with the plugin layer at start. Results are typed; this file turns them into
//! `Response` tables, and `warren-plugins` prints them with rabbitmq-plugins' texts.

use super::{Request, Response};
use serde_json::json;

/// One plugin as `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginEntry {
    pub name: String,
    /// RabbitMQ's names for it (shipped plugins).
    pub aliases: Vec<String>,
    /// The binary's version for plugins inside it, a content hash for files in the plugins
    /// folder.
    pub version: String,
    /// The WIT world it implements ("exchange-type", "auth-backend", "http-handler"); empty
    /// when it could not be loaded.
    pub kind: String,
    pub description: String,
    pub state: PluginState,
    /// Why it could not be loaded (the whole reason), if it could not.
    pub error: Option<String>,
    /// With `verbose`: what uses the plugin and its counters (running plugins only).
    pub details: Option<PluginDetails>,
}

/// RabbitMQ's markers: `[e*]` implicitly enabled (built in) and running, `[E*]` explicitly
/// enabled and running, `[E ]` enabled but not running, `[  ]` not enabled. A plugin that
/// failed to load has `!` in the status place: `[E!]`, `[ !]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginState {
    BuiltIn,
    Running,
    EnabledNotRunning,
    Available,
}

impl PluginEntry {
    pub fn marker(&self) -> &'static str {
        match (self.state, self.error.is_some()) {
            (PluginState::BuiltIn, _) => "[e*]",
            (PluginState::Running, _) => "[E*]",
            (PluginState::EnabledNotRunning, false) => "[E ]",
            (PluginState::EnabledNotRunning, true) => "[E!]",
            (PluginState::Available, false) => "[  ]",
            (PluginState::Available, true) => "[ !]",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginDetails {
    /// `'vhost':'exchange'` of every exchange of the plugin's type.
    pub exchanges: Vec<String>,
    pub traps: u64,
    pub timeouts: u64,
    pub out_of_memory: u64,
    pub rebuilds: u64,
    pub reloads: u64,
}

/// What applying a new enabled set did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetReport {
    pub enabled: Vec<String>,
    pub disabled: Vec<String>,
}

/// Applying a new enabled set failed, wholly (nothing changed) or in part (`report` says what
/// did change before the errors).
#[derive(Debug, Clone, PartialEq)]
pub struct SetError {
    pub report: SetReport,
    pub errors: Vec<String>,
}

impl SetError {
    pub fn refused(text: impl Into<String>) -> SetError {
        SetError { report: SetReport::default(), errors: vec![text.into()] }
    }
}

/// The plugin layer as the admin API sees it.
pub trait PluginControl: Send + Sync {
    /// Every plugin: built in, shipped, then the plugins folder.
    fn list(&self, verbose: bool) -> Vec<PluginEntry>;
    /// Makes `enabled` (names or RabbitMQ aliases) the explicitly enabled set. Without `force`,
    /// disabling a plugin in use is refused and nothing changes.
    fn set(&self, enabled: &[String], force: bool) -> Result<SetReport, SetError>;
}

/// Columns of `plugins_list`; `verbose` adds `VERBOSE_COLUMNS`.
pub const LIST_COLUMNS: [&str; 7] = ["marker", "name", "version", "kind", "description", "error", "aliases"];
pub const VERBOSE_COLUMNS: [&str; 6] = ["exchanges", "traps", "timeouts", "out_of_memory", "rebuilds", "reloads"];

/// `plugins_list` (args: `verbose`) and `plugins_set` (args: `force`|`noforce`, then the
/// complete new enabled set; answers a table `change, name` and, on failure, `error`); `None`
/// for other commands.
pub fn handle(control: Option<&dyn PluginControl>, req: &Request) -> Option<Response> {
    if !matches!(req.command.as_str(), "plugins_list" | "plugins_set") {
        return None;
    }
    let Some(control) = control else {
        return Some(Response::error("this broker runs without a plugin layer"));
    };
    Some(match req.command.as_str() {
        "plugins_list" => list(control, req.args.iter().any(|a| a == "verbose")),
        _ => {
            let force = req.args.first().is_some_and(|a| a == "force");
            let names: Vec<String> = req.args.iter().skip(1).cloned().collect();
            let (report, error) = match control.set(&names, force) {
                Ok(r) => (r, None),
                Err(e) => (e.report, Some(e.errors.join("\n"))),
            };
            let rows = report
                .enabled
                .iter()
                .map(|n| vec![json!("enabled"), json!(n)])
                .chain(report.disabled.iter().map(|n| vec![json!("disabled"), json!(n)]))
                .collect();
            Response { error, columns: vec!["change".into(), "name".into()], rows, ..Default::default() }
        }
    })
}

fn list(control: &dyn PluginControl, verbose: bool) -> Response {
    let mut columns: Vec<&str> = LIST_COLUMNS.to_vec();
    if verbose {
        columns.extend(VERBOSE_COLUMNS);
    }
    let rows = control
        .list(verbose)
        .into_iter()
        .map(|p| {
            let mut row = vec![
                json!(p.marker()),
                json!(p.name),
                json!(p.version),
                json!(p.kind),
                json!(p.description),
                json!(p.error.unwrap_or_default()),
                json!(p.aliases),
            ];
            if let Some(d) = p.details.filter(|_| verbose) {
                row.extend([
                    json!(d.exchanges.join(", ")),
                    json!(d.traps),
                    json!(d.timeouts),
                    json!(d.out_of_memory),
                    json!(d.rebuilds),
                    json!(d.reloads),
                ]);
            }
            row
        })
        .collect();
    Response { columns: columns.iter().map(|s| s.to_string()).collect(), rows, ..Default::default() }
}
