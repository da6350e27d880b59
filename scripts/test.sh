#!/usr/bin/env bash
# Set everything up on a fresh machine (Python 3.9+ with venv; installs into .venv unless PYTHON is set) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
"$PY" -m pip install --disable-pip-version-check -q -e ".[test]"
# Browser tests drive Debian's Chromium headless (never Playwright's downloaded browser).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; browser tests will be skipped"
  else
    echo "warning: chromium not found and not root; browser tests will be skipped (apt-get install chromium)"
  fi
fi
# Everything the run writes to temp (pytest folders, the notebooks' work folders, Jupyter and Chromium
# profiles: several GB) lives in one folder that goes when the run ends, passed or not.
TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/empanada_nb_tests.XXXXXX")"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
# lint and format (ruff), then the docstring Examples (doctests), unit, browser and real-data tests,
# then every example notebook top to bottom
"$PY" -m ruff check empanada_nb tests benchmarks
"$PY" -m ruff format --check empanada_nb tests benchmarks
# doctests in their own run: --doctest-modules over tests/ would import its two conftest.py as one module
"$PY" -m pytest -q -p no:cacheprovider --timeout=900 --doctest-modules empanada_nb
"$PY" -m pytest -q -p no:cacheprovider --timeout=900 --nbval-lax --nbval-current-env tests examples "$@"
