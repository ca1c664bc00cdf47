#!/usr/bin/env bash
# Runs every test of Warren and sets up what they need (a Python venv with pika) itself.
#
#   scripts/test.sh                  cargo build --bins --tests, cargo test, then the pika suite
#                                    (tests/python) against the debug warren-server
#   scripts/test.sh --python-only    only the pika suite; honours WARREN_TEST_URL, e.g.
#     WARREN_TEST_URL='amqp://guest:guest@127.0.0.1:5673/%2f' scripts/test.sh --python-only
#                                    runs it against the reference RabbitMQ (scripts/rabbitmq-ref.sh)
#   WARREN_MGMT_URL=http://127.0.0.1:15680/ ...  also runs the web UI's headless-Chromium test
#                                    (tests/python/test_management_ui*.py; skipped without it)
#
# Any other arguments go to pytest (e.g. `-k topic`, `-x`). Exits non-zero if anything fails.
set -uo pipefail
exec </dev/null
cd "$(dirname "$(readlink -f "$0")")/.." || exit 1
root=$PWD

python_only=0
pytest_args=()
for arg in "$@"; do
  case "$arg" in
    --python-only) python_only=1 ;;
    -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) pytest_args+=("$arg") ;;
  esac
done

section() { printf '\n==> %s\n' "$*"; }
failed=()

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  . "$HOME/.cargo/env"
fi

if [ "$python_only" = 0 ]; then
  # --tests: one build; the binaries are built with the same (dev-dependency unified) features as
  # the test targets, so `cargo test` does not compile wasmtime and friends a second time.
  section "cargo build --bins --tests"
  cargo build --bins --tests || { echo "test.sh: cargo build failed" >&2; exit 1; }
  section "cargo test"
  cargo test --no-fail-fast || failed+=("cargo test")
  # The full run always tests this tree's own server, whatever the environment points at.
  unset WARREN_TEST_URL
fi

section "python venv (.venv: pika 1.3.2, celery 5.5.3, flower 2.2.0, selenium 4.51.0, pyjwt 2.10.1, prometheus_client 0.26.0, pytest)"
venv=$root/.venv
venv_ok() {
  "$venv/bin/python" -c 'import pika, pytest, celery, flower, selenium, jwt, prometheus_client.parser, importlib.metadata as m, sys; sys.exit(pika.__version__ != "1.3.2" or celery.__version__ != "5.5.3" or flower.__version__ != "2.2.0" or selenium.__version__ != "4.51.0" or jwt.__version__ != "2.10.1" or m.version("prometheus_client") != "0.26.0")' >/dev/null 2>&1
}
if ! venv_ok; then
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "test.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install -q --disable-pip-version-check pika==1.3.2 celery==5.5.3 flower==2.2.0 selenium==4.51.0 pyjwt==2.10.1 prometheus_client==0.26.0 pytest \
    || { echo "test.sh: pip install failed" >&2; exit 1; }
  venv_ok || { echo "test.sh: the venv at $venv is still incomplete" >&2; exit 1; }
fi
"$venv/bin/python" -c 'import pika, pytest; print("pika", pika.__version__, "pytest", pytest.__version__)'

if [ -n "${WARREN_TEST_URL:-}" ]; then
  section "pytest tests/python against $WARREN_TEST_URL"
else
  target=${CARGO_TARGET_DIR:-target}
  case "$target" in /*) ;; *) target=$root/$target ;; esac
  export WARREN_SERVER_BIN=${WARREN_SERVER_BIN:-$target/debug/warren-server}
  section "pytest tests/python against $WARREN_SERVER_BIN"
fi
"$venv/bin/python" -m pytest -q -ra -p no:cacheprovider tests/python "${pytest_args[@]}" || failed+=("pytest")

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "test.sh: all tests passed"
