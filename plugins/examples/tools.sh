# Sourced by the examples' build.sh scripts. Sets:
#   EXAMPLES     plugins/examples (absolute)
#   REPO         the repository root
#   COMPONENTIZE path of the warren-componentize binary (core module + wit-bindgen's
#                component-type section -> component; what `wasm-tools component new` does)
#   CHECK        path of the warren-example-check binary (validates a component, prints its world)
# Both tools are small Rust programs built with the project's (rustup) cargo for the host.
# WARREN_COMPONENTIZE_DIR overrides where the componentize tool's sources are
# (default: plugins/componentize of this repository).
EXAMPLES="${EXAMPLES:-$(cd "$(dirname "$0")/.." && pwd)}"
REPO=$(cd "$EXAMPLES/../.." && pwd)
COMPONENTIZE_DIR="${WARREN_COMPONENTIZE_DIR:-$REPO/plugins/componentize}"
HOST_TARGET="$EXAMPLES/target/host"

build_tools() {
    if [ ! -f "$COMPONENTIZE_DIR/Cargo.toml" ]; then
        echo "error: no componentize tool at $COMPONENTIZE_DIR (set WARREN_COMPONENTIZE_DIR)" >&2
        exit 1
    fi
    env -u RUSTC -u RUSTFLAGS cargo build --quiet --release --locked \
        --manifest-path "$COMPONENTIZE_DIR/Cargo.toml" --target-dir "$HOST_TARGET"
    env -u RUSTC -u RUSTFLAGS cargo build --quiet --release --locked \
        --manifest-path "$EXAMPLES/check/Cargo.toml" --target-dir "$HOST_TARGET"
    COMPONENTIZE="$HOST_TARGET/release/warren-componentize"
    CHECK="$HOST_TARGET/release/warren-example-check"
}

# check_component FILE: validate, print imports/exports and size
check_component() {
    "$CHECK" "$1"
}
