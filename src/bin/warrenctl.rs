//! `warrenctl`: rabbitmqctl's commands for Warren, over the control socket in the data directory.
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use warren::admin::{Request, control};
use warren::config::Config;

#[derive(Parser)]
#[command(name = "warrenctl", version, about = "Operate a running Warren broker (like rabbitmqctl)")]
struct Args {
    /// The server's config file (its data directory holds the control socket).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The server's data directory (default ./data, or the config file's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Virtual host.
    #[arg(short = 'p', long = "vhost")]
    vhost: Option<String>,
    /// Output format: table (tab-separated, like rabbitmqctl) or json.
    #[arg(long, default_value = "table")]
    formatter: String,
    /// Print only the rows, no header.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The command (status, list_queues, list_exchanges, list_bindings, list_connections,
    /// list_vhosts, purge_queue, delete_queue, close_connection, set_disk_free_limit) and its
    /// arguments.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let data_dir = match (&args.data_dir, &args.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => match Config::load(c) {
            Ok(c) => c.storage.data_dir,
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::from(64);
            }
        },
        (None, None) => Config::default().storage.data_dir,
    };
    let req = Request { command: args.command[0].clone(), args: args.command[1..].to_vec(), vhost: args.vhost.clone() };
    let resp = match control::call(&data_dir, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "Error: unable to reach the broker through {}: {e}\nIs warren-server running with --data-dir {}?",
                control::socket_path(&data_dir).display(),
                data_dir.display()
            );
            return ExitCode::from(69);
        }
    };
    if let Some(e) = resp.error {
        eprintln!("Error:\n{e}");
        return ExitCode::from(70);
    }
    if req.command == "status" {
        let fields: serde_json::Map<String, serde_json::Value> =
            resp.rows.iter().filter_map(|r| Some((r.first()?.as_str()?.to_owned(), r.get(1)?.clone()))).collect();
        if args.formatter == "json" {
            println!("{}", serde_json::Value::Object(fields));
        } else {
            print!("{}", status_text(&fields));
        }
        return ExitCode::SUCCESS;
    }
    if args.formatter == "json" {
        let objs: Vec<serde_json::Map<String, serde_json::Value>> =
            resp.rows.iter().map(|r| resp.columns.iter().cloned().zip(r.iter().cloned()).collect()).collect();
        if resp.columns.is_empty() {
            println!("{}", serde_json::json!({"message": resp.message}));
        } else {
            println!("{}", serde_json::to_string(&objs).expect("json"));
        }
        return ExitCode::SUCCESS;
    }
    if let Some(m) = resp.message {
        println!("{m}");
    }
    if !resp.columns.is_empty() {
        if !args.quiet {
            println!("{}", resp.columns.join("\t"));
        }
        for r in resp.rows {
            let cells: Vec<String> = r.iter().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect();
            println!("{}", cells.join("\t"));
        }
    }
    ExitCode::SUCCESS
}

/// `status` in rabbitmqctl's layout: sections with ANSI-bold titles (bold even when piped, as
/// rabbitmqctl does), `Alarms` and `Free Disk Space` as RabbitMQ prints them.
fn status_text(f: &serde_json::Map<String, serde_json::Value>) -> String {
    use std::fmt::Write;
    let get = |k: &str| f.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).unwrap_or_default();
    let node = get("node");
    let mut out = String::new();
    let section = |out: &mut String, title: &str| {
        let _ = write!(out, "\n\x1b[1m{title}\x1b[0m\n\n");
    };
    let _ = writeln!(out, "Status of node {node} ...");
    section(&mut out, "Runtime");
    let _ = writeln!(out, "OS PID: {}", get("os_pid"));
    let _ = writeln!(out, "Warren version: {}", get("version"));
    let _ = writeln!(out, "Node name: {node}");
    section(&mut out, "Data directory");
    let _ = writeln!(out, "Node data directory: {}", get("data_directory"));
    section(&mut out, "Alarms");
    let alarms: Vec<String> = f
        .get("alarms")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|r| r.as_str()).map(|r| match r {
            "disk" => format!("Free disk space alarm on node {node}"),
            other => format!("{other} alarm on node {node}"),
        }).collect())
        .unwrap_or_default();
    if alarms.is_empty() {
        let _ = writeln!(out, "(none)");
    }
    for a in alarms {
        let _ = writeln!(out, "{a}");
    }
    section(&mut out, "Free Disk Space");
    let gb = |k: &str| f.get(k).and_then(|v| v.as_u64()).map(warren::alarm::format_gb).unwrap_or_else(|| "unknown".into());
    let _ = writeln!(out, "Low free disk space watermark: {}", gb("disk_free_limit"));
    let _ = writeln!(out, "Free disk space: {}", gb("disk_free"));
    section(&mut out, "Totals");
    let _ = writeln!(out, "Connection count: {}", get("connections"));
    let _ = writeln!(out, "Queue count: {}", get("queues"));
    let _ = writeln!(out, "Virtual host count: {}", get("vhosts"));
    out
}
