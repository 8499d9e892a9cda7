"""Finding the ELF file behind a uprobe target such as ``libc.so.6``."""

from __future__ import annotations

import os
import subprocess

from pybpf.errors import BpfError

__all__ = ["resolve_binary"]


def _mapped_library(name: str) -> str | None:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if path.startswith("/") and os.path.basename(path) == name:
                    return path
    except OSError:
        pass
    return None


def _ldconfig_library(name: str) -> str | None:
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=False).stdout
        except OSError:
            continue
        for line in out.splitlines():
            left, _, path = line.partition("=>")
            if left.strip().split(" ", 1)[0] == name and "x86-64" in left:
                return path.strip()
    return None


def resolve_binary(binary: str) -> str:
    """An absolute path for ``binary``: a path as given, or a library name
    looked up in this process's mappings, then in the ldconfig cache."""
    if "/" in binary:
        path = os.path.abspath(binary)
    else:
        path = _mapped_library(binary) or _ldconfig_library(binary) or ""
    if not path or not os.path.exists(path):
        raise BpfError(f"cannot find the binary {binary!r} for a uprobe "
                       f"(give a path, or a library name this process maps or ldconfig knows)")
    return os.path.realpath(path)
