//! `export_definitions FILE|-` and `import_definitions [FILE|-]`: RabbitMQ's definitions JSON,
//! the same document as the management API's `GET/POST /api/definitions`
//! ([`api::definitions`](super::api::definitions)).
//!
//! The broker side answers `export_definitions` with the document as text and imports the
//! document handed to `import_definitions` as its one argument. `warrenctl` reads and writes the
//! files (rabbitmqctl's node does; the texts and the effect are the same, and a relative path
//! is relative to where `warrenctl` runs): `-` is stdout for export, stdin for import (as is
//! no path at all: 3.10's `import_definitions -` looks for a file called `-`, Warren reads
//! stdin). Only `--format json` is supported; `erlang` (Erlang's external term format) is
//! refused. `--skip-if-unchanged` is accepted and imports anyway, as rabbitmqctl 3.10 does.

use super::api::definitions::{document, import_document};
use super::{Request, Response};
use crate::broker::Broker;
use std::path::Path;
use std::sync::Arc;

/// The server side: `None` for other commands.
pub fn handle(broker: &Arc<Broker>, req: &Request) -> Option<Response> {
    Some(match req.command.as_str() {
        "export_definitions" => match document(broker, None) {
            Ok(doc) => Response::message(doc.to_string()),
            Err(e) => Response::error(e.reason),
        },
        "import_definitions" => {
            let Some(text) = req.args.first() else {
                return Some(Response::error("import_definitions needs the definitions document"));
            };
            let result = serde_json::from_str(text)
                .map_err(|e| deserialise_error(&e))
                .and_then(|doc| import_document(broker, None, &doc).map_err(|e| (e.reason, 69)));
            match result {
                Ok(_) => Response::default(),
                Err((text, code)) => {
                    let mut r = Response::error(text);
                    r.exit_code = Some(code);
                    r
                }
            }
        }
        _ => return None,
    })
}

fn deserialise_error(e: &serde_json::Error) -> (String, u8) {
    (format!("Failed to deserialise input (format: JSON) (error: {e})"), 65)
}

/// A command's file argument: a path, or `-` (stdout for export, stdin for import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(String),
    Std,
}

/// The arguments of `export_definitions` / `import_definitions`, checked as rabbitmqctl checks
/// them: `Err` with the problem for its "Error (argument validation)" text and the exit code.
pub fn parse_args(command: &str, args: &[String]) -> Result<Target, (String, u8)> {
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--format" || a.starts_with("--format=") {
            let format = match a.strip_prefix("--format=") {
                Some(f) => f.to_string(),
                None => it.next().cloned().unwrap_or_default(),
            };
            match format.as_str() {
                "json" => {}
                "erlang" => return Err(("Bad argument: Format erlang (Erlang's external term format) is not supported by Warren: use json".into(), 65)),
                _ => return Err(("Bad argument: Format should be either json or erlang".into(), 65)),
            }
        } else if a == "--skip-if-unchanged" && command == "import_definitions" {
            // Accepted and the import runs, as with rabbitmqctl 3.10 (observed: a file imported
            // again with it is imported again; its hashing applies to imports at boot only).
        } else if a.starts_with("--") {
            return Err((format!("Invalid options for this command:\n{a} : "), 64));
        } else {
            positional.push(a.clone());
        }
    }
    let (min, max) = if command == "export_definitions" { (1, 1) } else { (0, 1) };
    if positional.len() < min {
        return Err(("not enough arguments.".into(), 64));
    }
    if positional.len() > max {
        return Err(("too many arguments.".into(), 64));
    }
    let target = match positional.pop() {
        None => Target::Std,
        Some(p) if p == "-" => Target::Std,
        Some(p) => Target::File(p),
    };
    if let Target::File(p) = &target {
        if command == "export_definitions" {
            let dir = Path::new(p).parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(d) = dir.filter(|d| !d.is_dir()) {
                return Err((format!("Bad argument: Directory {} does not exist", d.display()), 65));
            }
        } else if !Path::new(p).exists() {
            return Err((format!("Bad argument: File {p} does not exist"), 65));
        }
    }
    Ok(target)
}

/// The info line printed before the command runs.
pub fn banner(command: &str, args: &[String]) -> Option<String> {
    let target = parse_args(command, args).ok()?;
    match (command, target) {
        ("export_definitions", Target::File(p)) => Some(format!("Exporting definitions in JSON to a file at \"{p}\" ...")),
        ("export_definitions", Target::Std) => None,
        (_, Target::File(p)) => Some(format!("Importing definitions in JSON from a file at \"{p}\" ...")),
        (_, Target::Std) => Some("Importing definitions in JSON from standard input ...".into()),
    }
}

/// The client side of `import_definitions`: the document read from the file or stdin, checked
/// to be JSON, as the request's argument. `Err`: rabbitmqctl's error text and exit code.
pub fn read_document(target: &Target, stdin: impl std::io::Read) -> Result<String, (String, u8)> {
    let text = match target {
        Target::File(p) => {
            if Path::new(p).is_dir() {
                return Err((format!("Path {p} is a directory"), 65));
            }
            std::fs::read_to_string(p).map_err(|e| (format!("Cannot read file {p}: {e}"), 65))?
        }
        Target::Std => {
            let mut s = String::new();
            let mut stdin = stdin;
            stdin.read_to_string(&mut s).map_err(|e| (format!("Cannot read standard input: {e}"), 65))?;
            s
        }
    };
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| deserialise_error(&e))?;
    Ok(text)
}

/// The client side of `export_definitions`: writes the document to the file, or prints it (as
/// rabbitmqctl, without a newline after it). `Err`: rabbitmqctl's error text and exit code.
pub fn write_document(target: &Target, doc: &str) -> Result<(), (String, u8)> {
    match target {
        Target::Std => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(doc.as_bytes()).and_then(|_| out.flush()).map_err(|e| (format!("Cannot write to standard output: {e}"), 74))
        }
        Target::File(p) => {
            if Path::new(p).is_dir() {
                return Err((format!("Path {p} is a directory"), 65));
            }
            std::fs::write(p, doc).map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => (format!("No permissions to write to file {p} or its parent directory"), 65),
                _ => (format!("Cannot write file {p}: {e}"), 65),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments_as_rabbitmqctl_checks_them() {
        assert_eq!(parse_args("export_definitions", &s(&["-"])), Ok(Target::Std));
        assert_eq!(parse_args("export_definitions", &s(&["defs.json", "--format", "json"])), Ok(Target::File("defs.json".into())));
        assert_eq!(parse_args("export_definitions", &s(&[])).unwrap_err(), ("not enough arguments.".into(), 64));
        assert_eq!(parse_args("export_definitions", &s(&["a", "b"])).unwrap_err(), ("too many arguments.".into(), 64));
        assert_eq!(
            parse_args("export_definitions", &s(&["/nonexistent-dir/d.json"])).unwrap_err(),
            ("Bad argument: Directory /nonexistent-dir does not exist".into(), 65)
        );
        assert_eq!(
            parse_args("export_definitions", &s(&["-", "--format", "yaml"])).unwrap_err(),
            ("Bad argument: Format should be either json or erlang".into(), 65)
        );
        assert_eq!(parse_args("export_definitions", &s(&["-", "--format", "erlang"])).unwrap_err().1, 65);
        assert_eq!(parse_args("import_definitions", &s(&[])), Ok(Target::Std));
        assert_eq!(parse_args("import_definitions", &s(&["-"])), Ok(Target::Std));
        assert_eq!(
            parse_args("import_definitions", &s(&["/nonexistent.json"])).unwrap_err(),
            ("Bad argument: File /nonexistent.json does not exist".into(), 65)
        );
        assert_eq!(parse_args("import_definitions", &s(&["-", "--skip-if-unchanged"])), Ok(Target::Std));
        assert_eq!(
            parse_args("import_definitions", &s(&["-", "--foo"])).unwrap_err(),
            ("Invalid options for this command:\n--foo : ".into(), 64)
        );
        assert_eq!(parse_args("export_definitions", &s(&["-", "--skip-if-unchanged"])).unwrap_err().1, 64);
    }

    #[test]
    fn banners_as_rabbitmqctl() {
        assert_eq!(banner("export_definitions", &s(&["d.json"])).unwrap(), "Exporting definitions in JSON to a file at \"d.json\" ...");
        assert_eq!(banner("export_definitions", &s(&["-"])), None);
        assert_eq!(banner("import_definitions", &s(&[])).unwrap(), "Importing definitions in JSON from standard input ...");
        assert_eq!(banner("import_definitions", &s(&["-"])).unwrap(), "Importing definitions in JSON from standard input ...");
    }

    #[test]
    fn unreadable_input_is_refused_with_rabbitmqs_text() {
        let (e, code) = read_document(&Target::Std, &b"{\"vhosts\":["[..]).unwrap_err();
        assert_eq!(code, 65);
        assert!(e.starts_with("Failed to deserialise input (format: JSON) (error: "), "{e}");
        assert_eq!(read_document(&Target::Std, &b"{}"[..]).unwrap(), "{}");
        let (e, code) = read_document(&Target::File("/tmp".into()), &b""[..]).unwrap_err();
        assert_eq!((e.as_str(), code), ("Path /tmp is a directory", 65));
    }
}
