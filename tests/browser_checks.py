"""The built book as a reader sees it: every chapter loaded in headless Chromium at desktop (1400
px) and phone (390 px) widths, with MathJax served from the site itself (no network).

Asserted on every chapter page and width:
* MathJax loaded from the site and typeset the page: no ``merror``, no undefined macro (shown in
  red by MathJax's ``noundefined``), no formula left as raw TeX;
* nothing clipped out of reach: no formula, code block, output, image or table extends past an
  ancestor that hides overflow (a box that *scrolls* is fine), and the page itself never
  scrolls sideways;
* references read right: no doubled word ("Theorem Theorem 1"), no raw label (a target's id such
  as ``prop-ntxent``) in the visible text, the page contents included;
* every figure is numbered and captioned with real alt text, and no image sits uncaptioned in an
  output;
* the chapter links its claims JSON, and the link resolves to the chapter's claims.

Chromium is driven over its DevTools pipe (``--remote-debugging-pipe``) with the standard library
only: no Selenium, no WebDriver, no new dependency. Requests to anything but the local server are
refused, so a CDN MathJax fails here as it would offline.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and a local MathJax in the built site
(``npm install mathjax@3`` at the repository's root before the build); skipped with that message
where either is missing, unless ``$CLBOOK_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which turns the
skip into a failure. The book: ``$CLBOOK_BUILT_BOOK`` (a folder holding ``_build/html``) if set, else the
``built_book`` fixture of tests/conftest.py (one smoke-scale build of the whole book). Its math is
served locally when the build found a MathJax copy (``npm install mathjax@3`` at the repository's
root, see book/_ext/clbook.py). ``$CLBOOK_SCREENSHOTS=<dir>`` saves a PNG of every page and width.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

WIDTHS = (1400, 390)

# These checks are collected as part of tests/test_chapters.py (which imports them), so that with
# pytest-xdist's --dist loadscope they run on the worker that builds the book, once.
PAGE_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------------------------
# A minimal DevTools client over Chromium's pipe
# --------------------------------------------------------------------------------------------
def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """Headless Chromium speaking the DevTools protocol on file descriptors 3 (in) and 4 (out)."""

    def __init__(self, binary: str, allowed_origin: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="clbook-chromium-")
        cmd_read, self._cmd_write = os.pipe()
        self._res_read, res_write = os.pipe()
        # the child's ends above 9, so that "3<&N 4>&M" cannot overwrite one with the other (bash,
        # not dash, takes descriptors above 9 in a redirection)
        cmd_read, res_write = (self._high(fd) for fd in (cmd_read, res_write))
        args = [
            "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--hide-scrollbars", "--force-device-scale-factor=1",
            f"--user-data-dir={self.profile}", "about:blank",
        ]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{cmd_read} 4>&{res_write}', binary, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(cmd_read, res_write),
        )
        os.close(cmd_read)
        os.close(res_write)
        self._buffer = b""
        self._next_id = 0
        self.allowed_origin = allowed_origin
        self.blocked: list[str] = []
        self.console_errors: list[str] = []
        target = self.send("Target.createTarget", {"url": "about:blank"})
        self.session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})[
            "sessionId"]
        for method, params in (("Page.enable", {}), ("Runtime.enable", {}),
                               ("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})):
            self.send(method, params, session=True)

    @staticmethod
    def _high(fd: int) -> int:
        import fcntl

        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return high

    def _write(self, message: dict[str, Any]) -> None:
        os.write(self._cmd_write, json.dumps(message).encode() + b"\0")

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            self._next_id += 1
            if url.startswith(self.allowed_origin) or url.startswith("data:"):
                self._write({"id": self._next_id, "method": "Fetch.continueRequest",
                             "params": {"requestId": params["requestId"]}, "sessionId": message["sessionId"]})
            else:
                self.blocked.append(url)
                self._write({"id": self._next_id, "method": "Fetch.failRequest",
                             "params": {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                             "sessionId": message["sessionId"]})
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(params["exceptionDetails"].get("text", ""))

    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = False,
             timeout: float = PAGE_TIMEOUT_S) -> dict[str, Any]:
        self._next_id += 1
        wanted = self._next_id
        message: dict[str, Any] = {"id": wanted, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self._write(message)
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Chromium did not answer {method} within {timeout:.0f} s")
                chunk = os.read(self._res_read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if "method" in reply:
                self._event(reply)
            elif reply.get("id") == wanted:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, width: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": width < 600},
                  session=True)
        self.send("Page.navigate", {"url": url}, session=True)
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.evaluate("[document.readyState, location.href]")
            if state and state[0] == "complete" and state[1] == url:
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"{url} did not load")
        # MathJax loads deferred: wait for its start-up promise (it resolves after typesetting);
        # a MathJax from elsewhere is blocked here and will never start: do not wait for it.
        local = self.evaluate("[...document.scripts].some(s => /mathjax/i.test(s.src)"
                              " && s.src.startsWith(location.origin))")
        while local and time.monotonic() < deadline:
            ready = self.evaluate("!!(window.MathJax && MathJax.startup && MathJax.startup.promise)")
            if ready:
                self.evaluate("MathJax.startup.promise.then(() => true)", await_promise=True)
                return
            if self.evaluate("!document.querySelector('.math')"):
                return  # a page without math
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                         session=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._cmd_write)
        os.close(self._res_read)
        shutil.rmtree(self.profile, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# What is measured on a page (runs inside the page)
# --------------------------------------------------------------------------------------------
PROBE = r"""
(async () => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const describe = (el) => {
    const text = (el.getAttribute('aria-label') || el.textContent || el.getAttribute('src') || '').replace(/\s+/g, ' ').trim();
    const where = el.closest('section[id]');
    return `${el.tagName.toLowerCase()}${el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : ''}`
      + ` in #${where ? where.id : '?'}: "${text.slice(0, 70)}"`;
  };
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden'; };
  const out = {clipped: [], pageOverflow: [], mathErrors: [], rawTex: [], doubled: [], rawLabels: [],
               uncaptioned: [], badAlt: [], figures: 0, claimsLinks: [], claimsOk: false, mathjaxSrc: [],
               formulas: 0};

  // 1. clipping
  const vw = document.documentElement.clientWidth;
  const candidates = article.querySelectorAll('mjx-container, div.highlight pre, div.cell_output pre, img, table, div.math, div.proof, div.admonition, details');
  for (const el of candidates) {
    if (!visible(el) || el.closest('details:not([open])')) continue;
    const r = el.getBoundingClientRect();
    let reachable = false, clipped = null;
    for (let a = el.parentElement; a; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox === 'auto' || ox === 'scroll') { reachable = true; break; }
      if (ox === 'hidden' || ox === 'clip') {
        const ar = a.getBoundingClientRect();
        const missing = Math.max(r.right - ar.right, ar.left - r.left);
        if (missing > 1) { clipped = {missing: Math.round(missing), by: a.tagName.toLowerCase() + '.' + (a.className || '').toString().split(' ')[0]}; break; }
      }
    }
    if (clipped) out.clipped.push(`${describe(el)} (${clipped.missing} px hidden by ${clipped.by})`);
    else if (!reachable && (r.right > vw + 1 || r.left < -1)) out.pageOverflow.push(`${describe(el)} (${Math.round(r.right - vw)} px past the page)`);
  }
  // not a failure, a hint for the chapter's author: content that needs a sideways scroll
  out.scrolls = [];
  for (const el of article.querySelectorAll('span.math, mjx-container[display="true"], div.proof, div.admonition, div.highlight pre')) {
    if (visible(el) && !el.closest('details:not([open])') && el.scrollWidth > el.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(el).overflowX))
      out.scrolls.push(`${describe(el)} (${el.scrollWidth - el.clientWidth} px to scroll)`);
  }
  if (document.documentElement.scrollWidth > vw + 1) out.pageOverflow.push(`the page scrolls sideways (${document.documentElement.scrollWidth} > ${vw} px)`);

  // 2. MathJax
  out.formulas = document.querySelectorAll('mjx-container').length;
  for (const el of document.querySelectorAll('mjx-merror, [data-mjx-error]')) out.mathErrors.push((el.getAttribute('data-mjx-error') || el.textContent).slice(0, 120));
  for (const el of document.querySelectorAll('mjx-container [style*="color: red"], mjx-container [style*="color:red"]')) out.mathErrors.push('undefined macro ' + el.textContent.slice(0, 60));
  for (const el of article.querySelectorAll('.math')) {
    if (!el.querySelector('mjx-container') && /\\\(|\\\[|\$\$/.test(el.textContent)) out.rawTex.push(el.textContent.slice(0, 80));
  }
  out.mathjaxSrc = [...document.querySelectorAll('script')].map(s => s.src).filter(s => /mathjax/i.test(s));

  // 3. references
  const text = article.innerText;
  const words = 'Theorem|Lemma|Proposition|Corollary|Definition|Remark|Assumption|Example|Conjecture|Figure|Fig\\.|Table|Equation|Eq\\.|Section|Chapter|Algorithm';
  const doubled = new RegExp(`\\b(${words})\\s+(${words})\\s+[0-9]`, 'g');
  for (const m of text.matchAll(doubled)) out.doubled.push(text.slice(Math.max(0, m.index - 30), m.index + 40).replace(/\s+/g, ' '));
  const labelLike = /^(thm|theorem|lem|lemma|prop|def|defn|cor|eq|equation|fig|tab|table|sec|ch|rem|ex|asm|assum|assumption|conj|alg)-[\w-]+$/;
  const labels = new Set();
  for (const el of document.querySelectorAll('[id]')) {
    const id = el.id.replace(/^equation-/, '');
    if (labelLike.test(id)) labels.add(id);
  }
  const toc = [...document.querySelectorAll('.bd-toc, nav.page-toc, .bd-sidebar-secondary')].map(e => e.innerText).join('\n');
  const prose = [...article.querySelectorAll('p, h1, h2, h3, h4, li, figcaption, td, th, summary, .admonition-title, mjx-assistive-mml')]
      .filter(e => !e.closest('pre, code, div.cell_input')).map(e => e.innerText || e.textContent).join('\n');
  for (const label of labels) {
    const re = new RegExp(`(^|[^\\w-])${label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^\\w-]|$)`);
    if (re.test(toc)) out.rawLabels.push(`${label} (page contents)`);
    else if (re.test(prose)) out.rawLabels.push(label);
  }

  // 4. figures
  for (const fig of article.querySelectorAll('figure, div.figure')) {
    out.figures += 1;
    const cap = fig.querySelector('figcaption, p.caption');
    const num = cap && cap.querySelector('.caption-number');
    const capText = cap ? cap.innerText.replace(num ? num.innerText : '', '').trim() : '';
    if (!num || capText.length < 10) out.uncaptioned.push(describe(fig) + (num ? ' (caption too short)' : ' (no numbered caption)'));
  }
  for (const img of article.querySelectorAll('img')) {
    if (/colab-badge|badge\.svg|logo/i.test(img.src + ' ' + img.className)) continue;
    if (!img.closest('figure, div.figure')) out.uncaptioned.push(`image outside a figure: ${describe(img.closest('div.cell') || img)}`);
    const alt = (img.getAttribute('alt') || '').trim();
    if (alt.length < 10 || /^[0-9a-f]{16,}/.test(alt) || /\.(png|svg|jpe?g)$/i.test(alt) || /[\/\\]/.test(alt) && !/\s/.test(alt))
      out.badAlt.push(`${describe(img)} alt="${alt.slice(0, 60)}"`);
  }

  // 5. claims JSON
  const stem = location.pathname.split('/').pop().replace(/\.html$/, '');
  for (const a of article.querySelectorAll('a[href]')) {
    if (new URL(a.href, location.href).pathname.endsWith(`/claims/${stem}.json`)) out.claimsLinks.push(a.href);
  }
  if (out.claimsLinks.length) {
    try {
      const res = await fetch(out.claimsLinks[0]);
      const data = res.ok ? await res.json() : null;
      out.claimsOk = !!(data && Array.isArray(data.claims) && data.claims.length > 0);
    } catch (e) { out.claimsOk = false; }
  }
  return out;
})()
"""


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
def _skip_or_fail(message: str) -> None:
    if os.environ.get("CLBOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " ($CLBOOK_REQUIRE_BROWSER=1)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def html_root(request: pytest.FixtureRequest) -> Path:
    if chromium_binary() is None:
        _skip_or_fail("Chromium is not installed: `apt-get install -y chromium` (Debian) to run the browser test")
    explicit = os.environ.get("CLBOOK_BUILT_BOOK")
    if explicit:
        root = Path(explicit)
    else:
        try:
            build = request.getfixturevalue("built_book")
            root = Path(getattr(build, "output", build))
        except pytest.FixtureLookupError:
            pytest.skip("no built book: tests/conftest.py has no `built_book` fixture and $CLBOOK_BUILT_BOOK is unset")
    html = root / "_build" / "html"
    assert (html / "index.html").is_file(), f"no built book at {html}"
    if not (html / "_static" / "mathjax" / "tex-chtml.js").is_file():
        _skip_or_fail("the built book has no local MathJax (`npm install mathjax@3` in the repository, then "
                      "build again): without it the browser cannot typeset the math offline")
    return html


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture(scope="module")
def server(html_root: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(html_root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Chromium]:
    binary = chromium_binary()
    assert binary is not None
    chrome = Chromium(binary, allowed_origin=server)
    try:
        yield chrome
    finally:
        chrome.close()


def chapter_pages(html_root: Path) -> list[str]:
    return sorted(p.stem for p in (html_root / "chapters").glob("*.html"))


@pytest.fixture(scope="module")
def reports(html_root: Path, server: str, browser: Chromium) -> dict[tuple[str, int], dict[str, Any]]:
    """One probe per chapter and width (loaded once, asserted by several tests)."""
    shots = os.environ.get("CLBOOK_SCREENSHOTS")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for stem in chapter_pages(html_root):
        for width in WIDTHS:
            browser.open(f"{server}chapters/{stem}.html", width)
            results[(stem, width)] = browser.evaluate(PROBE, await_promise=True)
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                browser.screenshot(Path(shots) / f"{stem}-{width}.png")
    return results


def _failures(reports: dict[tuple[str, int], dict[str, Any]], key: str,
              widths: tuple[int, ...] = WIDTHS, pick: Callable[[Any], list[str]] | None = None) -> str:
    lines = []
    for (stem, width), report in sorted(reports.items()):
        if width not in widths:
            continue
        found = pick(report) if pick else report[key]
        lines += [f"{stem} @ {width}px: {item}" for item in found]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
def test_every_chapter_was_loaded(html_root: Path, reports: dict) -> None:
    assert chapter_pages(html_root), "the built book has no chapters/*.html"
    assert len(reports) == len(chapter_pages(html_root)) * len(WIDTHS)


def test_mathjax_is_served_by_the_site_and_typesets_without_error(reports: dict, browser: Chromium) -> None:
    sources = {src for r in reports.values() for src in r["mathjaxSrc"]}
    assert sources, "no MathJax script on the chapter pages"
    assert all(src.startswith("http://127.0.0.1") for src in sources), (
        f"MathJax is loaded from {sorted(sources)}, not from the site: build the book with a local "
        "MathJax (`npm install mathjax@3` in the repository, or $CLBOOK_MATHJAX; see book/_ext/clbook.py)"
    )
    untypeset = [stem for (stem, _), r in reports.items() if r["formulas"] == 0]
    assert not untypeset, f"no formula typeset on {sorted(set(untypeset))} (blocked: {browser.blocked[:5]})"
    problems = _failures(reports, "mathErrors") + _failures(reports, "rawTex")
    assert not problems, f"MathJax errors or raw TeX:\n{problems}"


@pytest.mark.parametrize("width", WIDTHS)
def test_no_formula_or_code_is_clipped_out_of_reach(reports: dict, width: int) -> None:
    problems = _failures(reports, "clipped", (width,))
    assert not problems, f"content cut off with no way to scroll at {width} px:\n{problems}"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_never_scrolls_sideways(reports: dict, width: int) -> None:
    problems = _failures(reports, "pageOverflow", (width,))
    assert not problems, f"content wider than the page at {width} px (the whole page pans):\n{problems}"


def test_references_read_as_words(reports: dict) -> None:
    doubled = _failures(reports, "doubled", (WIDTHS[0],))
    raw = _failures(reports, "rawLabels", (WIDTHS[0],))
    assert not doubled and not raw, f"doubled reference words:\n{doubled}\nraw labels in the text:\n{raw}"


def test_every_figure_is_numbered_and_captioned_with_alt_text(reports: dict) -> None:
    problems = _failures(reports, "uncaptioned", (WIDTHS[0],)) + "\n" + _failures(reports, "badAlt", (WIDTHS[0],))
    assert not problems.strip(), f"figures without number, caption or alt text:\n{problems}"


def test_every_chapter_links_its_claims_json(reports: dict) -> None:
    missing = [stem for (stem, width), r in sorted(reports.items()) if width == WIDTHS[0] and not r["claimsOk"]]
    assert not missing, (
        f"no working link to claims/<chapter>.json on {missing} "
        f"(links found: {[reports[(s, WIDTHS[0])]['claimsLinks'] for s in missing]})"
    )
