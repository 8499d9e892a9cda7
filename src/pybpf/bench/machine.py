"""What the figures were measured on, recorded next to them in the JSON."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import socket
import subprocess

import numpy as np

from pybpf import LIBBPF_VERSION
from pybpf import __version__
from pybpf.bench.cbuild import compiler_version

__all__ = ["describe"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _libbpf_package() -> str | None:
    """The distribution's libbpf package version (libbpf itself only reports major.minor)."""
    if shutil.which("dpkg-query") is None:
        return None
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libbpf1"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or None


def describe() -> dict:
    """The machine, kernel, libbpf and Python the figures come from."""
    uname = os.uname()
    return {
        "hostname": socket.gethostname(),
        "kernel": uname.release,
        "kernel_version": uname.version,
        "arch": uname.machine,
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "libbpf": LIBBPF_VERSION,
        "libbpf_package": _libbpf_package(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "numpy": np.__version__,
        "pybpf": __version__,
        "compiler": compiler_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
