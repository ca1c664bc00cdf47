//! The broker's log: to stderr (ANSI colours only when stderr is a terminal, so redirected
//! output and log collectors get plain lines), and/or to a file with time-based rotation
//! (`[log] file`, `rotation`, `rotation_count`; RabbitMQ's `log.file`, `log.file.rotation.*`).

use crate::config::LogConfig;
use std::io::IsTerminal;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::prelude::*;

/// Keeps the file writer's background thread alive; drop it last (it flushes).
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// `rotation` of the config: "never", "daily", "hourly", "minutely".
pub fn parse_rotation(s: &str) -> Result<Rotation, String> {
    match s {
        "never" | "" => Ok(Rotation::NEVER),
        "daily" => Ok(Rotation::DAILY),
        "hourly" => Ok(Rotation::HOURLY),
        "minutely" => Ok(Rotation::MINUTELY),
        other => Err(format!("invalid log rotation {other:?}: expected \"never\", \"daily\", \"hourly\" or \"minutely\"")),
    }
}

/// Installs the global subscriber. `filter`: the `WARREN_LOG` environment variable wins over
/// `log.level`.
pub fn init(cfg: &LogConfig) -> Result<LogGuard, String> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.level))
    };
    let mut guard = None;
    let file_layer = match &cfg.file {
        None => None,
        Some(path) => {
            let rotation = parse_rotation(&cfg.rotation)?;
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let name = path.file_name().ok_or_else(|| format!("invalid log file {}", path.display()))?;
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
            let mut b = RollingFileAppender::builder().rotation(rotation).filename_prefix(name.to_string_lossy());
            if cfg.rotation_count > 0 {
                b = b.max_log_files(cfg.rotation_count);
            }
            let appender = b.build(dir).map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            let (writer, g) = tracing_appender::non_blocking(appender);
            guard = Some(g);
            Some(tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false).with_target(false).with_filter(filter()))
        }
    };
    let console = (cfg.file.is_none() || cfg.console).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_filter(filter())
    });
    tracing_subscriber::registry().with(file_layer).with(console).try_init().map_err(|e| e.to_string())?;
    Ok(LogGuard(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations() {
        assert_eq!(parse_rotation("daily").unwrap(), Rotation::DAILY);
        assert_eq!(parse_rotation("never").unwrap(), Rotation::NEVER);
        assert!(parse_rotation("weekly").unwrap_err().contains("invalid log rotation"));
    }
}
