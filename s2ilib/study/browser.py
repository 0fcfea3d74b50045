"""A headless Chromium from the system packages: load a page, check it, take a screenshot.

No browser is downloaded: :func:`find_browser` looks for ``$S2I_CHROMIUM`` or a ``chromium`` /
``chromium-browser`` / ``google-chrome`` on ``PATH`` (Debian: ``apt-get install chromium``) and
returns None when there is none, so callers can say so instead of failing.

:func:`check_page` loads a copy of the page with a small script appended that waits for every
``<img>`` and ``<audio>`` to load or fail, then reads the result out of the DOM (``--dump-dom``)
and the page's console messages out of Chromium's log (``--enable-logging=stderr``).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
INSTALL_HINT = ("no Chromium found: install it with `apt-get install -y chromium` (Debian/Ubuntu) "
                "or point S2I_CHROMIUM at a Chrome/Chromium binary")
TIMEOUT_S = 120
_MARK = "data-s2i-check"
_CONSOLE = re.compile(r':(INFO|WARNING|ERROR):CONSOLE(?:\(\d+\))?:?\d*\]\s*"(.*)", source: (.*)$')
# put first in a copy of the page: records console.error calls, uncaught exceptions, rejected
# promises and failed resource loads (their error events reach window in the capture phase)
_HOOK = """<script>
window.__s2iErrors = [];
// a source as reported: the start of a data URI (its type), the end of a path (the file name)
window.__s2iSrc = s => String(s).startsWith('data:') ? String(s).slice(0, 60) : String(s).slice(-160);
(function () {
  const original = console.error.bind(console);
  console.error = (...args) => { window.__s2iErrors.push(args.map(String).join(' ')); original(...args); };
  window.addEventListener('error', ev => {
    const t = ev.target;
    window.__s2iErrors.push(t && t !== window ? 'failed to load ' + window.__s2iSrc(t.currentSrc || t.src || t.tagName)
                                              : 'uncaught: ' + ev.message);
  }, true);
  window.addEventListener('unhandledrejection', ev => window.__s2iErrors.push('unhandled rejection: ' + ev.reason));
})();
</script>"""
# appended to the copy: waits for each image and audio element to load or fail
_CHECKER = """<script>
window.addEventListener('load', () => {
  const audio = Array.from(document.querySelectorAll('audio')).map(a => new Promise(done => {
    if (a.readyState >= 1) return done([window.__s2iSrc(a.currentSrc), true]);
    a.addEventListener('loadedmetadata', () => done([window.__s2iSrc(a.currentSrc), true]));
    a.addEventListener('error', () => done([window.__s2iSrc(a.currentSrc), false]));
    a.load();
  }));
  Promise.all(audio).then(res => {
    const imgs = Array.from(document.images).map(i => [window.__s2iSrc(i.currentSrc), i.complete && i.naturalWidth > 0]);
    document.body.setAttribute('%s', JSON.stringify({images: imgs, audio: res, errors: window.__s2iErrors}));
  });
});
</script>""" % _MARK


class BrowserError(RuntimeError):
    """Chromium ran but did not produce what was asked (no DOM, no screenshot)."""


def find_browser() -> str | None:
    """Path of a Chromium-family binary, or None."""
    env = os.environ.get("S2I_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(browser: str, args: list[str], url: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--disable-gpu", "--hide-scrollbars", "--mute-audio", "--no-first-run",
             "--allow-file-access-from-files"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    with tempfile.TemporaryDirectory(prefix="s2i-chromium-") as profile:
        return subprocess.run([browser, *flags, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=TIMEOUT_S)


def console_messages(log: str) -> list[dict[str, str]]:
    """Console messages of the page from Chromium's stderr log: level, text, source."""
    out = []
    for line in log.splitlines():
        m = _CONSOLE.search(line)
        if m:
            out.append({"level": m.group(1), "text": m.group(2), "source": m.group(3)})
    return out


def check_page(page: str | Path, browser: str | None = None) -> dict[str, Any]:
    """Load ``page`` in headless Chromium. Returns ``images`` and ``audio`` ([source prefix, loaded]
    per element), ``broken`` (the sources that failed), ``console`` (every console message, from the
    log) and ``errors`` (console.error calls, uncaught exceptions, failed resource loads)."""
    browser = browser or find_browser()
    if browser is None:
        raise BrowserError(INSTALL_HINT)
    page = Path(page).resolve()
    probe = page.with_name(f".{page.stem}.check.html")  # beside the page: relative sources still resolve
    text = page.read_text()
    head = re.search(r"<head[^>]*>", text)
    at = head.end() if head else 0
    probe.write_text(text[:at] + _HOOK + text[at:].replace("</body>", _CHECKER + "</body>"))
    try:
        res = _run(browser, ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom"],
                   probe.as_uri())
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(_MARK + r'="([^"]*)"', res.stdout)
    if m is None:
        raise BrowserError(f"Chromium did not finish loading {page} (exit {res.returncode}): {res.stderr[-2000:]}")
    found = json.loads(html.unescape(m.group(1)))
    console = console_messages(res.stderr)
    errors = list(found["errors"]) + [c["text"] for c in console if c["text"].startswith("Uncaught")]
    broken = [src for src, ok in found["images"] + found["audio"] if not ok]
    return {"images": found["images"], "audio": found["audio"], "broken": broken, "console": console,
            "errors": errors}


def screenshot(page: str | Path, png: str | Path, size: tuple[int, int] = (1280, 2000),
               browser: str | None = None) -> Path:
    """The top ``size`` (width, height px) of ``page`` as a PNG at ``png``."""
    browser = browser or find_browser()
    if browser is None:
        raise BrowserError(INSTALL_HINT)
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    res = _run(browser, [f"--screenshot={png}", f"--window-size={size[0]},{size[1]}",
                         "--virtual-time-budget=5000"], Path(page).resolve().as_uri())
    if not png.exists() or png.stat().st_size == 0:
        raise BrowserError(f"Chromium wrote no screenshot of {page} (exit {res.returncode}): {res.stderr[-2000:]}")
    return png
