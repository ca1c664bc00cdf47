//! `warren-example-check FILE.wasm…`: for each file, checks that it is a valid WebAssembly
//! component that exports the functions of `warren:plugin/exchange-type@0.1.0` and imports
//! nothing but `warren:plugin/host@0.1.0` (and the `types` interface); prints its imports and
//! exports. Exit status 1 if any file fails.

use std::process::ExitCode;
use wit_component::DecodedWasm;

const EXPORTS: &[&str] = &[
    "describe",
    "validate",
    "create-exchange",
    "delete-exchange",
    "validate-binding",
    "add-binding",
    "remove-binding",
    "route",
    "route-batch",
];
const ALLOWED_IMPORTS: &[&str] = &["warren:plugin/host@0.1.0", "warren:plugin/types@0.1.0"];

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: warren-example-check FILE.wasm…");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for f in &files {
        match check(f) {
            Ok(()) => println!("{f}: OK"),
            Err(e) => {
                println!("{f}: FAILED: {e}");
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn check(path: &str) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if !wasmparser::Parser::is_component(&bytes) {
        return Err("not a component (a core module or not wasm at all)".into());
    }
    let mut features = wasmparser::WasmFeatures::default();
    features |= wasmparser::WasmFeatures::COMPONENT_MODEL;
    wasmparser::Validator::new_with_features(features)
        .validate_all(&bytes)
        .map_err(|e| format!("invalid component: {e}"))?;
    let decoded = wit_component::decode(&bytes).map_err(|e| format!("cannot decode: {e:#}"))?;
    let (resolve, world_id) = match &decoded {
        DecodedWasm::Component(r, w) => (r, *w),
        DecodedWasm::WitPackage(..) => return Err("a WIT package, not a component".into()),
    };
    let world = &resolve.worlds[world_id];
    println!(
        "{path}: {} bytes, component",
        bytes.len()
    );
    let mut problems = Vec::new();
    println!("  imports:");
    for (key, item) in &world.imports {
        let name = resolve.name_world_key(key);
        let kind = item_kind(resolve, item);
        println!("    {name} ({kind})");
        if let wit_parser::WorldItem::Interface { .. } = item {
            if !ALLOWED_IMPORTS.contains(&name.as_str()) {
                problems.push(format!("imports {name} (only warren:plugin/host is offered)"));
            }
        }
    }
    println!("  exports:");
    let mut exported = Vec::new();
    for (key, item) in &world.exports {
        let name = resolve.name_world_key(key);
        println!("    {name} ({})", item_kind(resolve, item));
        exported.push(name);
    }
    for e in EXPORTS {
        if !exported.iter().any(|x| x == e) {
            problems.push(format!("does not export {e}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

fn item_kind(resolve: &wit_parser::Resolve, item: &wit_parser::WorldItem) -> String {
    match item {
        wit_parser::WorldItem::Interface { id, .. } => {
            let i = &resolve.interfaces[*id];
            let funcs: Vec<&str> = i.functions.keys().map(|s| s.as_str()).collect();
            if funcs.is_empty() {
                "interface, types only".into()
            } else {
                format!("interface: {}", funcs.join(", "))
            }
        }
        wit_parser::WorldItem::Function(f) => {
            let params: Vec<String> = f.params.iter().map(|p| p.name.clone()).collect();
            format!("func({})", params.join(", "))
        }
        wit_parser::WorldItem::Type { .. } => "type".into(),
    }
}
