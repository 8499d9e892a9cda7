"""pybpf.distro: the Debian release's USDT-probed CPython and its libbpf-tools, on the real system.

Debian 12 has ``/usr/bin/python3 -> python3.11`` and ``/usr/sbin/execsnoop``; Debian 13 has
``/usr/bin/python3 -> python3.13`` and ``/usr/sbin/execsnoop-libbpf``. The tests check the
helpers against what this machine's release really installs (``make setup``'s apt lists).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pybpf.distro import libbpf_tool, os_release, usdt_python
from pybpf.spec.usdt import read_probes

# the CPython each supported release ships as python3
PYTHON_OF_RELEASE = {"12": "python3.11", "13": "python3.13"}


def test_usdt_python_is_the_release_cpython_with_probes():
    path = usdt_python()
    assert os.path.isabs(path) and not os.path.islink(path)
    assert os.path.samefile(path, "/usr/bin/python3")
    release = os_release()
    if release.get("ID") == "debian" and release.get("VERSION_ID") in PYTHON_OF_RELEASE:
        assert os.path.basename(path) == PYTHON_OF_RELEASE[release["VERSION_ID"]], release
    probes = {(p.provider, p.name) for p in read_probes(path)}
    # what every Debian CPython here fires (3.13 has no function__entry/return, no line)
    assert {("python", "audit"), ("python", "gc__start"), ("python", "gc__done")} <= probes, probes


def test_usdt_python_missing_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"apt-get install python3"):
        usdt_python(str(tmp_path / "python3"))
    link = tmp_path / "python3"
    link.symlink_to(sys.executable)
    assert usdt_python(str(link)) == os.path.realpath(sys.executable)


def test_libbpf_tool_finds_the_release_name():
    path = libbpf_tool("execsnoop")
    assert path is not None, "libbpf-tools is not installed (make setup installs it)"
    assert os.path.basename(path) in ("execsnoop", "execsnoop-libbpf")
    out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
    assert "execsnoop" in out.stdout + out.stderr
    assert libbpf_tool("no-such-tool-pybpf") is None


def test_libbpf_tool_takes_either_name(tmp_path):
    for name in ("runqlat", "tcpstates-libbpf"):
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    (tmp_path / "opensnoop").write_text("not executable")
    assert libbpf_tool("runqlat", str(tmp_path)) == str(tmp_path / "runqlat")
    assert libbpf_tool("tcpstates", str(tmp_path)) == str(tmp_path / "tcpstates-libbpf")
    assert libbpf_tool("opensnoop", str(tmp_path)) is None


def test_os_release_parses_quotes_and_comments(tmp_path):
    f = tmp_path / "os-release"
    f.write_text('# c\nPRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\nID=debian\n\nbad line\n')
    assert os_release(str(f)) == {"PRETTY_NAME": "Debian GNU/Linux 13 (trixie)", "VERSION_ID": "13",
                                  "ID": "debian"}
    assert os_release(str(tmp_path / "none")) == {}


def test_command_line_runs_without_a_venv():
    # the Makefile runs it with Debian's python3 before .venv exists: stdlib only
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "pybpf", "distro.py")
    out = subprocess.run([sys.executable, "-I", src, "python"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == usdt_python()
    bad = subprocess.run([sys.executable, "-I", src, "tool", "no-such-tool-pybpf"], capture_output=True, text=True)
    assert bad.returncode == 1 and "apt-get install libbpf-tools" in bad.stderr
