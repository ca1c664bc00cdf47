#!/bin/sh
# Builds the four example plugins from source with their own build.sh, in place (the .wasm files
# next to their sources are replaced), and prints how long each took.
#
#   plugins/examples/build-all.sh           build all four
#   plugins/examples/build-all.sh --check   also require the reproducible builds (Rust, C) to
#                                           equal the committed files, and the committed C
#                                           bindings (random-c/gen) to match wit/
#   plugins/examples/build-all.sh NAME...   only these (consistent-hash random-c json-field-py js-prefix)
#
# Toolchains: see each build.sh (and docs/PLUGINS.md). Exits non-zero, naming the example, if any
# build fails; the other examples are still built.
set -u
EXAMPLES=$(cd "$(dirname "$0")" && pwd)

CHECK=0
NAMES=""
for a in "$@"; do
    case "$a" in
        --check) CHECK=1 ;;
        -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
        consistent-hash|random-c|json-field-py|js-prefix) NAMES="$NAMES $a" ;;
        *) echo "build-all.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
[ -n "$NAMES" ] || NAMES="consistent-hash random-c json-field-py js-prefix"

# The committed files of the reproducible builds, kept to compare with after the build.
SAVED=$(mktemp -d "${TMPDIR:-/tmp}/warren-examples.XXXXXX")
trap 'rm -rf "$SAVED"' EXIT
for n in consistent-hash random-c; do
    [ -f "$EXAMPLES/$n/$n.wasm" ] && cp "$EXAMPLES/$n/$n.wasm" "$SAVED/$n.wasm"
done

failed=""
differs=""
summary=""
all_start=$(date +%s)
for n in $NAMES; do
    echo "==> building example $n ($n/build.sh)"
    start=$(date +%s)
    if WARREN_CHECK_GEN=$CHECK "$EXAMPLES/$n/build.sh"; then
        status=ok
    else
        status=FAILED
        failed="$failed $n"
        echo "build-all.sh: example $n FAILED to build (see the output of $n/build.sh above)" >&2
    fi
    secs=$(( $(date +%s) - start ))
    if [ "$CHECK" = 1 ] && [ "$status" = ok ] && [ -f "$SAVED/$n.wasm" ]; then
        if cmp -s "$SAVED/$n.wasm" "$EXAMPLES/$n/$n.wasm"; then
            status="ok, equals the committed file"
        else
            status="DIFFERS from the committed file"
            differs="$differs $n"
            echo "build-all.sh: the fresh build of $n differs from the committed plugins/examples/$n/$n.wasm: rebuild it and commit it" >&2
        fi
    fi
    summary="$summary$(printf '%-16s %5d s  %s' "$n" "$secs" "$status")
"
done

echo
echo "==> examples built in $(( $(date +%s) - all_start )) s"
printf '%s' "$summary"
if [ -n "$failed" ] || [ -n "$differs" ]; then
    [ -n "$failed" ] && echo "build-all.sh: FAILED:$failed" >&2
    [ -n "$differs" ] && echo "build-all.sh: DIFFERS from the committed .wasm:$differs" >&2
    exit 1
fi
