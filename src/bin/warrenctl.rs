//! `warrenctl`: rabbitmqctl's commands for Warren, over the control socket in the data directory.
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use warren::admin::{Request, app, cli, control, definitions};
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
    /// Output format: table (tab-separated, like rabbitmqctl), json or csv.
    #[arg(long, default_value = "table")]
    formatter: String,
    /// No info lines (the table header stays), as rabbitmqctl's -q.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// No info lines and no table header, as rabbitmqctl's -s.
    #[arg(short = 's', long)]
    silent: bool,
    /// No table header.
    #[arg(long)]
    no_table_headers: bool,
    /// Operation timeout in seconds (rabbitmqctl's --timeout; default 60).
    #[arg(short = 't', long)]
    timeout: Option<f64>,
    /// The command (status, store_status, list_queues, list_exchanges, list_bindings, list_connections, list_channels,
    /// list_consumers, list_vhosts, purge_queue, delete_queue, close_connection, set_disk_free_limit,
    /// set_vm_memory_high_watermark, add_user, delete_user,
    /// change_password, clear_password, authenticate_user, set_user_tags, list_users, add_vhost,
    /// delete_vhost, set_permissions, clear_permissions, list_permissions, list_user_permissions,
    /// set_topic_permissions, clear_topic_permissions, list_topic_permissions,
    /// list_user_topic_permissions,
    /// set_policy, clear_policy, list_policies, set_operator_policy, clear_operator_policy,
    /// list_operator_policies, set_vhost_limits, clear_vhost_limits, list_vhost_limits,
    /// set_user_limits, clear_user_limits, list_user_limits, set_global_parameter,
    /// clear_global_parameter, list_global_parameters, stop_app, start_app, reset, force_reset,
    /// export_definitions, import_definitions)
    /// and its arguments.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

/// rabbitmqctl accepts its options anywhere, also after the command: moves the known ones out of
/// the command's arguments.
fn options_after_command(args: &mut Args) {
    let mut rest = Vec::new();
    let mut it = std::mem::take(&mut args.command).into_iter();
    if let Some(cmd) = it.next() {
        rest.push(cmd);
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "-q" | "--quiet" => args.quiet = true,
            "-s" | "--silent" => args.silent = true,
            "--no-table-headers" => args.no_table_headers = true,
            "-p" | "--vhost" => args.vhost = it.next().or(args.vhost.take()),
            "-t" | "--timeout" => {
                if let Some(t) = it.next() {
                    match t.parse() {
                        Ok(t) => args.timeout = Some(t),
                        Err(_) => rest.push(format!("--timeout={t}")),
                    }
                }
            }
            "--formatter" => {
                if let Some(f) = it.next() {
                    args.formatter = f;
                }
            }
            _ => rest.push(a),
        }
    }
    args.command = rest;
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    options_after_command(&mut args);
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
    let command = args.command[0].clone();
    let mut cmd_args = args.command[1..].to_vec();
    let timeout = args.timeout.unwrap_or(60.0);
    // rabbitmqctl waits 60 s for list_queues and without limit for most other commands unless
    // --timeout is given; the limit covers every call to the broker below.
    let limited = args.timeout.is_some() || cli::timeout_line(&command, timeout).is_some();
    let deadline = limited.then(|| std::time::Instant::now() + std::time::Duration::from_secs_f64(timeout.max(0.0)));
    let left = || deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
    // Then, as rabbitmqctl, whether the app's state (running or stopped) allows the command.
    if let Err((usage, code)) = cli::validate(&command, &cmd_args)
        .and_then(|()| if left().is_some_and(|d| d.is_zero()) { Ok(()) } else { app::check_state(&data_dir, &command, &cmd_args, left()) })
    {
        eprintln!("{usage}");
        return ExitCode::from(code);
    }
    let fmt = match cli::formatter(&args.formatter) {
        Ok(f) => f,
        Err((e, code)) => {
            eprintln!("{e}");
            return ExitCode::from(code);
        }
    };
    if fmt == cli::Formatter::Csv
        && let Err((e, code)) = cli::check_csv_options(&command, &cmd_args, args.no_table_headers)
    {
        eprintln!("{e}");
        return ExitCode::from(code);
    }
    let json = fmt == cli::Formatter::Json;
    let info = !(args.quiet || args.silent) && fmt == cli::Formatter::Table;
    let vhost_shown = args.vhost.clone().unwrap_or_else(|| "/".into());
    if info && let Some(t) = cli::timeout_line(&command, timeout) {
        println!("{t}");
    }
    if info && let Some(b) = cli::banner(&command, &cmd_args, &vhost_shown) {
        println!("{b}");
    }
    if cli::reads_password_from_stdin(&command, &cmd_args) {
        // rabbitmqctl reads the password from stdin when it is not an argument.
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let pw = line.trim_end_matches(['\r', '\n']);
        if pw.is_empty() {
            eprintln!("Error:\nPassword is not provided via argument or stdin");
            return ExitCode::from(65);
        }
        cmd_args.push(pw.to_owned());
    }
    // The definitions file is read and written here (see `admin/definitions.rs`).
    let definitions_target = matches!(command.as_str(), "export_definitions" | "import_definitions")
        .then(|| definitions::parse_args(&command, &cmd_args).expect("validated above"));
    if let Some(target) = &definitions_target {
        cmd_args = match command.as_str() {
            "import_definitions" => match definitions::read_document(target, std::io::stdin()) {
                Ok(doc) => vec![doc],
                Err((e, code)) => {
                    eprintln!("Error:\n{e}");
                    return ExitCode::from(code);
                }
            },
            _ => Vec::new(),
        };
    }
    let req = Request { command: command.clone(), args: cmd_args, vhost: args.vhost.clone() };
    // A zero timeout has run out before the call (rabbitmqctl -t 0 times out at once).
    let call = match left() {
        Some(d) if d.is_zero() => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        _ => control::call_within(&data_dir, &req, left()),
    };
    let resp = match call {
        Ok(r) => r,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            // rabbitmqctl's text and exit code (75, EX_TEMPFAIL).
            eprintln!(
                "Error: operation {command} on node {} timed out. Timeout value used: {}",
                warren::alarm::NODE_NAME,
                (timeout * 1000.0) as u64
            );
            return ExitCode::from(75);
        }
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
        if resp.bare_error {
            eprintln!("{e}");
        } else {
            eprintln!("Error:\n{e}");
        }
        return ExitCode::from(resp.exit_code.unwrap_or(70));
    }
    if let (Some(target), "export_definitions") = (&definitions_target, command.as_str()) {
        if let Err((e, code)) = definitions::write_document(target, resp.message.as_deref().unwrap_or("{}")) {
            eprintln!("Error:\n{e}");
            return ExitCode::from(code);
        }
        return ExitCode::SUCCESS;
    }
    if req.command == "status" {
        let fields: serde_json::Map<String, serde_json::Value> =
            resp.rows.iter().filter_map(|r| Some((r.first()?.as_str()?.to_owned(), r.get(1)?.clone()))).collect();
        if json {
            println!("{}", serde_json::Value::Object(fields));
        } else {
            print!("{}", status_text(&fields));
        }
        return ExitCode::SUCCESS;
    }
    let is_table = !resp.columns.is_empty() || resp.streamed;
    if json && is_table {
        print!("{}", cli::render(&resp, fmt, true));
        return ExitCode::SUCCESS;
    }
    if let Some(m) = &resp.message {
        match cli::render_message(&command, m, fmt) {
            Ok(text) => print!("{text}"),
            Err((e, code)) => {
                eprintln!("{e}");
                return ExitCode::from(code);
            }
        }
    }
    if json {
        return ExitCode::SUCCESS;
    }
    if is_table {
        let headers = !(args.silent || args.no_table_headers) && cli::prints_header(&command);
        print!("{}", cli::render(&resp, fmt, headers));
    }
    if info && let Some(done) = cli::after_success(&command) {
        println!("{done}");
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
        .map(|a| a.iter().filter_map(|r| r.get("resource")?.as_str()).map(|r| match r {
            "disk" => format!("Free disk space alarm on node {node}"),
            "memory" => format!("Memory alarm on node {node}"),
            other => format!("{other} alarm on node {node}"),
        }).collect())
        .unwrap_or_default();
    if alarms.is_empty() {
        let _ = writeln!(out, "(none)");
    }
    for a in alarms {
        let _ = writeln!(out, "{a}");
    }
    section(&mut out, "Memory");
    let gb = |k: &str| f.get(k).and_then(|v| v.as_u64()).map(warren::alarm::format_gb).unwrap_or_else(|| "unknown".into());
    let _ = writeln!(out, "Total memory used: {}", gb("memory_used"));
    let _ = writeln!(out, "Calculation strategy: {}", get("vm_memory_calculation_strategy"));
    let setting = f.get("vm_memory_high_watermark_setting").cloned().unwrap_or_default();
    let limit = f.get("vm_memory_high_watermark_limit").and_then(|v| v.as_u64()).unwrap_or(0);
    let _ = writeln!(out, "{}", warren::alarm::Watermark::describe(&setting, limit));
    section(&mut out, "Free Disk Space");
    let _ = writeln!(out, "Low free disk space watermark: {}", gb("disk_free_limit"));
    let _ = writeln!(out, "Free disk space: {}", gb("disk_free"));
    section(&mut out, "Totals");
    let _ = writeln!(out, "Connection count: {}", get("connections"));
    let _ = writeln!(out, "Queue count: {}", get("queues"));
    let _ = writeln!(out, "Virtual host count: {}", get("vhosts"));
    section(&mut out, "Listeners");
    for l in f.get("listeners").and_then(|l| l.as_array()).into_iter().flatten() {
        let s = |k: &str| l.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).unwrap_or_default();
        let purpose = if s("protocol") == "amqp/ssl" { "AMQP 0-9-1 over TLS" } else { "AMQP 0-9-1" };
        let _ = writeln!(out, "Interface: {}, port: {}, protocol: {}, purpose: {purpose}", s("interface"), s("port"), s("protocol"));
    }
    out
}
