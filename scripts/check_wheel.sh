#!/usr/bin/env bash
# Build the sdist and the wheel, install the wheel (not the checkout) into a fresh virtualenv
# and serve the login demo from it: what a user gets from `pip install litestar-flash-sessions`.
#
#   scripts/check_wheel.sh            (CI runs it; about half a minute, most of it pip)
#
# 1. `python -m build` makes dist/*.tar.gz and dist/*.whl (the wheel is built from the sdist,
#    so a file missing from the sdist fails here too); the wheel must hold py.typed and only the
#    package.
# 2. A new venv in a temporary folder gets "<wheel>[all]" and uvicorn; `import
#    litestar_flash_sessions` there must resolve inside that venv.
# 3. From a temporary folder (nothing of the checkout on sys.path: `python -I`), it serves
#    examples/login.py on a free loopback port, and checks GET / (200, the login form), a login
#    (redirect, session cookie) and the page after it (the flash, the logout button); then stops it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
cd "$ROOT"

if [[ ! -x $VENV/bin/python ]]; then
    echo "no $VENV: run scripts/dev.sh docs (or any dev.sh command) first" >&2
    exit 2
fi
pip_quiet() { "$@" 2> >(grep -v "is ignored" >&2); }
"$VENV/bin/python" -c "import build" 2>/dev/null ||
    pip_quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check build

WORK=$(mktemp -d /tmp/check-wheel.XXXXXX)
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building the sdist and the wheel"
rm -rf "$ROOT"/dist/litestar_flash_sessions-*
pip_quiet "$VENV/bin/python" -m build --outdir "$ROOT/dist" . >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log" >&2; exit 1; }
WHEEL=$(ls "$ROOT"/dist/litestar_flash_sessions-*-py3-none-any.whl)
SDIST=$(ls "$ROOT"/dist/litestar_flash_sessions-*.tar.gz)
echo "   $(basename "$SDIST") ($(du -k "$SDIST" | cut -f1) KB), $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KB)"
"$VENV/bin/python" - "$WHEEL" <<'EOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
top = {name.split("/", 1)[0] for name in names}
extra = {name for name in top if not name.startswith("litestar_flash_sessions")}
assert not extra, f"the wheel holds more than the package: {sorted(extra)}"
for needed in ("litestar_flash_sessions/py.typed", "litestar_flash_sessions/stores/redis.py"):
    assert needed in names, f"the wheel lacks {needed}"
EOF

echo "== installing it into a fresh venv"
# A venv made from the project's venv is based on the same base interpreter (no python3-venv again).
"$VENV/bin/python" -m venv "$WORK/venv"
pip_quiet "$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL[all]" uvicorn
cd "$WORK"
LOCATION=$("$WORK/venv/bin/python" -I -c "import litestar_flash_sessions; print(litestar_flash_sessions.__file__)")
echo "   litestar_flash_sessions: $LOCATION"
if [[ $LOCATION != "$WORK/venv/"* ]]; then
    echo "litestar_flash_sessions resolves to $LOCATION, not to the wheel installed in $WORK/venv" >&2
    exit 1
fi

echo "== serving examples/login.py from the installed package"
PORT=$("$WORK/venv/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$WORK/venv/bin/python" -I "$ROOT/examples/login.py" --store sqlite --host 127.0.0.1 --port "$PORT" \
    >"$WORK/demo.log" 2>&1 &
SERVER_PID=$!
if ! "$WORK/venv/bin/python" -I - "$PORT" <<'EOF'; then
import http.cookiejar
import sys
import time
import urllib.parse
import urllib.request

base = f"http://127.0.0.1:{sys.argv[1]}"
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
deadline = time.monotonic() + 30
while True:
    try:
        response = opener.open(base + "/", timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("the demo did not answer within 30 s")
        time.sleep(0.1)
page = response.read().decode()
assert response.status == 200, f"GET / answered {response.status}"
assert '<form id="login"' in page, f"GET / is not the login page:\n{page}"
print("   GET / -> 200, the login page")
form = urllib.parse.urlencode({"email": "ann@example.com", "password": "correct"}).encode()
response = opener.open(base + "/login", data=form, timeout=5)  # follows the redirect to /
page = response.read().decode()
assert response.status == 200 and response.url == base + "/", (response.status, response.url)
assert "Login successful" in page and "Log out ann@example.com" in page, f"not logged in:\n{page}"
print("   POST /login -> redirect -> GET / -> 200, 'Login successful', the logout button")
EOF
    echo "the demo served from the wheel failed; its log:" >&2
    cat "$WORK/demo.log" >&2
    exit 1
fi
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=
echo "== the wheel works"
