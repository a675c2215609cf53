#!/usr/bin/env bash
# Runs the Python SDK end-to-end suite (tests/python) against a real gateway and mock upstream.
#
#   scripts/test-python.sh [pytest args...]     e.g. scripts/test-python.sh -k stream -x
#
# - Creates .venv at the repo root (re-created when tests/python/requirements.txt changes; the
#   hash of the requirements is kept in .venv/.requirements.sha256) and installs the pins.
# - Builds `tollgate` and `mock-llm` (debug) with cargo, honouring CARGO_TARGET_DIR; set
#   TOLLGATE_SKIP_BUILD=1 to use binaries that are already built.
# - Runs `pytest tests/python -q` with a per-test timeout (PYTEST_TIMEOUT, default 60s).
# The exit code is pytest's (or the failing setup step's).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
REQS="$ROOT/tests/python/requirements.txt"
STAMP="$VENV/.requirements.sha256"

want_hash="$(sha256sum "$REQS" | cut -d' ' -f1)"
have_hash="$(cat "$STAMP" 2>/dev/null || true)"
if [[ ! -x "$VENV/bin/python" || "$want_hash" != "$have_hash" ]]; then
    echo "test-python: setting up $VENV" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    echo "$want_hash" >"$STAMP"
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ "${TOLLGATE_SKIP_BUILD:-0}" != "1" ]]; then
    echo "test-python: cargo build -p tollgate -p mock-llm" >&2
    cargo build --quiet -p tollgate -p mock-llm
fi
export TOLLGATE_BIN="${TOLLGATE_BIN:-$TARGET_DIR/debug/tollgate}"
export MOCK_LLM_BIN="${MOCK_LLM_BIN:-$TARGET_DIR/debug/mock-llm}"
for bin in "$TOLLGATE_BIN" "$MOCK_LLM_BIN"; do
    if [[ ! -x "$bin" ]]; then
        echo "test-python: $bin is missing; run: cargo build -p tollgate -p mock-llm" >&2
        exit 2
    fi
done

set +e
"$VENV/bin/python" -m pytest tests/python -q --timeout="${PYTEST_TIMEOUT:-60}" "$@"
status=$?
set -e
exit "$status"
