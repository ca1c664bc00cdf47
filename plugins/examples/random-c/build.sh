#!/bin/sh
# Builds the x-random example into plugins/examples/random-c/random-c.wasm.
#
# Needs (Debian 12): apt-get install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc (binaryen's
# wasm-opt is never used, see the link step below) and the project's rustup cargo for the
# componentize tool (../tools.sh).
# The C bindings in gen/ are committed. They are regenerated only when wit-bindgen-cli 0.61.1
# is on PATH (cargo install wit-bindgen-cli --version 0.61.1 --locked, ~9 min):
#   wit-bindgen c wit --world exchange-type --out-dir gen
# and gen/WIT.sha256 then records the SHA-256 of the wit/ files the exchange-type world is made
# of (types.wit, host.wit, exchange-type.wit; the package's other worlds do not change these
# bindings). Without wit-bindgen the build fails if those changed since (stale bindings). WARREN_CHECK_GEN=1 (build-all.sh
# --check) also fails if regenerating changes any committed file in gen/.
set -eu
. "$(dirname "$0")/../tools.sh"
HERE="$EXAMPLES/random-c"
OUTDIR="$EXAMPLES/target/random-c"
start=$(date +%s)
mkdir -p "$OUTDIR"

# gen/WIT.sha256 records which wit/ the committed bindings were generated from.
wit_sum=$(cat "$REPO"/wit/types.wit "$REPO"/wit/host.wit "$REPO"/wit/exchange-type.wit | sha256sum | cut -d' ' -f1)
if command -v wit-bindgen >/dev/null 2>&1 && wit-bindgen --version | grep -q ' 0\.61\.1'; then
    if [ "${WARREN_CHECK_GEN:-0}" = 1 ]; then rm -rf "$OUTDIR/gen.committed"; cp -r "$HERE/gen" "$OUTDIR/gen.committed"; fi
    wit-bindgen c "$REPO/wit" --world exchange-type --out-dir "$HERE/gen" >/dev/null
    echo "$wit_sum" > "$HERE/gen/WIT.sha256"
    if [ "${WARREN_CHECK_GEN:-0}" = 1 ]; then
        if ! diff -r "$OUTDIR/gen.committed" "$HERE/gen" >/dev/null; then
            rm -rf "$OUTDIR/gen.committed"
            echo "error: the committed random-c/gen/ differs from what wit-bindgen 0.61.1 generates from wit/: commit the regenerated files" >&2
            exit 1
        fi
        rm -rf "$OUTDIR/gen.committed"
    fi
else
    if command -v wit-bindgen >/dev/null 2>&1; then
        echo "note: $(wit-bindgen --version) is not 0.61.1; using the committed gen/" >&2
    fi
    if [ "$(cat "$HERE/gen/WIT.sha256" 2>/dev/null)" != "$wit_sum" ]; then
        echo "error: random-c/gen/ was generated from another version of wit/ (gen/WIT.sha256 does not match);" >&2
        echo "       regenerate it: cargo install wit-bindgen-cli --version 0.61.1 --locked, then run this script again" >&2
        exit 1
    fi
fi

# Compiled with -Os, linked without an optimisation level: when the link step gets one, clang runs
# binaryen's wasm-opt on the module if wasm-opt is on PATH, so the output would depend on the
# machine (clang 19's --no-wasm-opt drops the link step altogether instead of skipping wasm-opt).
CC="clang-19 --target=wasm32-wasi --sysroot=/usr"
$CC -Os -Wall -Werror -ffile-prefix-map="$REPO"=/warren -c "$HERE/x_random.c" -o "$OUTDIR/x_random.o"
$CC -Os -Wall -Werror -ffile-prefix-map="$REPO"=/warren -c "$HERE/gen/exchange_type.c" -o "$OUTDIR/exchange_type.o"
$CC -mexec-model=reactor -Wl,--strip-all -o "$OUTDIR/x_random.core.wasm" \
    "$OUTDIR/x_random.o" "$OUTDIR/exchange_type.o" "$HERE/gen/exchange_type_component_type.o"

build_tools
"$COMPONENTIZE" "$OUTDIR/x_random.core.wasm" "$HERE/random-c.wasm"
check_component "$HERE/random-c.wasm"
echo "built random-c.wasm ($(wc -c < "$HERE/random-c.wasm") bytes) in $(( $(date +%s) - start )) s"
