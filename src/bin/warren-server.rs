//! `warren-server`: the broker.
use clap::Parser;
use std::path::PathBuf;
use warren::config::Config;

#[derive(Parser)]
#[command(name = "warren-server", version, about = "Warren: an AMQP 0-9-1 message broker with WebAssembly plugins")]
struct Args {
    /// TOML config file (see config/warren.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// AMQP port (0 picks a free one).
    #[arg(long)]
    amqp_port: Option<u16>,
    /// AMQPS (TLS) port; needs the [amqp.tls] section of the config file (certfile, keyfile).
    #[arg(long)]
    amqps_port: Option<u16>,
    /// HTTP port of the management plugin (while it is enabled).
    #[arg(long)]
    http_port: Option<u16>,
    /// Address to listen on.
    #[arg(long)]
    bind: Option<String>,
    /// Data directory (redb database, control socket).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Plugins directory.
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warren-server: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(p) = args.amqp_port {
        config.amqp.port = p;
    }
    if let Some(p) = args.amqps_port {
        match &mut config.amqp.tls {
            Some(tls) => tls.port = p,
            None => {
                eprintln!("warren-server: --amqps-port needs an [amqp.tls] section (certfile, keyfile) in the config file");
                return std::process::ExitCode::from(2);
            }
        }
    }
    if let Some(p) = args.http_port {
        config.management.port = p;
    }
    if let Some(b) = args.bind {
        config.amqp.bind = b;
    }
    if let Some(d) = args.data_dir {
        config.storage.data_dir = d;
    }
    if let Some(d) = args.plugins_dir {
        config.plugins.dir = Some(d);
    }
    // Logs go to stderr (plain unless it is a terminal) and/or the configured file.
    let _log = match warren::logging::init(&config.log) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("warren-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let server = match warren::server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down on signal");
        server.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}
