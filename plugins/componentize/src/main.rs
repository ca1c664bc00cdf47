//! `warren-componentize CORE.wasm OUT.wasm`: turns a core module built by wit-bindgen into a
//! component (what `wasm-tools component new` does), with no WASI adapter: Warren's built-in
//! plugins must not import WASI. The output depends only on the input bytes (reproducible).
//! The same code is `warren-plugins componentize` (which also takes `--world`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} CORE.wasm OUT.wasm", args[0]);
        return ExitCode::from(2);
    }
    match run(&args[1], &args[2]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren-componentize: {}: {e}", args[1]);
            ExitCode::FAILURE
        }
    }
}

fn run(input: &str, output: &str) -> Result<(), String> {
    let core = std::fs::read(input).map_err(|e| e.to_string())?;
    let component = warren_componentize::componentize(&core, None)?;
    // temp file + rename, so a watcher never sees a half-written component
    let tmp = format!("{output}.tmp");
    std::fs::write(&tmp, &component).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, output).map_err(|e| e.to_string())?;
    Ok(())
}
