"""Headless Chromium (Debian's package) for looking at what pybpf draws: a screenshot and the
DOM after the page's own script ran. Every run gets a fresh profile directory and no network."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import needs_kernel

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def _binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        needs_kernel("needs Debian's chromium (make setup installs it)")
    return found  # type: ignore[return-value]


def _run(extra: list[str], page: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="pybpf-chromium-")
    try:
        return subprocess.run([_binary(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: Path, png: Path, width: int, height: int) -> Path:
    _run([f"--screenshot={png}", f"--window-size={width},{height}"], page)
    assert png.exists() and png.stat().st_size > 0, f"chromium wrote no screenshot of {page}"
    return png


def dump_dom(page: Path) -> str:
    return _run(["--dump-dom"], page).stdout
