"""Take screenshots of the built documentation site, to look at it as a reader would.

Serves the built site (``python -m http.server`` on ``site/``, loopback only) and opens pages in
headless Chromium through Playwright, with Debian's ``/usr/bin/chromium`` (never a downloaded
browser: do not run ``playwright install``). Writes one PNG per page into ``docs-screenshots/``
and checks on the way what a broken build would get wrong: the theme's stylesheet applied, the
navigation present, an API reference page holding rendered objects, and no request leaving the
machine. Exits 1 with a message when a check fails.

    scripts/nox -s screenshots          # builds the site first, installs chromium and playwright
    python scripts/screenshots.py [--site site] [--out docs-screenshots] [PATH ...]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, Route, sync_playwright

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
DEFAULT_PAGES = ["/", "/reference/", "/session/"]
API_PAGES = ("/reference/",)
"""Pages that must hold rendered API objects (mkdocstrings' ``doc-object`` blocks)."""
MIN_API_OBJECTS = 10


def free_port() -> int:
    """Return a TCP port free on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on a loopback port for as long as the block runs; yield its base URL."""
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 (a fixed command: this Python's http.server)
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=1):  # noqa: S310 (our own loopback server)
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the site server on port {port} did not start") from None
                time.sleep(0.05)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def file_name(path: str) -> str:
    """Return the PNG name for a site path: ``/`` is ``home.png``, ``/reference/stores/`` is
    ``reference-stores.png``.
    """
    return ("-".join(part for part in path.split("/") if part) or "home") + ".png"


def check_page(page: Page, path: str) -> list[str]:
    """Return what looks broken on the open page (empty when it looks right)."""
    problems: list[str] = []
    evaluate = page.evaluate
    if not evaluate(
        "() => !!document.querySelector('.md-header') && "
        "getComputedStyle(document.querySelector('.md-header')).position !== 'static'"
    ):
        problems.append("the theme's stylesheet is not applied (no styled header)")
    links = evaluate("() => document.querySelectorAll('.md-sidebar--primary .md-nav__link').length")
    if links < 10:
        problems.append(f"the navigation has {links} links, expected the whole nav")
    text = evaluate("() => (document.querySelector('article')?.innerText || '').trim().length")
    if text < 200:
        problems.append(f"the page's article holds {text} characters: empty")
    if path in API_PAGES:
        objects = evaluate("() => document.querySelectorAll('article .doc-object').length")
        if objects < MIN_API_OBJECTS:
            problems.append(f"the API page renders {objects} objects, expected at least {MIN_API_OBJECTS}")
        raw = evaluate("() => /:(class|meth|func|attr):`/.test(document.querySelector('article').innerText)")
        if raw:
            problems.append("the API page shows raw Sphinx roles (:class:`...`)")
    return problems


def main() -> int:
    """Shoot the pages; return the exit status (1 if a page looks broken)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", default=DEFAULT_PAGES, help="site paths to shoot (default: %(default)s)")
    parser.add_argument("--site", type=Path, default=Path("site"), help="the built site (mkdocs build)")
    parser.add_argument("--out", type=Path, default=Path("docs-screenshots"), help="where the PNGs go")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full-page", action="store_true", help="shoot whole pages, not the first screen")
    args = parser.parse_args()

    if not (args.site / "index.html").is_file():
        print(f"no built site in {args.site}/: run `scripts/nox -s docs` first", file=sys.stderr)
        return 1
    if not Path(CHROMIUM).is_file():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ".gitignore").write_text("*\n")  # screenshots are never committed

    failures = 0
    with serve(args.site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": args.width, "height": args.height})
            outside: list[str] = []

            def route(route: Route) -> None:
                url = route.request.url
                if urlsplit(url).hostname == "127.0.0.1":
                    route.continue_()
                else:
                    outside.append(url)
                    route.abort()

            context.route("**/*", route)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            for path in args.paths:
                errors.clear()
                response = page.goto(base + path, wait_until="networkidle")
                status = response.status if response is not None else 0
                target = args.out / file_name(path)
                page.screenshot(path=str(target), full_page=args.full_page)
                problems = [] if status == 200 else [f"HTTP {status}"]
                problems += check_page(page, path)
                problems += [f"JavaScript error: {error}" for error in errors]
                title = page.title()
                print(f"{target}  {path}  {title!r}  {'ok' if not problems else '; '.join(problems)}")
                failures += bool(problems)
            if outside:
                print(f"requests outside the machine (blocked): {sorted(set(outside))}", file=sys.stderr)
                failures += 1
        finally:
            browser.close()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
