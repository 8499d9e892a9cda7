"""Headless Chromium (Debian's package) for looking at what pybpf draws: a screenshot and the
DOM after the page's own script ran, and a :class:`Page` a test clicks in (the DevTools protocol
over a pipe). Every run gets a fresh profile directory and no network. At the end, what tests of
pybpf's flame graphs read back: the boxes of the DOM and the colours of the picture."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from html import unescape
from pathlib import Path

import numpy as np

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


class Page:
    """One page of a headless Chromium driven over the DevTools protocol through a pipe
    (``--remote-debugging-pipe``: Chromium reads commands on its fd 3 and answers on fd 4, one
    NUL-terminated JSON message each), so that a test can click, press keys, read the DOM and take
    screenshots as a user's browser does: input goes through Chromium's own hit testing and the
    page's own event handlers. No port is opened; the page gets no network.

        with chromium.Page(path, 1200, 400) as page:
            page.click(x, y)
            page.evaluate("document.title")
            png = page.screenshot()
    """

    def __init__(self, page: Path, width: int, height: int, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._next = 0
        self._buf = b""
        self._profile = tempfile.mkdtemp(prefix="pybpf-chromium-")
        commands_r, commands_w = os.pipe()
        answers_r, answers_w = os.pipe()
        # the child's fds 3 and 4 by dup2 in posix_spawn: every other fd of ours is close-on-exec
        low = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands_r, answers_w)]
        for fd in (commands_r, answers_w):
            os.close(fd)
        self._log = tempfile.TemporaryFile()
        argv = [_binary(), *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-pipe",
                f"--window-size={width},{height}", "about:blank"]
        try:
            self.pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, self._log.fileno(), 1), (os.POSIX_SPAWN_DUP2, self._log.fileno(), 2),
                (os.POSIX_SPAWN_DUP2, low[0], 3), (os.POSIX_SPAWN_DUP2, low[1], 4)])
        finally:
            for fd in low:
                os.close(fd)
        self._send_fd, self._recv_fd = commands_w, answers_r
        self.session: str | None = None
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
            self.call("Page.enable")
            self.call("Page.navigate", url=page.resolve().as_uri())
            self.wait_for("document.readyState === 'complete'")
        except BaseException:
            self.close()
            raise

    # ---- the protocol ------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._recv_fd], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer in {self.timeout} s; its log:\n{self.log()}")
            chunk = os.read(self._recv_fd, 1 << 16)
            if not chunk:
                raise ConnectionError(f"chromium closed the DevTools pipe; its log:\n{self.log()}")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, **params: object) -> dict:
        """Send one command (to the page once attached) and return its result; events are skipped."""
        self._next += 1
        message: dict[str, object] = {"id": self._next, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page (JSON-able values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"never true in the page: {expression}")
            time.sleep(0.05)

    # ---- what a user does -----------------------------------------------------------------------

    def move(self, x: float, y: float) -> None:
        """The mouse moved to (x, y) CSS pixels (Chromium fires mouseover/mouseout as it hit-tests)."""
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def click(self, x: float, y: float) -> None:
        """A left click at (x, y) CSS pixels: moved there, pressed, released, as a mouse does."""
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=1, clickCount=1)

    def press(self, key: str, code: int) -> None:
        """A key pressed and released (``key`` as the DOM names it, ``code`` its virtual key code)."""
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def screenshot(self) -> bytes:
        """The viewport as PNG bytes."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    # ---- the end ----------------------------------------------------------------------------------

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-3000:]

    def close(self) -> None:
        if self.pid:
            try:
                self.session = None
                os.write(self._send_fd, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            except OSError:
                pass
            deadline = time.monotonic() + 10
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:   # it did not leave when asked
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    break
                time.sleep(0.05)
            self.pid = 0
        for fd in (self._send_fd, self._recv_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._send_fd = self._recv_fd = -1
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- flame graphs as Chromium shows them ------------------------------------------------------

def flame_frames_of_dom(dom: str) -> set[tuple[str, int, int, int]]:
    """(name, depth, start, value) of every box of a pybpf flame graph in a dumped DOM; each box's
    tooltip must say its name and count."""
    found = set()
    for m in re.finditer(r'<g class="f[^"]*" data-n="([^"]*)" data-s="(\d+)" data-v="(\d+)" data-d="(\d+)">'
                         r"<title>([^<]*)</title>", dom):
        name, s, v, d, title = unescape(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), \
            unescape(m.group(5))
        assert title.startswith(f"{name} ({v:,} "), title
        found.add((name, d, s, v))
    return found


FLAME_GEOMETRY = """[...document.querySelectorAll('g.f')].map(function (g) {
  var r = g.querySelector('rect'), b = r.getBoundingClientRect();
  return {n: g.getAttribute('data-n'), cls: g.getAttribute('class'), x: +r.getAttribute('x'),
          w: +r.getAttribute('width'), fill: r.getAttribute('fill'), cx: b.x + b.width / 2, cy: b.y + b.height / 2,
          top: b.y, d: +g.getAttribute('data-d'), s: +g.getAttribute('data-s')};
})"""


def flame_boxes(page: Page) -> list[dict]:
    """Every box of the flame graph on ``page``: name, class, x and width (SVG), fill, centre and top
    (CSS pixels in the viewport), depth and start."""
    return page.evaluate(FLAME_GEOMETRY)  # type: ignore[return-value]


def picture(page: Page) -> np.ndarray:
    """The viewport as an (height, width, 3) int array."""
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)


def colour_run(img: np.ndarray, y: int, fill: str) -> tuple[int, int]:
    """(first x, last x + 1) of the pixels of colour ``fill`` (``rgb(r,g,b)``) on row ``y``."""
    colour = np.array([int(c) for c in re.findall(r"\d+", fill)])
    hit = np.flatnonzero(np.all(np.abs(img[y] - colour) <= 3, axis=1))
    return (int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, 0)
