//! `warren-plugins`: rabbitmq-plugins for Warren. Edits `<data-dir>/enabled_plugins` and applies
//! the change to the running broker through its control socket (or, with `--offline` or when no
//! broker runs, only the file).
use clap::{Parser, Subcommand};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use warren::admin::{Request, control};
use warren::config::Config;
use warren::plugin::manager::{ENABLED_FILE, available, read_enabled, write_enabled};

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
    /// Lists plugins: [E*] explicitly enabled and running, [e*] built in, [  ] available.
    List {
        /// Also show, for each running plugin, the exchanges using its type and its counters
        /// (failures by cause, instances rebuilt, reloads), from the running broker.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Enables plugins.
    Enable {
        #[arg(required = true)]
        names: Vec<String>,
        /// Only change the enabled_plugins file.
        #[arg(long)]
        offline: bool,
    },
    /// Disables plugins.
    Disable {
        #[arg(required = true)]
        names: Vec<String>,
        /// Only change the enabled_plugins file.
        #[arg(long)]
        offline: bool,
        /// Disable even if exchanges use the plugin's type (they then route nothing).
        #[arg(long)]
        force: bool,
    },
}

const BUILTINS: [&str; 4] = ["direct", "fanout", "topic", "headers"];

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(c) => match Config::load(c) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::from(64);
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
        Ok(v) => v.into_iter().collect(),
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(70);
        }
    };
    let known: BTreeSet<String> = available(&plugins_dir).into_iter().map(|(n, _)| n).collect();

    let (wanted, offline, force) = match &args.command {
        Cmd::List { verbose } => {
            let args = if *verbose { vec!["verbose".to_string()] } else { Vec::new() };
            return match control::call(&data_dir, &Request { command: "plugins_list".into(), args, ..Default::default() }) {
                Ok(r) if r.error.is_none() => {
                    println!("Listing plugins with pattern \".*\" ...");
                    println!(" Configured: E = explicitly enabled; e = implicitly enabled (built in)");
                    println!(" | Status: * = running on the broker");
                    println!(" |/");
                    for row in r.rows {
                        let cell = |i: usize| row.get(i).and_then(|v| v.as_str()).unwrap_or("").to_string();
                        println!("{} {:<24} {:<14} {:<14} {}", cell(0), cell(1), cell(2), cell(3), cell(4));
                        if *verbose && row.len() >= 13 {
                            let n = |i: usize| row[i].as_u64().unwrap_or(0);
                            let xs = cell(7);
                            println!("     Exchanges:   \t{}", if xs.is_empty() { "(none)".to_string() } else { xs });
                            println!("     Failures:    \ttrap {}, timeout {}, out of memory {}", n(8), n(9), n(10));
                            println!("     Rebuilds:    \t{}", n(11));
                            println!("     Reloads:     \t{}", n(12));
                        }
                    }
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    eprintln!("Error: {}", r.error.unwrap_or_default());
                    ExitCode::from(70)
                }
                Err(_) => {
                    // No broker: list from the folder and the file.
                    println!("Listing plugins with pattern \".*\" ... (broker not running: nothing is marked running)");
                    if *verbose {
                        println!(" (exchanges and counters need a running broker)");
                    }
                    for b in BUILTINS {
                        println!("[e ] {b:<24} exchange-type (built-in)");
                    }
                    for n in &known {
                        println!("{} {n:<24} exchange-type", if current.contains(n) { "[E ]" } else { "[  ]" });
                    }
                    ExitCode::SUCCESS
                }
            };
        }
        Cmd::Enable { names, offline } => {
            let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(*n) && !BUILTINS.contains(&n.as_str())).collect();
            if !unknown.is_empty() {
                eprintln!("Error:");
                eprintln!(
                    "{{:plugins_not_found, [{}]}}",
                    unknown.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", ")
                );
                eprintln!("(plugins folder: {})", plugins_dir.display());
                return ExitCode::from(70);
            }
            let mut w = current.clone();
            w.extend(names.iter().filter(|n| !BUILTINS.contains(&n.as_str())).cloned());
            (w, *offline, false)
        }
        Cmd::Disable { names, offline, force } => {
            if let Some(b) = names.iter().find(|n| BUILTINS.contains(&n.as_str())) {
                eprintln!("Error: {b} is built in and cannot be disabled");
                return ExitCode::from(70);
            }
            let mut w = current.clone();
            for n in names {
                w.remove(n);
            }
            (w, *offline, *force)
        }
    };
    let wanted: Vec<String> = wanted.into_iter().collect();
    if !offline {
        let mut a = vec![if force { "force".to_string() } else { "noforce".to_string() }];
        a.extend(wanted.iter().cloned());
        match control::call(&data_dir, &Request { command: "plugins_set".into(), args: a, vhost: None }) {
            Ok(r) => {
                let changed = |what: &str| -> Vec<String> {
                    r.rows.iter().filter(|row| row[0] == what).filter_map(|row| row[1].as_str().map(str::to_string)).collect()
                };
                let (enabled, disabled) = (changed("enabled"), changed("disabled"));
                println!("Applying plugin configuration to the broker...");
                if !enabled.is_empty() {
                    println!("The following plugins have been enabled:\n  {}", enabled.join("\n  "));
                }
                if !disabled.is_empty() {
                    println!("The following plugins have been disabled:\n  {}", disabled.join("\n  "));
                }
                if let Some(e) = r.error {
                    eprintln!("Error:\n{e}");
                    return ExitCode::from(70);
                }
                if enabled.is_empty() && disabled.is_empty() {
                    println!("Plugin configuration unchanged.");
                }
                return ExitCode::SUCCESS;
            }
            Err(_) => eprintln!("The broker is not reachable through {}; changing only the file.", control::socket_path(&data_dir).display()),
        }
    }
    if wanted == current.iter().cloned().collect::<Vec<_>>() {
        println!("Plugin configuration unchanged.");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = write_enabled(&enabled_file, &wanted) {
        eprintln!("Error: cannot write {}: {e}", enabled_file.display());
        return ExitCode::from(74);
    }
    println!("set {} plugins.", wanted.len());
    println!("Offline change; changes will take effect at broker restart.");
    ExitCode::SUCCESS
}
