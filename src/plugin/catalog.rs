//! Which plugins exist and which are enabled: the built-ins and shipped plugins inside the
//! binary, the `.wasm` files of the plugins folder, and the `enabled_plugins` file in the data
//! directory (RabbitMQ's format `[name1,'name-2'].`). Used by the plugin manager and, offline,
//! by `warren-plugins`.

use super::builtin::{self, Shipped};
use std::path::{Path, PathBuf};

/// File name of the enabled set inside the data directory.
pub const ENABLED_FILE: &str = "enabled_plugins";

/// Reads an `enabled_plugins` file: `[a,'b-c'].` (missing file: nothing enabled).
pub fn read_enabled(path: &Path) -> Result<Vec<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let t = text.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix('.'))
        .and_then(|r| r.trim_end().strip_suffix(']'))
        .ok_or_else(|| format!("{} is not a plugin list like [name1,name2].", path.display()))?;
    Ok(inner
        .split(',')
        .map(|n| n.trim().trim_matches('\'').to_string())
        .filter(|n| !n.is_empty())
        .collect())
}

/// Writes an `enabled_plugins` file (temp file + rename).
pub fn write_enabled(path: &Path, names: &[String]) -> std::io::Result<()> {
    let atom = |n: &String| {
        let plain = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain { n.clone() } else { format!("'{n}'") }
    };
    let body = format!("[{}].\n", names.iter().map(atom).collect::<Vec<_>>().join(","));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, path)
}

/// The `.wasm` files of the plugins folder: name → path.
pub fn available(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    out.sort();
    out
}

/// Where an optional plugin's component comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Inside the binary.
    Shipped(&'static Shipped),
    /// A file of the plugins folder (the plugin's name is the file's stem).
    File(PathBuf),
}

impl Origin {
    pub fn bytes(&self) -> Result<std::borrow::Cow<'static, [u8]>, String> {
        match self {
            Origin::Shipped(s) => Ok(std::borrow::Cow::Borrowed(s.bytes)),
            Origin::File(p) => std::fs::read(p).map(std::borrow::Cow::Owned).map_err(|e| format!("cannot read {}: {e}", p.display())),
        }
    }

    /// Where it is, for messages: the file, or "inside the binary".
    pub fn place(&self) -> String {
        match self {
            Origin::Shipped(_) => "inside the binary".into(),
            Origin::File(p) => p.display().to_string(),
        }
    }
}

/// Whether `name` is taken by a plugin inside the binary (built-in, shipped, or an alias).
pub fn reserved(name: &str) -> bool {
    builtin::is_builtin(name) || builtin::shipped(name).is_some()
}

/// Every optional plugin: the shipped ones, then the folder's files in name order. A file whose
/// name is taken by a plugin inside the binary comes back as `Err` (it is not loadable).
pub fn catalog(dir: &Path) -> Vec<(String, Result<Origin, String>)> {
    let mut out: Vec<(String, Result<Origin, String>)> =
        builtin::SHIPPED.iter().map(|s| (s.name.to_string(), Ok(Origin::Shipped(s)))).collect();
    for (name, path) in available(dir) {
        if reserved(&name) {
            let e = format!("{}: the name '{name}' is taken by a plugin inside the binary; rename the file", path.display());
            out.push((name, Err(e)));
        } else {
            out.push((name, Ok(Origin::File(path))));
        }
    }
    out
}

/// The plugin called `name` (a shipped plugin's name or RabbitMQ alias, or a file's stem):
/// its canonical name and origin. `None` for built-ins and unknown names.
pub fn resolve(dir: &Path, name: &str) -> Option<(String, Origin)> {
    if let Some(s) = builtin::shipped(name) {
        return Some((s.name.to_string(), Origin::Shipped(s)));
    }
    if reserved(name) {
        return None;
    }
    available(dir).into_iter().find(|(n, _)| n == name).map(|(n, p)| (n, Origin::File(p)))
}

/// `name` with a RabbitMQ alias replaced by Warren's name.
pub fn canonical(name: &str) -> String {
    builtin::shipped(name).map_or_else(|| name.to_string(), |s| s.name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_file_round_trips_in_rabbitmq_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(ENABLED_FILE);
        assert_eq!(read_enabled(&p).unwrap(), Vec::<String>::new());
        write_enabled(&p, &["x-random".into(), "warren_management".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "['x-random',warren_management].\n");
        assert_eq!(read_enabled(&p).unwrap(), vec!["x-random", "warren_management"]);
        std::fs::write(&p, "[].\n").unwrap();
        assert!(read_enabled(&p).unwrap().is_empty());
        std::fs::write(&p, "garbage").unwrap();
        assert!(read_enabled(&p).is_err());
    }

    #[test]
    fn aliases_resolve_to_shipped_names_and_reserved_files_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x-mine.wasm"), b"x").unwrap();
        std::fs::write(dir.path().join("warren_random_exchange.wasm"), b"x").unwrap();
        std::fs::write(dir.path().join("topic.wasm"), b"x").unwrap();
        assert_eq!(canonical("rabbitmq_random_exchange"), "warren_random_exchange");
        assert_eq!(canonical("rabbitmq_prometheus"), "warren_prometheus");
        assert_eq!(canonical("x-mine"), "x-mine");
        let (n, o) = resolve(dir.path(), "rabbitmq_consistent_hash_exchange").unwrap();
        assert_eq!(n, "warren_consistent_hash_exchange");
        assert!(matches!(o, Origin::Shipped(_)));
        // The shipped plugin wins over a file of the same name; built-ins are not optional.
        assert!(matches!(resolve(dir.path(), "warren_random_exchange").unwrap().1, Origin::Shipped(_)));
        assert!(resolve(dir.path(), "topic").is_none());
        assert!(matches!(resolve(dir.path(), "x-mine").unwrap().1, Origin::File(_)));
        assert!(resolve(dir.path(), "nope").is_none());
        let all = catalog(dir.path());
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "warren_auth_backend_oauth2",
                "warren_consistent_hash_exchange",
                "warren_management",
                "warren_prometheus",
                "warren_random_exchange",
                "topic",
                "warren_random_exchange",
                "x-mine"
            ]
        );
        assert!(all[5].1.as_ref().is_err_and(|e| e.contains("is taken by a plugin inside the binary")));
        assert!(all[6].1.is_err() && all[7].1.is_ok());
    }
}
