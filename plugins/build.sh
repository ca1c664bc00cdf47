#!/bin/sh
# Builds Warren's built-in exchange types, the shipped plugins written here and the test
# fixtures as Wasm components.
#
#   plugins/build.sh           rebuild and write plugins/builtin/*.wasm, plugins/shipped/*.wasm,
#                              plugins/fixtures/*.wasm
#   plugins/build.sh --check   rebuild from scratch in a temp dir and compare with the committed
#                              files (exit 1 and name the files that differ)
#
# Toolchain (all from Debian packages; see shared/reference/wasm-plugins.md §3.1):
#   apt-get install rustc-web cargo-web rust-web-src lld-19
# Guests: Debian's rustc 1.96 + -Zbuild-std for wasm32-unknown-unknown (no WASI).
# Components: plugins/componentize (wit-component 0.263), built with the project's rustup cargo.
# Builds are reproducible: paths are remapped, no timestamps, so the same sources and
# toolchain give the same bytes.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"

CHECK=0
if [ "${1:-}" = "--check" ]; then CHECK=1; fi

if [ "$CHECK" = 1 ]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/warren-plugins-check.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    TARGET="$WORK/target"
    OUT="$WORK/out"
else
    TARGET="${WARREN_PLUGINS_TARGET:-$HERE/target}"
    OUT="$HERE"
fi
mkdir -p "$OUT/builtin" "$OUT/shipped" "$OUT/fixtures"

BUILTINS="direct fanout topic headers"
# Shipped (optional) plugins: crate plugins/<name>, package warren-<name>.
SHIPPED="management auth-oauth2 prometheus"
FIXTURES="loop hog trap-nth wrong-world http-trap auth-faulty"
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"

start=$(date +%s)

# 1. the componentize tool (host target, rustup toolchain of the project)
echo "== componentize tool"
env -u RUSTC -u RUSTFLAGS cargo build --quiet --release --locked \
    --manifest-path "$HERE/componentize/Cargo.toml" --target-dir "$TARGET/host"
COMPONENTIZE="$TARGET/host/release/warren-componentize"

# 2. the guests: core modules for wasm32-unknown-unknown with Debian's rustc. One cargo
#    invocation per plugin: cargo unifies the features of the packages of one build, and each
#    plugin enables the warren-plugin-sdk feature of its own kind (world) only.
echo "== guests (wasm32-unknown-unknown, -Zbuild-std)"
PKGS=""
for p in $BUILTINS $SHIPPED; do PKGS="$PKGS warren-$p"; done
for p in $FIXTURES; do PKGS="$PKGS warren-fixture-$p"; done
for pkg in $PKGS; do
    RUSTC=/usr/bin/rustc \
    RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-19/bin/wasm-ld \
    RUSTFLAGS="--remap-path-prefix=$HERE=/warren/plugins --remap-path-prefix=$TARGET=/warren/target --remap-path-prefix=$CARGO_HOME_DIR=/cargo --remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc/src" \
        /usr/bin/cargo build --quiet --release --locked --target wasm32-unknown-unknown \
        -Zbuild-std=std,panic_abort --target-dir "$TARGET" -p "$pkg"
done

# 3. wrap into components
echo "== components"
CORE="$TARGET/wasm32-unknown-unknown/release"
for p in $BUILTINS; do
    "$COMPONENTIZE" "$CORE/warren_$p.wasm" "$OUT/builtin/$p.wasm"
done
for p in $SHIPPED; do
    u=$(echo "$p" | tr - _)
    "$COMPONENTIZE" "$CORE/warren_$u.wasm" "$OUT/shipped/$p.wasm"
done
for p in $FIXTURES; do
    u=$(echo "$p" | tr - _)
    "$COMPONENTIZE" "$CORE/warren_fixture_$u.wasm" "$OUT/fixtures/$p.wasm"
done

for f in "$OUT"/builtin/*.wasm "$OUT"/shipped/*.wasm "$OUT"/fixtures/*.wasm; do
    printf '%8d  %s\n' "$(wc -c < "$f")" "${f#"$OUT"/}"
done
echo "== built in $(( $(date +%s) - start )) s"

if [ "$CHECK" = 1 ]; then
    status=0
    for p in $BUILTINS; do
        cmp -s "$OUT/builtin/$p.wasm" "$HERE/builtin/$p.wasm" || { echo "DIFFERS: plugins/builtin/$p.wasm"; status=1; }
    done
    for p in $SHIPPED; do
        cmp -s "$OUT/shipped/$p.wasm" "$HERE/shipped/$p.wasm" || { echo "DIFFERS: plugins/shipped/$p.wasm"; status=1; }
    done
    for p in $FIXTURES; do
        cmp -s "$OUT/fixtures/$p.wasm" "$HERE/fixtures/$p.wasm" || { echo "DIFFERS: plugins/fixtures/$p.wasm"; status=1; }
    done
    if [ "$status" = 0 ]; then echo "check: committed components match a fresh build"; fi
    exit $status
fi
