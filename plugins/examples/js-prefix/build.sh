#!/bin/sh
# Builds the x-prefix example into plugins/examples/js-prefix/js-prefix.wasm.
#
# Needs: node (Debian 12: apt-get install nodejs npm) and componentize-js 0.23.0, installed
# here by `npm ci` on first use (needs the npm registry once; the StarlingMonkey engine ships
# inside the npm package, so the build itself is offline).
# All optional features are disabled (-d ...): the component imports no WASI, only
# warren:plugin/host. (`jco componentize` 1.35.0 cannot read the WIT: use this CLI directly.)
set -eu
EXAMPLES=$(cd "$(dirname "$0")/.." && pwd)
HERE="$EXAMPLES/js-prefix"
start=$(date +%s)

cd "$HERE"
if [ ! -f node_modules/@bytecodealliance/componentize-js/src/cli.js ]; then
    npm ci --no-audit --no-fund
fi
node node_modules/@bytecodealliance/componentize-js/src/cli.js prefix.js \
    --wit "$EXAMPLES/../../wit" --world-name exchange-type \
    -d stdio random clocks http fetch-event \
    -o "$HERE/js-prefix.wasm.tmp"
mv "$HERE/js-prefix.wasm.tmp" "$HERE/js-prefix.wasm"

if [ "${WARREN_SKIP_CHECK:-}" != 1 ]; then
    . "$EXAMPLES/tools.sh"
    build_tools
    check_component "$HERE/js-prefix.wasm"
fi
echo "built js-prefix.wasm ($(wc -c < "$HERE/js-prefix.wasm") bytes) in $(( $(date +%s) - start )) s"
