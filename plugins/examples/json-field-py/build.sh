#!/bin/sh
# Builds the x-json-field example into plugins/examples/json-field-py/json-field-py.wasm.
#
# Needs: python3 (3.11, Debian 12: apt-get install python3 python3-venv) and componentize-py
# 0.25.1 in plugins/examples/.venv-cpy (created here on first use: pip needs PyPI once).
# --stub-wasi: the component imports no WASI at all, only warren:plugin/host.
set -eu
EXAMPLES=$(cd "$(dirname "$0")/.." && pwd)
HERE="$EXAMPLES/json-field-py"
VENV="$EXAMPLES/.venv-cpy"
start=$(date +%s)

if [ ! -x "$VENV/bin/componentize-py" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet componentize-py==0.25.1
fi
python3 "$HERE/test_jsonfield.py"
cd "$HERE"
"$VENV/bin/componentize-py" -d "$EXAMPLES/../../wit" -w exchange-type \
    componentize --stub-wasi app -o "$HERE/json-field-py.wasm.tmp"
mv "$HERE/json-field-py.wasm.tmp" "$HERE/json-field-py.wasm"

if [ "${WARREN_SKIP_CHECK:-}" != 1 ]; then
    . "$EXAMPLES/tools.sh"
    build_tools
    check_component "$HERE/json-field-py.wasm"
fi
echo "built json-field-py.wasm ($(wc -c < "$HERE/json-field-py.wasm") bytes) in $(( $(date +%s) - start )) s"
