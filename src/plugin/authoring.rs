//! Tools for plugin authors, behind `warren-plugins wit`, `componentize` and `new`: the WIT
//! package this broker runs (embedded), core module → component (the library of
//! `plugins/componentize`, shared with `plugins/build.sh`), and a scaffold of a Rust plugin
//! project (Rust: the SDK of `plugins/sdk` and `wit/` vendored; C: the random-exchange example
//! with its bindings) that builds outside any checkout.

use std::path::{Path, PathBuf};

pub use warren_componentize::{WIT_FILES, WORLDS, check_world, componentize, write_wit};

/// The SDK crate's files, vendored into a new project as `vendor/warren-plugin-sdk/`.
const SDK_FILES: [(&str, &str); 8] = [
    ("Cargo.toml", include_str!("../../plugins/sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("src/bindings.rs", include_str!("../../plugins/sdk/src/bindings.rs")),
    ("src/exchange.rs", include_str!("../../plugins/sdk/src/exchange.rs")),
    ("src/auth.rs", include_str!("../../plugins/sdk/src/auth.rs")),
    ("src/http.rs", include_str!("../../plugins/sdk/src/http.rs")),
    ("src/panic.rs", include_str!("../../plugins/sdk/src/panic.rs")),
    ("src/sets.rs", include_str!("../../plugins/sdk/src/sets.rs")),
];

/// The project files, `{{…}}` filled in by [`new_project`].
const TEMPLATE: [(&str, &str); 5] = [
    ("Cargo.toml", include_str!("../../plugins/sdk/template/Cargo.toml.in")),
    ("src/lib.rs", include_str!("../../plugins/sdk/template/lib.rs.in")),
    ("build.sh", include_str!("../../plugins/sdk/template/build.sh.in")),
    ("README.md", include_str!("../../plugins/sdk/template/README.md.in")),
    (".gitignore", include_str!("../../plugins/sdk/template/gitignore.in")),
];

/// The C project's files: the random-exchange example, its bindings, `{{…}}` filled in.
const TEMPLATE_C: [(&str, &str); 3] = [
    ("build.sh", include_str!("../../plugins/sdk/template/build-c.sh.in")),
    ("README.md", include_str!("../../plugins/sdk/template/README-c.md.in")),
    (".gitignore", include_str!("../../plugins/sdk/template/gitignore-c.in")),
];

/// The C example (RabbitMQ's random exchange), its type name replaced by the project's.
const C_EXAMPLE: &str = include_str!("../../plugins/examples/random-c/x_random.c");

/// The C bindings of world exchange-type (wit-bindgen c 0.61.1, checked against wit/ by
/// plugins/examples/random-c/build.sh), the component-type object (the world's description,
/// linked in) included.
const C_BINDINGS: [(&str, &[u8]); 3] = [
    ("gen/exchange_type.h", include_bytes!("../../plugins/examples/random-c/gen/exchange_type.h")),
    ("gen/exchange_type.c", include_bytes!("../../plugins/examples/random-c/gen/exchange_type.c")),
    (
        "gen/exchange_type_component_type.o",
        include_bytes!("../../plugins/examples/random-c/gen/exchange_type_component_type.o"),
    ),
];

/// The languages `new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    C,
}

/// What `new` made.
#[derive(Debug)]
pub struct Scaffold {
    pub dir: PathBuf,
    /// The exchange type the example declares.
    pub exchange_type: String,
    pub files: Vec<PathBuf>,
}

/// Checks a plugin name for `new`: it names the cargo package, the `.wasm` file and so the
/// plugin (`warren-plugins enable NAME`).
fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid plugin name '{name}': use 1 to 64 lower-case letters, digits, '-' and '_', starting with a letter"
        ))
    }
}

/// `x-demo` → `Demo`, `my_type` → `MyType`: the Rust type of the example.
fn type_ident(name: &str) -> String {
    let base = name.strip_prefix("x-").unwrap_or(name);
    let mut out = String::new();
    for part in base.split(['-', '_']).filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            out.push(c.to_ascii_uppercase());
            out.extend(cs);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'X');
    }
    out
}

/// Writes a new exchange-type project `name` in `lang` into `dir` (which must not exist or be
/// empty). Rust: Cargo.toml, src/lib.rs (a working example), build.sh, README.md, wit/ and the
/// SDK in vendor/warren-plugin-sdk. C: NAME.c (the random-exchange example), gen/ (the
/// bindings), build.sh, README.md, wit/. `warren_plugins` is the path build.sh falls back to
/// when `warren-plugins` is not on PATH.
pub fn new_project(lang: Lang, name: &str, dir: &Path, warren_plugins: &Path) -> Result<Scaffold, String> {
    check_name(name)?;
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(format!("{} already exists and is not empty", dir.display()));
    }
    let exchange_type = if name.starts_with("x-") { name.to_string() } else { format!("x-{name}") };
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{type}}", &exchange_type)
            .replace("{{Type}}", &type_ident(name))
            .replace("{{warren_plugins}}", &warren_plugins.display().to_string())
    };
    let mut files = Vec::new();
    let mut write = |rel: &Path, text: &[u8]| -> Result<(), String> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path);
        Ok(())
    };
    match lang {
        Lang::Rust => {
            for (rel, text) in TEMPLATE {
                write(Path::new(rel), fill(text).as_bytes())?;
            }
            for (rel, text) in SDK_FILES {
                write(&Path::new("vendor/warren-plugin-sdk").join(rel), text.as_bytes())?;
            }
        }
        Lang::C => {
            for (rel, text) in TEMPLATE_C {
                write(Path::new(rel), fill(text).as_bytes())?;
            }
            write(Path::new(&format!("{crate_name}.c")), C_EXAMPLE.replace("x-random", &exchange_type).as_bytes())?;
            for (rel, text) in C_BINDINGS {
                write(Path::new(rel), text)?;
            }
        }
    }
    for (rel, text) in WIT_FILES {
        write(&Path::new("wit").join(rel), text.as_bytes())?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("build.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", script.display()))?;
    }
    Ok(Scaffold { dir: dir.to_path_buf(), exchange_type, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(type_ident("x-demo"), "Demo");
        assert_eq!(type_ident("my_fancy-type"), "MyFancyType");
        assert_eq!(type_ident("x-1st"), "X1st");
        assert!(check_name("x-demo").is_ok());
        for bad in ["", "X-demo", "1x", "a b", "a/b", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn world_check_of_the_committed_components() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        check_world(&read("builtin/topic.wasm"), "exchange-type").unwrap();
        check_world(&read("shipped/management.wasm"), "http-handler").unwrap();
        check_world(&read("shipped/auth-oauth2.wasm"), "auth-backend").unwrap();
        let e = check_world(&read("shipped/management.wasm"), "exchange-type").unwrap_err();
        assert!(e.starts_with("not a plugin of world exchange-type (warren:plugin@0.1.0): does not export `validate`"), "{e}");
        assert!(e.contains("does not export `route`"), "{e}");
        let e = check_world(&read("fixtures/wrong-world.wasm"), "exchange-type").unwrap_err();
        assert!(e.contains("does not export `route`"), "{e}");
        assert!(check_world(&read("builtin/topic.wasm"), "exchange").unwrap_err().starts_with("unknown world 'exchange'"));
        // a component is not a core module
        assert!(componentize(&read("builtin/topic.wasm"), Some("exchange-type")).unwrap_err().contains("already a component"));
    }

    #[test]
    fn scaffold_vendors_every_sdk_source_and_the_whole_wit_package() {
        // every .rs of plugins/sdk/src is vendored (a file added to the SDK must be listed here)
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/sdk/src");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let rel = format!("src/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(SDK_FILES.iter().any(|(f, _)| *f == rel), "{rel} is not in SDK_FILES");
        }
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
        assert_eq!(std::fs::read_dir(&wit).unwrap().count(), WIT_FILES.len());
        let out = tempfile::tempdir().unwrap();
        let s = new_project(Lang::Rust, "x-demo", &out.path().join("x-demo"), Path::new("/bin/warren-plugins")).unwrap();
        assert_eq!(s.exchange_type, "x-demo");
        let lib = std::fs::read_to_string(s.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("struct Demo;") && lib.contains("name: \"x-demo\""), "{lib}");
        assert!(!lib.contains("{{"));
        let build = std::fs::read_to_string(s.dir.join("build.sh")).unwrap();
        assert!(build.contains("release/x_demo.wasm\" x-demo.wasm") && build.contains("/bin/warren-plugins"), "{build}");
        assert!(new_project(Lang::Rust, "x-demo", &s.dir, Path::new("/x")).unwrap_err().contains("not empty"));
        let c = new_project(Lang::C, "dice", &out.path().join("dice"), Path::new("/bin/warren-plugins")).unwrap();
        assert_eq!(c.exchange_type, "x-dice");
        let src = std::fs::read_to_string(c.dir.join("dice.c")).unwrap();
        assert!(src.contains("set_string(&ret->name, \"x-dice\");") && !src.contains("x-random"), "{src}");
        assert!(c.dir.join("gen/exchange_type.h").is_file() && c.dir.join("wit/types.wit").is_file());
    }
}
