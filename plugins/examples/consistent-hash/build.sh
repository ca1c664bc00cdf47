#!/bin/sh
# Builds the x-consistent-hash example into plugins/examples/consistent-hash/consistent-hash.wasm.
#
# Needs (Debian 12): apt-get install rustc-web cargo-web rust-web-src lld-19
# plus the project's rustup cargo for the two host tools (see ../tools.sh).
# The guest is built with Debian's rustc 1.96 for wasm32-unknown-unknown with -Zbuild-std
# (no prebuilt wasm32 std exists on Debian): no WASI, imports only warren:plugin/host.
set -eu
. "$(dirname "$0")/../tools.sh"
HERE="$EXAMPLES/consistent-hash"
start=$(date +%s)

build_tools

CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
RUSTC=/usr/bin/rustc \
RUSTC_BOOTSTRAP=1 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-19/bin/wasm-ld \
RUSTFLAGS="--remap-path-prefix=$REPO=/warren --remap-path-prefix=$CARGO_HOME_DIR=/cargo --remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc/src" \
    /usr/bin/cargo build --quiet --release --locked --target wasm32-unknown-unknown \
    -Zbuild-std=std,panic_abort --manifest-path "$EXAMPLES/Cargo.toml" \
    --target-dir "$EXAMPLES/target" -p warren-example-consistent-hash

"$COMPONENTIZE" "$EXAMPLES/target/wasm32-unknown-unknown/release/warren_example_consistent_hash.wasm" \
    "$HERE/consistent-hash.wasm"
check_component "$HERE/consistent-hash.wasm"
echo "built consistent-hash.wasm ($(wc -c < "$HERE/consistent-hash.wasm") bytes) in $(( $(date +%s) - start )) s"
