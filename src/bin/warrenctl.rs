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
    /// The command (status, store_status, list_queues, list_exchanges, list_bindings, list_connections,
    /// list_vhosts, purge_queue, delete_queue, close_connection) and its arguments.
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
