#!/usr/bin/env bash
# One entry point for a fresh machine with nothing but Python 3 (and root, for apt on CI).
#
#   scripts/dev.sh demo [--store NAME]   set up .venv and serve the login demo on :8002 (SQLite store)
#   scripts/dev.sh test [PYTEST ARGS]    set up .venv, start the real servers, run the whole test suite
#   scripts/dev.sh check                 ruff (lint and format) and mypy --strict on the package
#   scripts/dev.sh bench [--quick]       every benchmark (docs/benchmarks.md); --quick: a short smoke run
#   scripts/dev.sh docs [MKDOCS ARGS]    build the documentation site into site/ (mkdocs build --strict)
#   scripts/dev.sh screenshots [PATHS]   build the site, screenshot pages into docs-screenshots/ (chromium)
#   scripts/dev.sh wheel                 build the sdist and wheel, serve the demo from the installed wheel
#
# The servers are stopped when the tests end, unless KEEP_SERVERS=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
cd "$ROOT"

setup() {
    if [[ ! -x $VENV/bin/python ]]; then
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            # Debian's own python3 keeps venv in a package of its own.
            rm -rf "$VENV"
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$VENV"
        fi
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$1]" 2> >(grep -v "is ignored" >&2)
}

build_docs() {
    NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict "$@"
    # The built site is never committed (the folder ignores itself; mkdocs keeps dotfiles).
    if [[ -d site ]]; then echo '*' >site/.gitignore; fi
}

command=${1:-}
shift || true
case $command in
demo)
    setup demo
    exec "$VENV/bin/python" examples/login.py "$@"
    ;;
test)
    setup test
    # The browser test of examples/auth.py drives Debian's chromium (never `playwright install`).
    if [[ ! -x /usr/bin/chromium && $(id -u) == 0 ]]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    fi
    # The suite starts the servers it needs (tests/servers.py) and stops them when it ends.
    "$VENV/bin/python" -m pytest "$@"
    ;;
check)
    setup "test,lint"
    "$VENV/bin/ruff" check litestar_flash_sessions tests examples benchmarks noxfile.py scripts docs/_griffe
    "$VENV/bin/ruff" format --check litestar_flash_sessions tests examples benchmarks noxfile.py scripts docs/_griffe
    "$VENV/bin/mypy"
    ;;
bench)
    setup bench
    command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
    if [[ ${1:-} == --quick ]]; then
        "$VENV/bin/python" -m benchmarks.bench --rounds 2 --requests 100
        "$VENV/bin/python" -m benchmarks.ablation --rounds 2 --requests 50
        "$VENV/bin/python" -m benchmarks.profile --requests 200 >/dev/null
    else
        "$VENV/bin/python" -m benchmarks.bench
    fi
    # The HTTP and scale benchmarks run against the same servers as the tests (tests/servers.py).
    "$VENV/bin/python" -m tests.servers run "$VENV/bin/python" -m benchmarks.http_load "$@"
    "$VENV/bin/python" -m tests.servers run "$VENV/bin/python" -m benchmarks.scale "$@"
    ;;
docs)
    setup docs
    build_docs "$@"
    ;;
screenshots)
    setup docs
    build_docs
    if [[ ! -x /usr/bin/chromium ]]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    fi
    # Playwright drives Debian's chromium: never `playwright install` (it downloads a browser).
    "$VENV/bin/python" -c "import playwright" 2>/dev/null ||
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check playwright 2> >(grep -v "is ignored" >&2)
    "$VENV/bin/python" scripts/screenshots.py "$@"
    ;;
wheel)
    setup docs
    scripts/check_wheel.sh
    ;;
*)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
