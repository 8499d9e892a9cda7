"""Running tracing tools as real processes in tests: our `pybpf tool`/`pybpf export` and their
C twins from Debian's libbpf-tools, with their output collected line by line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pybpf.distro import LIBBPF_TOOLS_DIR, libbpf_tool
from tests.conftest import ROOT, needs_kernel


def pybpf_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pybpf.cli", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e["PYTHONUNBUFFERED"] = "1"
    return e


def c_tool(name: str) -> list[str]:
    """The libbpf-tools binary (NAME on Debian 12, NAME-libbpf on 13), line-buffered (stdbuf),
    or skip/fail when not installed."""
    path = libbpf_tool(name)
    if path is None:
        needs_kernel(f"needs Debian's libbpf-tools ({name} or {name}-libbpf in {LIBBPF_TOOLS_DIR}; "
                     "make setup installs it)")
    return ["stdbuf", "-oL", path]


class Proc:
    """A process whose stdout and stderr lines are collected by reader threads.

    Lines are decoded with ``surrogateescape``: a machine-wide tool prints other processes'
    bytes too (file names, argv), which need not be UTF-8; a strict decode would end the reader
    thread, stop the collection and leave the tool blocked on a full pipe."""

    def __init__(self, argv: list[str], **kw: object) -> None:
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  errors="surrogateescape", env=env(), **kw)  # type: ignore[call-overload]
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(self.p.stdout, self.out), daemon=True),
                         threading.Thread(target=self._read, args=(self.p.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            sink.append(line.rstrip("\n"))

    def wait_for(self, pred: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        if pred():
            return
        pytest.fail(f"{self.argv[0:4]}: timed out waiting for {what or pred}; rc={self.p.poll()}\n"
                    f"stdout: {self.out[-20:]}\nstderr: {self.err[-20:]}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Send ``sig``, wait for the exit and the readers; returns the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
            self._close()   # a failed test leaves no pipe behind to warn in a later test
            pytest.fail(f"{self.argv[:4]} did not stop on signal {sig}; stderr: {self.err[-20:]}")
        self._close()
        return rc

    def _close(self) -> None:
        for t in self._threads:
            t.join(5)
        for stream in (self.p.stdout, self.p.stderr):
            if stream is not None:
                stream.close()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self._close()


def unique_binary(tmp: Path, source: str, prefix: str) -> Path:
    """A copy of ``source`` under a unique name (so its comm picks out the test's workload).

    The whole pid: other suites run the same tests at the same time, and where pid_max is
    4194304 (systemd's default) two of them can share ``pid % 100000``; 3 + 7 characters fit
    the C tools' narrowest COMM column (12)."""
    name = f"{prefix}{os.getpid()}"[:15]
    dest = tmp / name
    shutil.copy(source, dest)
    dest.chmod(0o755)
    return dest
