"""The programs of the Debian release that pybpf's tools, tests and set-up work with.

Two things differ between Debian 12 (bookworm) and Debian 13 (trixie) and are named here,
once, for everyone:

* :func:`usdt_python`: Debian's CPython, built with USDT probes (provider ``python``:
  ``function__entry``, ``gc__start``, ``audit``...). It is ``/usr/bin/python3`` resolved to
  its real name, ``/usr/bin/python3.11`` on 12 and ``/usr/bin/python3.13`` on 13: the real
  name is what a process's ``/proc/PID/exe`` shows and what a USDT section names.
* :func:`libbpf_tool`: a program of Debian's ``libbpf-tools``, installed as ``NAME`` on 12
  (``/usr/sbin/execsnoop``) and as ``NAME-libbpf`` on 13 (``/usr/sbin/execsnoop-libbpf``).

Only the standard library: ``python3 src/pybpf/distro.py python`` runs before any venv
exists (the Makefile's set-up uses it so).

    python -m pybpf.distro python          # /usr/bin/python3.11
    python -m pybpf.distro tool execsnoop  # /usr/sbin/execsnoop
"""

from __future__ import annotations

import os
import sys

__all__ = ["DEBIAN_PYTHON", "LIBBPF_TOOLS_DIR", "libbpf_tool", "os_release", "usdt_python"]

DEBIAN_PYTHON = "/usr/bin/python3"
LIBBPF_TOOLS_DIR = "/usr/sbin"


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    """``/etc/os-release`` as a dict (``ID``, ``VERSION_ID``, ``VERSION_CODENAME``...); empty if absent."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key and not key.startswith("#"):
                    fields[key] = value.strip().strip("'\"")
    except OSError:
        pass
    return fields


def usdt_python(python3: str = DEBIAN_PYTHON) -> str:
    """The path of Debian's USDT-probed CPython under its real name (``/usr/bin/python3.11``).

    Raises ``FileNotFoundError`` naming the package when ``python3`` is not installed.
    """
    real = os.path.realpath(python3)
    if not os.access(real, os.X_OK):
        raise FileNotFoundError(f"{python3} is not installed: Debian's CPython (with USDT probes) comes "
                                "with `apt-get install python3` (make setup installs it)")
    return real


def libbpf_tool(name: str, directory: str = LIBBPF_TOOLS_DIR) -> str | None:
    """The path of libbpf-tools' ``name`` (``NAME`` or ``NAME-libbpf``), or None when not installed."""
    for candidate in (name, f"{name}-libbpf"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m pybpf.distro python`` / ``tool NAME``: print the path, or exit 1 with the reason."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["python"]:
        try:
            print(usdt_python())
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if len(args) == 2 and args[0] == "tool":
        path = libbpf_tool(args[1])
        if path is None:
            print(f"libbpf-tools' {args[1]} is not installed (apt-get install libbpf-tools)", file=sys.stderr)
            return 1
        print(path)
        return 0
    print("usage: python -m pybpf.distro python | tool NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
