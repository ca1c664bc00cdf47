//! The client side of rabbitmqctl's conventions, shared by `warrenctl` (and unit-tested here):
//! argument validation, info lines ("Adding user ..."), and the table, JSON and csv formatters.
//!
//! - Info lines go to stdout before the command runs; `-q` drops them, `-s` drops them and the
//!   table header, `--no-table-headers` drops the header; the JSON and csv formatters print no
//!   info lines (csv always prints its header row and refuses `--no-table-headers`).
//! - Tables are tab-separated with a header row; an empty result is one blank line (no header),
//!   as rabbitmqctl 3.10 prints it, or nothing for the listings it streams (`list_queues`, ...).
//!   Lists (user tags) print as `[a, b]`; pids, field tables and addresses as `admin::erl` says.
//! - JSON is rabbitmqctl's: `[`, one object per line, later lines starting with `,`, `]`.
//! - csv: every cell quoted, `"` doubled, table texts.

use serde_json::Value;

/// A command's argument count limits and usage line.
struct Spec {
    min: usize,
    max: usize,
    usage: &'static str,
}

fn spec(command: &str) -> Option<Spec> {
    let s = |min, max, usage| Some(Spec { min, max, usage });
    match command {
        "stop_app" => s(0, 0, "stop_app"),
        "start_app" => s(0, 0, "start_app"),
        "reset" => s(0, 0, "reset"),
        "force_reset" => s(0, 0, "force_reset"),
        // Checked by `definitions::parse_args` (see `validate`).
        "export_definitions" => s(0, usize::MAX, "export_definitions <file_path | \"-\"> [--format <json | erlang>]"),
        "import_definitions" => s(0, usize::MAX, "import_definitions <file_path | \"-\"> [--format <json | erlang>] [--skip-if-unchanged]"),
        // The password may come from stdin instead (see `reads_password_from_stdin`).
        "add_user" => s(1, 2, "add_user <username> <password>"),
        "change_password" => s(1, 2, "change_password <username> <password>"),
        "authenticate_user" => s(1, 2, "authenticate_user <username> <password>"),
        "delete_user" => s(1, 1, "delete_user <username>"),
        "clear_password" => s(1, 1, "clear_password <username>"),
        "set_user_tags" => s(1, usize::MAX, "set_user_tags <username> <tag> [...]"),
        "list_users" => s(0, 0, "list_users [--no-table-headers]"),
        "add_vhost" => s(1, 1, "add_vhost <vhost>"),
        "delete_vhost" => s(1, 1, "delete_vhost <vhost>"),
        "set_permissions" => s(4, 4, "set_permissions [--vhost <vhost>] <username> <conf> <write> <read>"),
        "clear_permissions" => s(1, 1, "clear_permissions [--vhost <vhost>] <username>"),
        "list_permissions" => s(0, 0, "list_permissions [--vhost <vhost>] [--no-table-headers]"),
        "list_user_permissions" => s(1, 1, "list_user_permissions [--no-table-headers] <username>"),
        "set_topic_permissions" => s(4, 4, "set_topic_permissions [--vhost <vhost>] <username> <exchange> <write> <read>"),
        "clear_topic_permissions" => s(1, 2, "clear_topic_permissions [--vhost <vhost>] <username> [<exchange>]"),
        "list_topic_permissions" => s(0, 0, "list_topic_permissions [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]"),
        "list_user_topic_permissions" => {
            s(1, 1, "list_user_topic_permissions [--no-table-headers] <username> [--timeout <timeout>]")
        }
        "set_vhost_limits" => s(1, 1, "set_vhost_limits [--vhost <vhost>] <definition>"),
        "clear_vhost_limits" => s(0, 0, "clear_vhost_limits [--vhost <vhost>]"),
        "list_vhost_limits" => s(0, 1, "list_vhost_limits [--vhost <vhost>] [--global] [--no-table-headers]"),
        "set_user_limits" => s(2, 2, "set_user_limits <username> <definition>"),
        "clear_user_limits" => s(2, 2, "clear_user_limits <username> <limit>|all"),
        "list_user_limits" => s(0, 2, "list_user_limits [--user <username>] [--global]"),
        "set_global_parameter" => s(2, 2, "set_global_parameter <name> <value>"),
        "clear_global_parameter" => s(1, 1, "clear_global_parameter <name>"),
        "list_global_parameters" => s(0, 0, "list_global_parameters [--no-table-headers] [--timeout <timeout>]"),
        "set_vm_memory_high_watermark" => s(1, 2, "set_vm_memory_high_watermark <fraction> | absolute <value>"),
        // Counted without their --priority/--apply-to options (see `validate`).
        "set_policy" => s(3, 3, "set_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>"),
        "set_operator_policy" => {
            s(3, 3, "set_operator_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>")
        }
        "clear_policy" => s(1, 1, "clear_policy [--vhost <vhost>] <name>"),
        "clear_operator_policy" => s(1, 1, "clear_operator_policy [--vhost <vhost>] <name>"),
        "list_policies" => s(0, 0, "list_policies [--vhost <vhost>] [--no-table-headers]"),
        "list_operator_policies" => s(0, 0, "list_operator_policies [--vhost <vhost>] [--no-table-headers]"),
        "list_channels" => s(0, usize::MAX, "list_channels [--no-table-headers] [<column> ...]"),
        "list_queues" => s(
            0,
            usize::MAX,
            "list_queues [--vhost <vhost>] [--online] [--offline] [--local] [--no-table-headers] [<column>, ...] [--timeout <timeout>]",
        ),
        "list_exchanges" => s(0, usize::MAX, "list_exchanges [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]"),
        "list_bindings" => s(0, usize::MAX, "list_bindings [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]"),
        "list_connections" => s(0, usize::MAX, "list_connections [--no-table-headers] [<column> ...] [--timeout <timeout>]"),
        "list_consumers" => s(0, usize::MAX, "list_consumers [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]"),
        "list_vhosts" => s(0, usize::MAX, "list_vhosts [--no-table-headers] [<column> ...] [--timeout <timeout>]"),
        _ => None,
    }
}

/// Commands that read the password from stdin when it is not an argument.
pub fn reads_password_from_stdin(command: &str, args: &[String]) -> bool {
    matches!(command, "add_user" | "change_password" | "authenticate_user") && args.len() == 1
}

/// rabbitmqctl's refusal of a command before it runs: `first` (the error line), the arguments
/// given and the command's usage (`app.rs`: refusals by the app's state).
pub fn usage_error(first: &str, command: &str, args: &[String]) -> String {
    let given = std::iter::once(command.to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    let usage = spec(command).map_or(command, |sp| sp.usage);
    format!("{first}\nArguments given:\n\t{given}\n\n\x1b[1mUsage\x1b[0m\n\nwarrenctl [--data-dir <dir>] [--quiet] {usage}")
}

/// rabbitmqctl's argument validation: `Ok` if the arguments fit the command, else the message and
/// exit code (64 for a wrong count, 65 for a bad argument).
pub fn validate(command: &str, args: &[String]) -> Result<(), (String, u8)> {
    let Some(sp) = spec(command) else { return Ok(()) };
    if matches!(command, "export_definitions" | "import_definitions")
        && let Err((problem, code)) = super::definitions::parse_args(command, args)
    {
        return Err((usage_error(&format!("Error (argument validation): {problem}"), command, args), code));
    }
    let policy = matches!(command, "set_policy" | "set_operator_policy").then(|| super::policies::SetArgs::parse(args));
    let count = policy.as_ref().map_or(args.len(), |p| p.positional.len());
    let unknown_keys = super::listing::unknown(command, args);
    let (problem, code) = if !unknown_keys.is_empty() {
        (super::listing::unknown_text(&unknown_keys), 64)
    } else if let Some(p) = policy.as_ref().filter(|p| p.priority().is_none()) {
        (format!("Invalid options for this command:\n--priority : {}", p.priority), 64)
    } else if count < sp.min || (command == "set_vm_memory_high_watermark" && args == ["absolute"]) {
        ("not enough arguments.".to_string(), 64)
    } else if count > sp.max {
        ("too many arguments.".to_string(), 64)
    } else if command == "set_vm_memory_high_watermark"
        && let Err(detail) = crate::alarm::Watermark::from_args(args)
    {
        (if detail.is_empty() { "Bad argument.".to_string() } else { format!("Bad argument: {detail}") }, 65)
    } else {
        return Ok(());
    };
    Err((refusal(command, args, &problem, sp.usage), code))
}

fn refusal(command: &str, args: &[String], problem: &str, usage: &str) -> String {
    let given = std::iter::once(command.to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    format!("Error (argument validation): {problem}\nArguments given:\n\t{given}\n\n\x1b[1mUsage\x1b[0m\n\nwarrenctl [--data-dir <dir>] [--quiet] {usage}")
}

/// rabbitmqctl's output formats (`--formatter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formatter {
    Table,
    Json,
    Csv,
}

/// The formatter named `name`, or rabbitmqctl's refusal and exit code. rabbitmqctl's
/// `pretty_table` and `erlang` formatters are refused here (64): warrenctl does not print them.
pub fn formatter(name: &str) -> Result<Formatter, (String, u8)> {
    match name {
        "table" => Ok(Formatter::Table),
        "json" => Ok(Formatter::Json),
        "csv" => Ok(Formatter::Csv),
        "pretty_table" | "erlang" => {
            Err((format!("Error: the {name} formatter is not supported by warrenctl (use table, csv or json)"), 64))
        }
        other => {
            // rabbitmqctl looks the formatter's module up and fails with this (exit code 1).
            let module: String = other
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
                })
                .collect();
            Err((
                format!(
                    "** (ArgumentError) errors were found at the given arguments:\n\n  * 1st argument: not an already existing atom\n\n    :erlang.binary_to_existing_atom(\"Elixir.RabbitMQ.CLI.Formatters.{module}\", :utf8)"
                ),
                1,
            ))
        }
    }
}

/// rabbitmqctl refuses `--no-table-headers` with the csv formatter (it always prints the
/// header row there).
pub fn check_csv_options(command: &str, args: &[String], no_table_headers: bool) -> Result<(), (String, u8)> {
    let usage = spec(command).map_or(command.to_string(), |s| s.usage.to_string());
    if no_table_headers {
        return Err((refusal(command, args, "Invalid options for this command:\n--no-table-headers : ", &usage), 64));
    }
    Ok(())
}

/// A message answer (`list_vhost_limits`, `list_user_limits` of one vhost or user) as the
/// JSON or csv formatter prints it: `Err` with the text for stderr and the exit code where
/// rabbitmqctl 3.10 fails (its csv formatter cannot print a message: exit code 70).
pub fn render_message(command: &str, message: &str, formatter: Formatter) -> Result<String, (String, u8)> {
    let limits = command == "list_vhost_limits";
    let listing = limits || command == "list_user_limits";
    match formatter {
        Formatter::Table => Ok(format!("{message}\n")),
        Formatter::Json if limits && message.is_empty() => Ok("[]\n".into()),
        Formatter::Json if limits => {
            Ok(format!("{}\n", serde_json::json!({"node": crate::alarm::NODE_NAME, "result": "ok", "value": message})))
        }
        Formatter::Json => Ok(format!("{}\n", serde_json::json!({"message": message}))),
        Formatter::Csv if !listing => Ok(format!("{message}\n")),
        Formatter::Csv if message.is_empty() => Ok("\r\n\r\n\n".into()),
        Formatter::Csv => Err((
            format!("%Protocol.UndefinedError{{protocol: Enumerable, value: {}, description: \"\"}}\n", Value::String(message.into())),
            70,
        )),
    }
}

/// A listing's cell in the table (and csv) formatter.
fn text_at(resp: &super::Response, r: usize, c: usize) -> String {
    match resp.printed.get(r).and_then(|p| p.get(c)).and_then(|p| p.table.clone()) {
        Some(t) => t,
        None => cell(&resp.rows[r][c]),
    }
}

/// A listing's cell in the JSON formatter.
fn json_at(resp: &super::Response, r: usize, c: usize) -> String {
    match resp.printed.get(r).and_then(|p| p.get(c)).and_then(|p| p.json.clone()) {
        Some(t) => t,
        None => resp.rows[r][c].to_string(),
    }
}

/// A table answer as `formatter` prints it (`headers`: the table formatter's header row).
/// rabbitmqctl prints a streamed listing with no rows as nothing (table), `[` and `]` on two
/// lines (JSON) or an empty CRLF line (csv); other empty tables as a blank line and `[]`.
pub fn render(resp: &super::Response, formatter: Formatter, headers: bool) -> String {
    let n = resp.rows.len();
    match formatter {
        Formatter::Table => {
            if n == 0 {
                return if resp.streamed { String::new() } else { "\n".into() };
            }
            let mut out = String::new();
            if headers {
                out.push_str(&resp.columns.join("\t"));
                out.push('\n');
            }
            for r in 0..n {
                out.push_str(&(0..resp.columns.len()).map(|c| text_at(resp, r, c)).collect::<Vec<_>>().join("\t"));
                out.push('\n');
            }
            out
        }
        Formatter::Json => {
            if n == 0 {
                return if resp.streamed { "[\n]\n".into() } else { "[]\n".into() };
            }
            let mut out = String::from("[\n");
            for r in 0..n {
                if r > 0 {
                    out.push(',');
                }
                let fields: Vec<String> =
                    resp.columns.iter().enumerate().map(|(c, k)| format!("{}:{}", Value::String(k.clone()), json_at(resp, r, c))).collect();
                out.push('{');
                out.push_str(&fields.join(","));
                out.push_str("}\n");
            }
            out.push_str("]\n");
            out
        }
        Formatter::Csv => {
            if n == 0 {
                return if resp.streamed { "\r\n".into() } else { "\r\n\r\n\n".into() };
            }
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            let mut out = resp.columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",");
            out.push('\n');
            for r in 0..n {
                out.push_str(&(0..resp.columns.len()).map(|c| quote(&text_at(resp, r, c))).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
            out
        }
    }
}

/// The info line(s) printed before a command runs (None: the command has none).
pub fn banner(command: &str, args: &[String], vhost: &str) -> Option<String> {
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    Some(match command {
        "add_user" => format!("Adding user \"{}\" ...", a(0)),
        "delete_user" => format!("Deleting user \"{}\" ...", a(0)),
        "change_password" => format!("Changing password for user \"{}\" ...", a(0)),
        "clear_password" => format!("Clearing password for user \"{}\" ...", a(0)),
        "authenticate_user" => format!("Authenticating user \"{}\" ...", a(0)),
        "set_user_tags" => format!("Setting tags for user \"{}\" to [{}] ...", a(0), args.get(1..).unwrap_or(&[]).join(", ")),
        "list_users" => "Listing users ...".into(),
        "list_queues" => format!("Listing queues for vhost {vhost} ..."),
        "list_exchanges" => format!("Listing exchanges for vhost {vhost} ..."),
        "list_bindings" => format!("Listing bindings for vhost {vhost}..."),
        "list_connections" => "Listing connections ...".into(),
        "list_consumers" => format!("Listing consumers in vhost {vhost} ..."),
        "list_channels" => "Listing channels ...".into(),
        "add_vhost" => format!("Adding vhost \"{}\" ...", a(0)),
        "delete_vhost" => format!("Deleting vhost \"{}\" ...", a(0)),
        "list_vhosts" => "Listing vhosts ...".into(),
        "set_permissions" => format!("Setting permissions for user \"{}\" in vhost \"{vhost}\" ...", a(0)),
        "clear_permissions" => format!("Clearing permissions for user \"{}\" in vhost \"{vhost}\" ...", a(0)),
        "list_permissions" => format!("Listing permissions for vhost \"{vhost}\" ..."),
        "list_user_permissions" => format!("Listing permissions for user \"{}\" ...", a(0)),
        "set_topic_permissions" => format!("Setting topic permissions on \"{}\" for user \"{}\" in vhost \"{vhost}\" ...", a(1), a(0)),
        "clear_topic_permissions" if args.len() > 1 => {
            format!("Clearing topic permissions on \"{}\" for user \"{}\" in vhost \"{vhost}\" ...", a(1), a(0))
        }
        "clear_topic_permissions" => format!("Clearing topic permissions for user \"{}\" in vhost \"{vhost}\" ...", a(0)),
        "list_topic_permissions" => format!("Listing topic permissions for vhost \"{vhost}\" ..."),
        "list_user_topic_permissions" => format!("Listing topic permissions for user \"{}\" ...", a(0)),
        "set_vhost_limits" => format!("Setting vhost limits to \"{}\" for vhost \"{vhost}\" ...", a(0)),
        "clear_vhost_limits" => format!("Clearing vhost \"{vhost}\" limits ..."),
        "list_vhost_limits" if args.iter().any(|x| x == "--global") => "Listing limits for all vhosts ...".into(),
        "list_vhost_limits" => format!("Listing limits for vhost \"{vhost}\" ..."),
        "set_policy" | "set_operator_policy" => {
            let p = super::policies::SetArgs::parse(args);
            let pa = |i: usize| p.positional.get(i).map(String::as_str).unwrap_or("");
            let what = if command == "set_policy" { "policy" } else { "operator policy override" };
            format!("Setting {what} \"{}\" for pattern \"{}\" to \"{}\" with priority \"{}\" for vhost \"{vhost}\" ...", pa(0), pa(1), pa(2), p.priority)
        }
        "clear_policy" => format!("Clearing policy \"{}\" on vhost \"{vhost}\" ...", a(0)),
        "clear_operator_policy" => format!("Clearing operator policy \"{}\" on vhost \"{vhost}\" ...", a(0)),
        "list_policies" => format!("Listing policies for vhost \"{vhost}\" ..."),
        "list_operator_policies" => format!("Listing operator policy overrides for vhost \"{vhost}\" ..."),
        "set_global_parameter" => format!("Setting global runtime parameter \"{}\" to \"{}\" ...", a(0), a(1)),
        "clear_global_parameter" => format!("Clearing global runtime parameter \"{}\" ...", a(0)),
        "list_global_parameters" => "Listing global runtime parameters ...".into(),
        "set_user_limits" => format!("Setting user limits to \"{}\" for user \"{}\" ...", a(1), a(0)),
        "clear_user_limits" if a(1) == "all" => format!("Clearing all limits for user \"{}\" ...", a(0)),
        "clear_user_limits" => format!("Clearing \"{}\" limit for user \"{}\" ...", a(1), a(0)),
        "list_user_limits" if args.iter().any(|x| x == "--global") => "Listing limits for all users ...".into(),
        "list_user_limits" => {
            let user = args.iter().position(|x| x == "--user").and_then(|i| args.get(i + 1)).map(String::as_str).unwrap_or("guest");
            format!("Listing limits for user \"{user}\" ...")
        }
        "stop_app" => format!("Stopping rabbit application on node {} ...", crate::alarm::NODE_NAME),
        "start_app" => format!("Starting node {} ...", crate::alarm::NODE_NAME),
        "reset" => format!("Resetting node {} ...", crate::alarm::NODE_NAME),
        "force_reset" => format!("Forcefully resetting node {} ...", crate::alarm::NODE_NAME),
        "export_definitions" | "import_definitions" => return super::definitions::banner(command, args),
        _ => return None,
    })
}

/// The info line rabbitmqctl prints before the banner of a command that has a timeout shown
/// (`seconds`: the `--timeout` given, 60 by default).
pub fn timeout_line(command: &str, seconds: f64) -> Option<String> {
    (command == "list_queues").then(|| format!("Timeout: {seconds:?} seconds ..."))
}

/// An info line printed after a command succeeded.
pub fn after_success(command: &str) -> Option<&'static str> {
    match command {
        "add_user" => Some(
            "Done. Don't forget to grant the user permissions to some virtual hosts! See 'rabbitmqctl help set_permissions' to learn more.",
        ),
        "import_definitions" => Some("Successfully started definition import. This process is asynchronous and can take some time."),
        _ => None,
    }
}

/// Whether the command's table is printed with its header row: rabbitmqctl 3.10 prints none for
/// `list_user_topic_permissions`.
pub fn prints_header(command: &str) -> bool {
    command != "list_user_topic_permissions"
}

/// A table cell: strings as they are, lists as `[a, b]`, anything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(cell).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn validation_texts() {
        assert!(validate("add_user", &s(&["bob", "pw"])).is_ok());
        assert!(validate("add_user", &s(&["bob"])).is_ok(), "password from stdin");
        let (e, code) = validate("add_user", &[]).unwrap_err();
        assert_eq!(code, 64);
        assert!(e.starts_with("Error (argument validation): not enough arguments.\nArguments given:\n\tadd_user\n"), "{e}");
        let (e, _) = validate("list_users", &s(&["name"])).unwrap_err();
        assert!(e.starts_with("Error (argument validation): too many arguments.\nArguments given:\n\tlist_users name\n"), "{e}");
        assert!(validate("set_permissions", &s(&["u", "a", "b"])).is_err());
        assert!(validate("list_queues", &s(&["name", "messages"])).is_ok(), "other commands are not validated here");
    }

    #[test]
    fn memory_watermark_validation_as_rabbitmqctl() {
        assert!(validate("set_vm_memory_high_watermark", &s(&["0.4"])).is_ok());
        assert!(validate("set_vm_memory_high_watermark", &s(&["absolute", "1GiB"])).is_ok());
        let (e, code) = validate("set_vm_memory_high_watermark", &s(&["1.5"])).unwrap_err();
        assert_eq!(code, 65);
        assert!(
            e.starts_with("Error (argument validation): Bad argument: The threshold should be a fraction between 0.0 and 1.0\nArguments given:\n\tset_vm_memory_high_watermark 1.5\n"),
            "{e}"
        );
        assert!(e.ends_with("set_vm_memory_high_watermark <fraction> | absolute <value>"), "{e}");
        let (e, code) = validate("set_vm_memory_high_watermark", &s(&["absolute", "1.5GB"])).unwrap_err();
        assert_eq!(code, 65);
        assert!(e.starts_with("Error (argument validation): Bad argument: The threshold should be an integer.\n"), "{e}");
        let (e, code) = validate("set_vm_memory_high_watermark", &s(&["absolute", "lots"])).unwrap_err();
        assert_eq!(code, 65);
        assert!(e.starts_with("Error (argument validation): Bad argument.\n"), "{e}");
        let (e, code) = validate("set_vm_memory_high_watermark", &s(&["absolute"])).unwrap_err();
        assert_eq!(code, 64);
        assert!(e.starts_with("Error (argument validation): not enough arguments.\n"), "{e}");
    }

    #[test]
    fn banners_as_rabbitmqctl() {
        assert_eq!(banner("set_user_tags", &s(&["zz", "monitoring", "management"]), "/").unwrap(), "Setting tags for user \"zz\" to [monitoring, management] ...");
        assert_eq!(banner("set_user_tags", &s(&["zz"]), "/").unwrap(), "Setting tags for user \"zz\" to [] ...");
        assert_eq!(banner("set_permissions", &s(&["u", ".*", ".*", ".*"]), "v1").unwrap(), "Setting permissions for user \"u\" in vhost \"v1\" ...");
        assert_eq!(banner("list_permissions", &[], "/").unwrap(), "Listing permissions for vhost \"/\" ...");
        assert_eq!(banner("status", &[], "/"), None);
        assert_eq!(
            banner("set_topic_permissions", &s(&["u", "amq.topic", "^a", "^b"]), "v1").unwrap(),
            "Setting topic permissions on \"amq.topic\" for user \"u\" in vhost \"v1\" ..."
        );
        assert_eq!(banner("clear_topic_permissions", &s(&["u"]), "/").unwrap(), "Clearing topic permissions for user \"u\" in vhost \"/\" ...");
        assert_eq!(
            banner("clear_topic_permissions", &s(&["u", "x"]), "/").unwrap(),
            "Clearing topic permissions on \"x\" for user \"u\" in vhost \"/\" ..."
        );
        let (e, code) = validate("clear_topic_permissions", &s(&["a", "b", "c"])).unwrap_err();
        assert_eq!(code, 64);
        assert!(e.starts_with("Error (argument validation): too many arguments.\n"), "{e}");
    }

    #[test]
    fn table_json_and_csv_output() {
        let resp = |rows: Vec<Vec<Value>>, streamed: bool| super::super::Response {
            columns: s(&["user", "tags"]),
            rows,
            streamed,
            ..Default::default()
        };
        let r = resp(vec![vec![json!("guest"), json!(["administrator"])], vec![json!("bob"), json!(["a", "b"])]], false);
        assert_eq!(render(&r, Formatter::Table, true), "user\ttags\nguest\t[administrator]\nbob\t[a, b]\n");
        assert_eq!(render(&r, Formatter::Table, false), "guest\t[administrator]\nbob\t[a, b]\n");
        assert_eq!(render(&r, Formatter::Json, true), "[\n{\"user\":\"guest\",\"tags\":[\"administrator\"]}\n,{\"user\":\"bob\",\"tags\":[\"a\",\"b\"]}\n]\n");
        assert_eq!(render(&r, Formatter::Csv, true), "\"user\",\"tags\"\n\"guest\",\"[administrator]\"\n\"bob\",\"[a, b]\"\n");
        // Empty: a blank line and [] (a streamed listing: nothing, and [ ] on two lines).
        let (empty, streamed) = (resp(vec![], false), resp(vec![], true));
        assert_eq!((render(&empty, Formatter::Table, true), render(&streamed, Formatter::Table, true)), ("\n".into(), String::new()));
        assert_eq!((render(&empty, Formatter::Json, true), render(&streamed, Formatter::Json, true)), ("[]\n".into(), "[\n]\n".into()));
        assert_eq!((render(&empty, Formatter::Csv, true), render(&streamed, Formatter::Csv, true)), ("\r\n\r\n\n".into(), "\r\n".into()));
        // A cell printed otherwise than its value (a pid).
        let mut r = resp(vec![vec![json!("#PID<1.2.0>"), json!([])]], true);
        r.printed = vec![vec![super::super::Printed { table: Some("<warren@localhost.1.2.0>".into()), json: None }, Default::default()]];
        assert_eq!(render(&r, Formatter::Table, false), "<warren@localhost.1.2.0>\t[]\n");
        assert_eq!(render(&r, Formatter::Json, false), "[\n{\"user\":\"#PID<1.2.0>\",\"tags\":[]}\n]\n");
        assert!(formatter("pretty_table").is_err() && formatter("csv").is_ok());
        assert_eq!(formatter("bogus_one").unwrap_err().1, 1);
    }
}
