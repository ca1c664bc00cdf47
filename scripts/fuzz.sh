#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets of tests/fuzz (libFuzzer via cargo-fuzz) on the wire
# format: frames, the guard walk, method/content-header decoding, field tables.
#
#   scripts/fuzz.sh                    every target for 60 s each, corpus in a scratch copy
#   scripts/fuzz.sh --seconds 3600 frames     one target for an hour
#   scripts/fuzz.sh --keep ...         add what the run found to tests/fuzz/corpus (commit it)
#
# Installs cargo-fuzz (crates.io) if missing. The stable toolchain builds the instrumented targets
# with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags). Prints each target's executions, coverage and
# run time; exits non-zero on a crash, whose input is kept under tests/fuzz/artifacts/.
set -euo pipefail
exec </dev/null
cd "$(dirname "$(readlink -f "$0")")/.."
seconds=60 keep=0 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(frames field_table)
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> cargo install cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
echo "==> building ${targets[*]}"
for t in "${targets[@]}"; do cargo fuzz build --fuzz-dir tests/fuzz -O "$t"; done
status=0
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/$t
  if [ "$keep" = 1 ]; then work=$corpus; else work=$(mktemp -d); cp -r "$corpus"/. "$work"/; fi
  log=$(mktemp)
  echo "==> $t: ${seconds} s from $(ls "$corpus" | wc -l) seeds"
  start=$(date +%s)
  if ! cargo fuzz run --fuzz-dir tests/fuzz -O "$t" "$work" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144 \
      -print_final_stats=1 >"$log" 2>&1; then
    status=1
    tail -n 40 "$log"
    echo "fuzz.sh: $t FAILED (crash input under tests/fuzz/artifacts/$t)" >&2
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  echo "$t: $runs executions in $(( $(date +%s) - start )) s, $cov, corpus $(ls "$work" | wc -l) inputs"
  [ "$keep" = 1 ] || rm -rf "$work"
  rm -f "$log"
done
exit $status
