//! The broker's log: to stderr (ANSI colours only when stderr is a terminal, so redirected
//! output and log collectors get plain lines), and/or to a file rotated by time or by size
//! (`[log] file`, `rotation`, `rotation_size`, `rotation_count`; RabbitMQ's `log.file`,
//! `log.file.rotation.date`, `.size`, `.count`): time with tracing-appender (files named
//! `<file>.<date>`), size with file-rotate (the current file keeps its name; rotated ones are
//! `<file>.1`, newest first).

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
            let (writer, g) = if cfg.rotation_size > 0 {
                if rotation != Rotation::NEVER {
                    return Err(format!(
                        "[log] rotation = {:?} and rotation_size = {}: rotate by time or by size, not both",
                        cfg.rotation, cfg.rotation_size
                    ));
                }
                tracing_appender::non_blocking(size_rotated(path, cfg.rotation_size, cfg.rotation_count)?)
            } else {
                let mut b = RollingFileAppender::builder().rotation(rotation).filename_prefix(name.to_string_lossy());
                if cfg.rotation_count > 0 {
                    b = b.max_log_files(cfg.rotation_count);
                }
                let appender = b.build(dir).map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
                tracing_appender::non_blocking(appender)
            };
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

/// The log file `path`, moved to `<path>.1` (older ones to `.2`, …, `count` kept; 0: all) once
/// a write takes it past `size` bytes.
fn size_rotated(path: &std::path::Path, size: u64, count: usize) -> Result<file_rotate::FileRotate<file_rotate::suffix::AppendCount>, String> {
    use file_rotate::{ContentLimit, FileRotate, compression::Compression, suffix::AppendCount};
    // FileRotate logs an open failure to stderr and drops lines; check the file opens first.
    std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
    let keep = if count == 0 { usize::MAX } else { count };
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    Ok(FileRotate::new(path, AppendCount::new(keep), ContentLimit::BytesSurpassed(size), Compression::None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_rotation_keeps_count_files_of_about_size_bytes() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warren.log");
        let mut w = size_rotated(&path, 1000, 2).unwrap();
        for i in 0..100 {
            writeln!(w, "line {i:04} {}", "x".repeat(90)).unwrap();
        }
        w.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["warren.log", "warren.log.1", "warren.log.2"]);
        for n in &names {
            let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
            assert!(len <= 1000 + 101, "{n}: {len} bytes");
        }
        // Oldest first: .2, .1, the current file: the last lines written, in order.
        let text: String = ["warren.log.2", "warren.log.1", "warren.log"].iter().map(|n| std::fs::read_to_string(dir.path().join(n)).unwrap()).collect();
        let all: String = (0..100).map(|i| format!("line {i:04} {}\n", "x".repeat(90))).collect();
        assert!(text.len() > 2000 && all.ends_with(&text), "{text}");
    }

    #[test]
    fn time_and_size_rotation_together_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            file: Some(dir.path().join("w.log")),
            rotation: "daily".into(),
            rotation_size: 1000,
            ..Default::default()
        };
        let err = init(&cfg).err().unwrap();
        assert!(err.contains("rotate by time or by size, not both"), "{err}");
    }

    #[test]
    fn rotations() {
        assert_eq!(parse_rotation("daily").unwrap(), Rotation::DAILY);
        assert_eq!(parse_rotation("never").unwrap(), Rotation::NEVER);
        assert!(parse_rotation("weekly").unwrap_err().contains("invalid log rotation"));
    }
}
