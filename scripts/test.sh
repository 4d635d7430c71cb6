#!/usr/bin/env bash
# Set up and run the test suite on a fresh machine (no display, no GPU needed).
# Installs Xvfb and xdotool (the studio's real-window and real-input tests) when missing, creates .venv,
# installs requirements, runs ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v Xvfb >/dev/null 2>&1 || ! command -v xdotool >/dev/null 2>&1; then
  echo "installing xvfb and xdotool (needed by the studio tests)..."
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq xvfb xdotool >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq xvfb xdotool; }
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt

# Lint first (rules in pyproject.toml): a style or unused-name error fails the run like a test.
.venv/bin/python -m ruff check .

# The tests import the checkout's code directly (pytest's pythonpath = . in pyproject.toml): no install
# needed. pytest exits 5 when it collects no tests; that is a failure here like any other non-zero code.
exec .venv/bin/python -m pytest "$@"
