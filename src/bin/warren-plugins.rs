//! `warren-plugins`: rabbitmq-plugins for Warren (`list`, `enable`, `disable`, `set`,
//! `is_enabled`, `directories`, with rabbitmq-plugins' texts and exit codes). Edits
//! `<data-dir>/enabled_plugins` and applies the change to the running broker through its control
//! socket (or, with `--offline` or when no broker runs, only the file). RabbitMQ's plugin names
//! are accepted for the plugins Warren ships (`rabbitmq_consistent_hash_exchange` ...).
//!
//! For plugin authors: `wit [DIR]` prints or writes the WIT package, `componentize IN OUT
//! --world W` wraps a core module into a component, `new --lang rust|c NAME` scaffolds a project
//! (see `warren::plugin::authoring`).
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warren::admin::plugins::{LIST_COLUMNS, VERBOSE_COLUMNS};
use warren::admin::{Request, control};
use warren::alarm::NODE_NAME;
use warren::config::Config;
use warren::plugin::{authoring, builtin};
use warren::plugin::catalog::{ENABLED_FILE, canonical, catalog, read_enabled, resolve, write_enabled};

#[derive(Parser)]
#[command(name = "warren-plugins", version, about = "Enable and disable Warren plugins (like rabbitmq-plugins)")]
struct Args {
    /// The server's config file (data and plugins directories come from it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The server's data directory (default ./data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The plugins folder (default <data-dir>/plugins).
    #[arg(long, global = true)]
    plugins_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists plugins: [E*] explicitly enabled and running, [e*] built in, [E ] enabled but not
    /// running, [  ] not enabled; `!` in place of `*`: the plugin cannot be loaded (reason shown).
    List {
        /// Also show version, description, kind and, for running plugins, the exchanges using
        /// its type and its counters (failures by cause, instances rebuilt, reloads).
        #[arg(short, long)]
        verbose: bool,
        /// Only explicitly enabled plugins.
        #[arg(short = 'E', long)]
        enabled: bool,
        /// Only explicitly or implicitly enabled plugins.
        #[arg(short = 'e', long)]
        implicitly_enabled: bool,
        /// Names only.
        #[arg(short, long)]
        minimal: bool,
        /// Only plugins whose name (or alias) matches this regular expression.
        pattern: Option<String>,
    },
    /// Enables plugins.
    Enable {
        names: Vec<String>,
        /// Only change the enabled_plugins file.
        #[arg(long)]
        offline: bool,
    },
    /// Disables plugins.
    Disable {
        names: Vec<String>,
        /// Only change the enabled_plugins file.
        #[arg(long)]
        offline: bool,
        /// Disable even if exchanges use the plugin's type (they then route nothing).
        #[arg(long)]
        force: bool,
    },
    /// Makes exactly these plugins the enabled ones (none: disables all).
    Set {
        names: Vec<String>,
        /// Only change the enabled_plugins file.
        #[arg(long)]
        offline: bool,
        /// Disable even if exchanges use the plugin's type (they then route nothing).
        #[arg(long)]
        force: bool,
    },
    /// Exits 0 if every named plugin is enabled, 69 otherwise.
    #[command(name = "is_enabled")]
    IsEnabled {
        names: Vec<String>,
        /// Look at the enabled_plugins file instead of the running broker.
        #[arg(long)]
        offline: bool,
    },
    /// Prints the plugins folder, the compiled-plugin cache and the enabled_plugins file.
    Directories,
    /// Prints the WIT package warren:plugin@0.1.0 that plugins are built against, or writes its
    /// files into DIR.
    Wit {
        dir: Option<PathBuf>,
    },
    /// Wraps a core wasm module (as wit-bindgen builds it) into a plugin component, like
    /// `wasm-tools component new`, and checks it against the world.
    Componentize {
        input: PathBuf,
        output: PathBuf,
        /// The plugin's world (exchange-type, auth-backend, http-handler): embedded when the
        /// module does not describe its world itself, and the result is checked against it.
        #[arg(long)]
        world: Option<String>,
    },
    /// Makes a new plugin project that builds outside any checkout (./build.sh).
    New {
        /// The language of the project (rust or c).
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Where to write it (default ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugin's name: the cargo package, the .wasm file and the plugin to enable.
        name: String,
    },
}

/// One row of the list, from the broker or (offline) from the folder and the file.
struct Row {
    marker: String,
    name: String,
    aliases: Vec<String>,
    version: String,
    kind: String,
    description: String,
    error: String,
    /// exchanges, traps, timeouts, out of memory, rebuilds, reloads (verbose, running).
    details: Option<(String, [u64; 5])>,
}

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Cmd::Wit { dir } => return authoring_wit(dir.as_deref()),
        Cmd::Componentize { input, output, world } => return authoring_componentize(input, output, world.as_deref()),
        Cmd::New { lang, dir, name } => return authoring_new(lang, dir.as_deref(), name),
        _ => {}
    }
    let mut config = match &args.config {
        Some(c) => match Config::load(c) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::from(EX_USAGE);
            }
        },
        None => Config::default(),
    };
    if let Some(d) = &args.data_dir {
        config.storage.data_dir = d.clone();
    }
    if let Some(d) = &args.plugins_dir {
        config.plugins.dir = Some(d.clone());
    }
    let data_dir = config.storage.data_dir.clone();
    let plugins_dir = config.plugins_dir();
    let enabled_file = data_dir.join(ENABLED_FILE);
    let current: BTreeSet<String> = match read_enabled(&enabled_file) {
        Ok(v) => v.iter().map(|n| canonical(n)).collect(),
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let ctx = Ctx { data_dir: &data_dir, plugins_dir: &plugins_dir, enabled_file: &enabled_file, current };
    match args.command {
        Cmd::List { verbose, enabled, implicitly_enabled, minimal, pattern } => {
            ctx.list(verbose, enabled, implicitly_enabled, minimal, pattern.as_deref())
        }
        Cmd::Enable { names, offline } => ctx.change(Change::Enable, &names, offline, false),
        Cmd::Disable { names, offline, force } => ctx.change(Change::Disable, &names, offline, force),
        Cmd::Set { names, offline, force } => ctx.change(Change::Set, &names, offline, force),
        Cmd::IsEnabled { names, offline } => ctx.is_enabled(&names, offline),
        Cmd::Directories => {
            println!("Listing plugin directories used by node {NODE_NAME}");
            println!("Plugin archives directory: {}", plugins_dir.display());
            println!("Plugin expansion directory: {}", data_dir.join("plugin-cache").display());
            println!("Enabled plugins file: {}", enabled_file.display());
            ExitCode::SUCCESS
        }
        Cmd::Wit { .. } | Cmd::Componentize { .. } | Cmd::New { .. } => unreachable!("handled before the config is read"),
    }
}

/// `wit [DIR]`: the WIT package, printed file by file or written into DIR.
fn authoring_wit(dir: Option<&Path>) -> ExitCode {
    match dir {
        None => {
            for (name, text) in authoring::WIT_FILES {
                println!("// ---- wit/{name} ----");
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Some(dir) => match authoring::write_wit(dir) {
            Ok(()) => {
                println!("Wrote the WIT package warren:plugin@0.1.0 ({} files) to {}", authoring::WIT_FILES.len(), dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Error: {}: {e}", dir.display());
                ExitCode::from(EX_SOFTWARE)
            }
        },
    }
}

/// `componentize IN OUT [--world W]`.
fn authoring_componentize(input: &Path, output: &Path, world: Option<&str>) -> ExitCode {
    let run = || -> Result<usize, String> {
        let core = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
        let component = authoring::componentize(&core, world).map_err(|e| format!("{}: {e}", input.display()))?;
        // temp file + rename: a broker watching the folder never sees half a file
        let tmp = output.with_extension("wasm.tmp");
        std::fs::write(&tmp, &component).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, output).map_err(|e| format!("{}: {e}", output.display()))?;
        Ok(component.len())
    };
    match run() {
        Ok(n) => {
            let w = world.map(|w| format!(" (world {w})")).unwrap_or_default();
            println!("Wrote component {} ({n} bytes){w}", output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

/// `new --lang rust NAME [--dir DIR]`.
fn authoring_new(lang: &str, dir: Option<&Path>, name: &str) -> ExitCode {
    let lang = match lang {
        "rust" => authoring::Lang::Rust,
        "c" => authoring::Lang::C,
        other => {
            eprintln!(
                "Error: --lang {other}: `new` writes rust and c projects; Python and JavaScript plugins are built as docs/PLUGINS.md shows (their examples: json-field-py, js-prefix)"
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(name));
    let me = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok()).unwrap_or_else(|| PathBuf::from("warren-plugins"));
    match authoring::new_project(lang, name, &dir, &me) {
        Ok(s) => {
            println!("Created {} (exchange type '{}', {} files). Next:", s.dir.display(), s.exchange_type, s.files.len());
            println!("  {}/build.sh", s.dir.display());
            println!("  cp {}/{name}.wasm \"$(warren-plugins directories | sed -n 's/^Plugin archives directory: //p')\"/", s.dir.display());
            println!("  warren-plugins enable {name}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Change {
    Enable,
    Disable,
    Set,
}

struct Ctx<'a> {
    data_dir: &'a Path,
    plugins_dir: &'a Path,
    enabled_file: &'a Path,
    /// The explicitly enabled set (canonical names).
    current: BTreeSet<String>,
}

impl Ctx<'_> {
    /// The running broker's list, or `None` if it cannot be reached.
    fn broker_rows(&self, verbose: bool) -> Option<Result<Vec<Row>, String>> {
        let args = if verbose { vec!["verbose".to_string()] } else { Vec::new() };
        let r = control::call(self.data_dir, &Request { command: "plugins_list".into(), args, ..Default::default() }).ok()?;
        if let Some(e) = r.error {
            return Some(Err(e));
        }
        let n = LIST_COLUMNS.len();
        Some(Ok(r
            .rows
            .iter()
            .map(|row| {
                let s = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or("").to_string();
                let u = |i: usize| row.get(i).and_then(Value::as_u64).unwrap_or(0);
                Row {
                    marker: s(0),
                    name: s(1),
                    version: s(2),
                    kind: s(3),
                    description: s(4),
                    error: s(5),
                    aliases: row
                        .get(6)
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                    details: (row.len() >= n + VERBOSE_COLUMNS.len())
                        .then(|| (s(n), [u(n + 1), u(n + 2), u(n + 3), u(n + 4), u(n + 5)])),
                }
            })
            .collect()))
    }

    /// The list without a broker: the plugins inside the binary, the folder and the file.
    fn offline_rows(&self) -> Vec<Row> {
        let version = env!("CARGO_PKG_VERSION").to_string();
        let mut rows: Vec<Row> = builtin::BUILTINS
            .iter()
            .map(|(n, _)| Row {
                marker: "[e ]".into(),
                name: n.to_string(),
                aliases: Vec::new(),
                version: version.clone(),
                kind: "exchange-type".into(),
                description: "(built-in)".into(),
                error: String::new(),
                details: None,
            })
            .collect();
        for (name, origin) in catalog(self.plugins_dir) {
            let enabled = self.current.contains(&name);
            let (aliases, version, error) = match &origin {
                Ok(warren::plugin::catalog::Origin::Shipped(s)) => {
                    (s.aliases.iter().map(|a| a.to_string()).collect(), version.clone(), String::new())
                }
                Ok(_) => (Vec::new(), String::new(), String::new()),
                Err(e) => (Vec::new(), String::new(), e.clone()),
            };
            let marker = match (enabled, error.is_empty()) {
                (true, true) => "[E ]",
                (true, false) => "[E!]",
                (false, true) => "[  ]",
                (false, false) => "[ !]",
            };
            rows.push(Row {
                marker: marker.into(),
                name,
                aliases,
                version,
                kind: String::new(),
                description: String::new(),
                error,
                details: None,
            });
        }
        rows
    }

    fn list(&self, verbose: bool, explicit: bool, implicit: bool, minimal: bool, pattern: Option<&str>) -> ExitCode {
        let re = match regex::Regex::new(pattern.unwrap_or(".*")) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Error (argument validation): invalid pattern: {e}");
                return ExitCode::from(EX_USAGE);
            }
        };
        let (rows, running) = match self.broker_rows(verbose) {
            Some(Ok(rows)) => (rows, true),
            Some(Err(e)) => {
                eprintln!("Error:\n{e}");
                return ExitCode::from(EX_SOFTWARE);
            }
            None => (self.offline_rows(), false),
        };
        let rows: Vec<Row> = rows
            .into_iter()
            .filter(|r| re.is_match(&r.name) || r.aliases.iter().any(|a| re.is_match(a)))
            .filter(|r| !explicit || r.marker.starts_with("[E"))
            .filter(|r| !implicit || r.marker.starts_with("[E") || r.marker.starts_with("[e"))
            .collect();
        println!("Listing plugins with pattern \"{}\" ...", pattern.unwrap_or(".*"));
        if minimal {
            for r in &rows {
                println!("{}", r.name);
            }
            return ExitCode::SUCCESS;
        }
        println!(" Configured: E = explicitly enabled; e = implicitly enabled");
        if running {
            println!(" | Status: * = running on {NODE_NAME}");
        } else {
            println!(" | Status: [failed to contact {NODE_NAME} - status not shown]");
        }
        println!(" |/");
        let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &rows {
            if verbose {
                println!("{} {}", r.marker, r.name);
                println!("     Version:     \t{}", r.version);
                println!("     Dependencies:\t[]");
                println!("     Description: \t{}", r.description);
                if !r.kind.is_empty() {
                    println!("     Kind:        \t{}", r.kind);
                }
                if !r.aliases.is_empty() {
                    println!("     Aliases:     \t{}", r.aliases.join(", "));
                }
                if let Some((xs, n)) = &r.details {
                    println!("     Exchanges:   \t{}", if xs.is_empty() { "(none)" } else { xs });
                    println!("     Failures:    \ttrap {}, timeout {}, out of memory {}", n[0], n[1], n[2]);
                    println!("     Rebuilds:    \t{}", n[3]);
                    println!("     Reloads:     \t{}", n[4]);
                }
            } else {
                println!("{} {:<width$} {}", r.marker, r.name, r.version);
            }
            if !r.error.is_empty() {
                println!("     Error:       \t{}", r.error);
            }
        }
        ExitCode::SUCCESS
    }

    fn change(&self, change: Change, names: &[String], offline: bool, force: bool) -> ExitCode {
        if names.is_empty() && change != Change::Set {
            eprintln!("Error (argument validation): not enough arguments.");
            return ExitCode::from(EX_USAGE);
        }
        if change != Change::Disable {
            let unknown: Vec<&String> =
                names.iter().filter(|n| !builtin::is_builtin(n) && resolve(self.plugins_dir, n).is_none()).collect();
            if !unknown.is_empty() {
                eprintln!("Error:");
                eprintln!("{{:plugins_not_found, [{}]}}", unknown.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", "));
                eprintln!("(plugins inside the binary: {}; plugins folder: {})", shipped_names(), self.plugins_dir.display());
                return ExitCode::from(EX_SOFTWARE);
            }
        } else if let Some(b) = names.iter().find(|n| builtin::is_builtin(n)) {
            eprintln!("Error:\n{b} is built in and cannot be disabled");
            return ExitCode::from(EX_SOFTWARE);
        }
        let given: BTreeSet<String> = names.iter().filter(|n| !builtin::is_builtin(n)).map(|n| canonical(n)).collect();
        let wanted: BTreeSet<String> = match change {
            Change::Enable => self.current.union(&given).cloned().collect(),
            Change::Disable => self.current.difference(&given).cloned().collect(),
            Change::Set => given,
        };
        println!("{} plugins on node {NODE_NAME}:", if change == Change::Disable { "Disabling" } else { "Enabling" });
        for n in names {
            println!("{n}");
        }
        let wanted: Vec<String> = wanted.into_iter().collect();
        if wanted == self.current.iter().cloned().collect::<Vec<_>>() && change != Change::Set {
            println!("Plugin configuration unchanged.");
            return ExitCode::SUCCESS;
        }
        println!("The following plugins have been configured:");
        for n in &wanted {
            println!("  {n}");
        }
        if !offline {
            let mut a = vec![if force { "force".to_string() } else { "noforce".to_string() }];
            a.extend(wanted.iter().cloned());
            match control::call(self.data_dir, &Request { command: "plugins_set".into(), args: a, vhost: None }) {
                Ok(r) => {
                    let changed = |what: &str| -> Vec<String> {
                        r.rows.iter().filter(|row| row[0] == what).filter_map(|row| row[1].as_str().map(str::to_string)).collect()
                    };
                    let (enabled, disabled) = (changed("enabled"), changed("disabled"));
                    println!("Applying plugin configuration to {NODE_NAME}...");
                    if !enabled.is_empty() {
                        println!("The following plugins have been enabled:\n  {}", enabled.join("\n  "));
                    }
                    if !disabled.is_empty() {
                        println!("The following plugins have been disabled:\n  {}", disabled.join("\n  "));
                    }
                    if r.message.as_deref() == Some(warren::admin::app::OFFLINE_CHANGE) && r.error.is_none() {
                        // The broker's app is stopped (`warrenctl stop_app`): as rabbitmq-plugins
                        // on a stopped node.
                        println!();
                        println!("set {} plugins.", wanted.len());
                        println!("Offline change; changes will take effect at broker restart.");
                    } else if enabled.is_empty() && disabled.is_empty() && r.error.is_none() {
                        println!("Plugin configuration unchanged.");
                    } else {
                        println!();
                        if !enabled.is_empty() {
                            println!("started {} plugins.", enabled.len());
                        }
                        if !disabled.is_empty() {
                            println!("stopped {} plugins.", disabled.len());
                        }
                    }
                    if let Some(e) = r.error {
                        eprintln!("Error:\n{e}");
                        return ExitCode::from(EX_SOFTWARE);
                    }
                    return ExitCode::SUCCESS;
                }
                Err(_) => {
                    eprintln!("The broker is not reachable through {}; changing only the file.", control::socket_path(self.data_dir).display())
                }
            }
        }
        if let Err(e) = write_enabled(self.enabled_file, &wanted) {
            eprintln!("Error: cannot write {}: {e}", self.enabled_file.display());
            return ExitCode::from(74);
        }
        println!("set {} plugins.", wanted.len());
        println!("Offline change; changes will take effect at broker restart.");
        ExitCode::SUCCESS
    }

    fn is_enabled(&self, names: &[String], offline: bool) -> ExitCode {
        if names.is_empty() {
            eprintln!("Error (argument validation): not enough arguments.");
            return ExitCode::from(EX_USAGE);
        }
        let rows = if offline { None } else { self.broker_rows(false).and_then(Result::ok) };
        let enabled: Vec<String> = match rows {
            Some(rows) => rows.into_iter().filter(|r| r.marker == "[E*]" || r.marker == "[e*]").map(|r| r.name).collect(),
            None => builtin::BUILTINS.iter().map(|(n, _)| n.to_string()).chain(self.current.iter().cloned()).collect(),
        };
        println!("Asking node {NODE_NAME} if plugin {} is enabled...", names.join(", "));
        for n in names {
            if !enabled.contains(&canonical(n)) {
                eprintln!("Error:");
                eprintln!("Plugin {n} is not enabled on node {NODE_NAME}. Enabled plugins and dependencies: {}", enabled.join(", "));
                return ExitCode::from(EX_UNAVAILABLE);
            }
        }
        for n in names {
            println!("Plugin {n} is enabled on node {NODE_NAME}");
        }
        ExitCode::SUCCESS
    }
}

fn shipped_names() -> String {
    builtin::SHIPPED.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}
