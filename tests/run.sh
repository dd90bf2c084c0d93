#!/usr/bin/env bash
# The whole test suite from a fresh clone: a virtualenv, the package with its test extras,
# lint, type check, tests. Re-running reuses the virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
# promtool and the prometheus server for tests/test_collector_config.py (Debian package).
command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
# Headless Chromium and its chromedriver for the page's browser tests (tests/test_page.py).
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
