#!/bin/sh
# Builds the x-random example into plugins/examples/random-c/random-c.wasm.
#
# Needs (Debian 12): apt-get install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc
# (binaryen optional: clang then runs wasm-opt on the module) and the project's rustup cargo
# for the componentize tool (../tools.sh).
# The C bindings in gen/ are committed. They are regenerated only when wit-bindgen-cli 0.61.1
# is on PATH (cargo install wit-bindgen-cli --version 0.61.1 --locked, ~9 min):
#   wit-bindgen c wit --world exchange-type --out-dir gen
set -eu
. "$(dirname "$0")/../tools.sh"
HERE="$EXAMPLES/random-c"
OUTDIR="$EXAMPLES/target/random-c"
start=$(date +%s)
mkdir -p "$OUTDIR"

if command -v wit-bindgen >/dev/null 2>&1; then
    if wit-bindgen --version | grep -q ' 0\.61\.1'; then
        wit-bindgen c "$REPO/wit" --world exchange-type --out-dir "$HERE/gen" >/dev/null
    else
        echo "note: $(wit-bindgen --version) is not 0.61.1; using the committed gen/" >&2
    fi
fi

clang-19 --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -Os -Wall -Werror \
    -ffile-prefix-map="$REPO"=/warren -Wl,--strip-all \
    -o "$OUTDIR/x_random.core.wasm" \
    "$HERE/x_random.c" "$HERE/gen/exchange_type.c" "$HERE/gen/exchange_type_component_type.o"

build_tools
"$COMPONENTIZE" "$OUTDIR/x_random.core.wasm" "$HERE/random-c.wasm"
check_component "$HERE/random-c.wasm"
echo "built random-c.wasm ($(wc -c < "$HERE/random-c.wasm") bytes) in $(( $(date +%s) - start )) s"
