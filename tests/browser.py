"""Headless Chromium for tests: render a local HTML file to a screenshot and to its DOM after layout.

Uses Debian's `chromium` (installed by scripts/setup_test_env.sh, which `make test` runs). Each call gets a fresh profile directory
and every network-facing background feature off, so a run neither reads nor leaves browser state and needs
no network. Tests that need the browser skip, with the reason, when it is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MNETDEPLOY_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_S = 90          # a cold start on a loaded 2-core machine can take several seconds; a hang must not stall CI
WINDOW = (1280, 2000)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--disable-dev-shm-usage"]  # containers often have a tiny /dev/shm: Chromium would crash on big pages


def require_chromium() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} is absent: run scripts/setup_test_env.sh (as root) to install Debian's chromium")
    return CHROMIUM


@dataclass
class Rendered:
    dom: str              # document.documentElement.outerHTML after parsing and layout
    screenshot: Path      # PNG of the first WINDOW of the page


def _run(args: list[str], what: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="mnetdeploy-chromium-")
    try:
        proc = subprocess.run([str(require_chromium()), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=TIMEOUT_S,
                              env={**os.environ, "HOME": profile})  # keep ~/.config and caches out of the real home
    except subprocess.TimeoutExpired:
        raise AssertionError(f"chromium {what} did not finish within {TIMEOUT_S} s") from None
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0:
        raise AssertionError(f"chromium {what} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def render(page: Path, screenshot: Path, window: tuple[int, int] = WINDOW) -> Rendered:
    """Load `page` (a local file) headless: its DOM after layout and a PNG screenshot of `window` pixels."""
    url = page.resolve().as_uri()
    size = f"--window-size={window[0]},{window[1]}"
    dom = _run(["--dump-dom", size, url], "--dump-dom").stdout
    screenshot.unlink(missing_ok=True)
    _run([f"--screenshot={screenshot}", size, url], "--screenshot")
    if not screenshot.is_file():
        raise AssertionError(f"chromium exited 0 but wrote no screenshot at {screenshot}")
    return Rendered(dom=dom, screenshot=screenshot)


# Runs in the page after parsing (end of <body>): reading scrollWidth forces layout, and the result lands in the
# DOM as an attribute, which is all --dump-dom can return (the page itself has no script; only this copy does).
MEASURE_TABLES = """<script>
for (const w of document.querySelectorAll('.table-wrap')) {
  const section = w.closest('section');
  w.dataset.measured = [section ? section.id : '', w.scrollWidth, w.clientWidth].join(' ');
}
</script>"""


@dataclass
class TableWidth:
    section: str          # id of the table's <section>
    scroll: int           # the table's full width (px)
    client: int           # the width its .table-wrap shows; scroll > client: it scrolls sideways


def table_widths(page: Path, window: tuple[int, int] = WINDOW) -> list[TableWidth]:
    """Every `.table-wrap` of `page` laid out in a `window`-wide viewport: its content width vs its visible width."""
    import re

    text = page.read_text()
    probe = page.with_name(f"{page.stem}.measured{page.suffix}")
    probe.write_text(text.replace("</body>", MEASURE_TABLES + "\n</body>", 1))
    dom = _run(["--dump-dom", f"--window-size={window[0]},{window[1]}", probe.resolve().as_uri()], "--dump-dom").stdout
    found = re.findall(r'data-measured="([^"]*) (\d+) (\d+)"', dom)
    expected = text.count('class="table-wrap"')
    if len(found) != expected:
        raise AssertionError(f"measured {len(found)} of {expected} tables in {page}")
    return [TableWidth(section, int(scroll), int(client)) for section, scroll, client in found]
