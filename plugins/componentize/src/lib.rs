//! Core module → Warren plugin component, and the WIT package `warren:plugin@0.1.0` that Warren
//! plugins are built against. Shared by the `warren-componentize` tool (used by
//! `plugins/build.sh`) and `warren-plugins componentize` / `wit` / `new`.
//!
//! The output of [`componentize`] depends only on the input bytes (reproducible builds), and
//! is what `wasm-tools component new` makes, with no WASI adapter: Warren plugins must not
//! import WASI.

use std::path::Path;
use wit_component::{ComponentEncoder, DecodedWasm, StringEncoding, WitPrinter};
use wit_parser::{Resolve, WorldItem, WorldKey};

/// The files of `wit/` (name, text), as this build of Warren runs them.
pub const WIT_FILES: [(&str, &str); 6] = [
    ("package.wit", include_str!("../../../wit/package.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("exchange-type.wit", include_str!("../../../wit/exchange-type.wit")),
    ("auth-backend.wit", include_str!("../../../wit/auth-backend.wit")),
    ("http-handler.wit", include_str!("../../../wit/http-handler.wit")),
];

/// The worlds of the package: one per plugin kind.
pub const WORLDS: [&str; 3] = ["exchange-type", "auth-backend", "http-handler"];

/// The package name, as in the files.
pub const PACKAGE: &str = "warren:plugin@0.1.0";

/// Writes the WIT package into `dir` (created if missing): one file per [`WIT_FILES`] entry.
pub fn write_wit(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in WIT_FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// The parsed package, and the id of `world` in it.
fn resolve_world(world: &str) -> Result<(Resolve, wit_parser::WorldId), String> {
    if !WORLDS.contains(&world) {
        return Err(format!("unknown world '{world}': Warren's worlds are {}", WORLDS.join(", ")));
    }
    let dir = std::env::temp_dir().join(format!("warren-wit-{}", std::process::id()));
    write_wit(&dir).map_err(|e| format!("writing the WIT package to {}: {e}", dir.display()))?;
    let mut resolve = Resolve::default();
    let parsed = resolve.push_dir(&dir).map_err(|e| format!("{e:#}"));
    let _ = std::fs::remove_dir_all(&dir);
    let (pkg, _) = parsed?;
    let id = resolve.select_world(&[pkg], Some(world)).map_err(|e| format!("{e:#}"))?;
    Ok((resolve, id))
}

/// Wraps a core module into a component. The module normally describes its world itself (the
/// `component-type` custom section wit-bindgen and `wit-bindgen c` emit); with `world` set, a
/// module without that section gets `world` of Warren's package embedded first, and the result
/// is checked with [`check_world`].
pub fn componentize(core: &[u8], world: Option<&str>) -> Result<Vec<u8>, String> {
    let mut module = core.to_vec();
    if let Some(world) = world
        && !has_component_type(core)?
    {
        let (resolve, id) = resolve_world(world)?;
        wit_component::embed_component_metadata(&mut module, &resolve, id, StringEncoding::UTF8, false)
            .map_err(|e| format!("{e:#}"))?;
    }
    let component = ComponentEncoder::default()
        .module(&module)
        .map_err(|e| format!("{e:#}"))?
        .validate(true)
        .encode()
        .map_err(|e| format!("{e:#}"))?;
    if let Some(world) = world {
        check_world(&component, world)?;
    }
    Ok(component)
}

/// Whether a core module carries a `component-type*` custom section.
fn has_component_type(core: &[u8]) -> Result<bool, String> {
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        match payload.map_err(|e| format!("not a core wasm module: {e}"))? {
            wasmparser::Payload::CustomSection(s) if s.name().starts_with("component-type") => return Ok(true),
            wasmparser::Payload::Version { encoding: wasmparser::Encoding::Component, .. } => {
                return Err("this is already a component, not a core module".into());
            }
            _ => {}
        }
    }
    Ok(false)
}

/// Checks that `component` can run as a plugin of `world`: it exports every function of the
/// world and imports nothing but interfaces of Warren's package (no WASI: the broker links
/// nothing else). The broker type-checks the exports fully when it loads the plugin.
pub fn check_world(component: &[u8], world: &str) -> Result<(), String> {
    let (want, want_id) = resolve_world(world)?;
    let DecodedWasm::Component(got, got_id) = wit_component::decode(component).map_err(|e| format!("{e:#}"))? else {
        return Err("not a component".into());
    };
    let name = |r: &Resolve, k: &WorldKey| r.name_world_key(k);
    let got_world = &got.worlds[got_id];
    let mut problems = Vec::new();
    for (k, item) in &want.worlds[want_id].exports {
        if let WorldItem::Function(_) = item {
            let n = name(&want, k);
            if !got_world.exports.keys().any(|g| name(&got, g) == n) {
                problems.push(format!("does not export `{n}`"));
            }
        }
    }
    for (k, item) in &got_world.imports {
        if let WorldItem::Interface { id, .. } = item {
            let n = name(&got, k);
            let ours = got.interfaces[*id]
                .package
                .map(|p| got.packages[p].name.to_string() == PACKAGE)
                .unwrap_or(false);
            if !ours {
                problems.push(format!("imports `{n}` (the broker offers only {PACKAGE} interfaces, no WASI)"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("not a plugin of world {world} ({PACKAGE}): {}", problems.join("; ")))
    }
}

/// The world a component implements, printed as WIT (for error messages and `--verbose`).
pub fn print_world(component: &[u8]) -> Result<String, String> {
    let decoded = wit_component::decode(component).map_err(|e| format!("{e:#}"))?;
    let mut printer = WitPrinter::default();
    printer.print(decoded.resolve(), decoded.package(), &[]).map_err(|e| format!("{e:#}"))?;
    Ok(printer.output.to_string())
}
