"""``pybpf --version``/``-V``, ``pybpf features [-j]`` and ``pybpf.features.libbpf()``, run as commands.

The values are checked against independent sources: the libbpf file the process maps, the
kernel's uname, the interpreter's own version, and whether ``pybpf._sys._fast`` imports.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys

import pybpf
from pybpf._sys import fast
from pybpf._sys.cdef import OPTIONAL_SYMBOLS
from pybpf._sys.libbpf import has_symbol, lib


def _pybpf(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpf.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_libbpf_reports_version_and_optional_apis():
    info = pybpf.features.libbpf()
    assert (info.major, info.minor) == (lib.libbpf_major_version(), lib.libbpf_minor_version())
    assert info.version.split(".")[:2] == [str(info.major), str(info.minor)]
    assert (info.major, info.minor) >= (1, 1)
    assert os.path.basename(os.path.realpath(info.path)).startswith("libbpf.so.1")
    with open("/proc/self/maps") as maps:
        assert info.path in maps.read()
    m = re.search(r"libbpf\.so\.(\d+\.\d+\.\d+)$", os.path.realpath(info.path))
    if m:
        assert info.version == m[1]
    assert set(info.optional) == set(OPTIONAL_SYMBOLS)
    for name, present in info.optional.items():
        assert present == has_symbol(name)
        # a symbol newer than this libbpf is absent; one this libbpf's release has is present
        assert present == (OPTIONAL_SYMBOLS[name] <= (info.major, info.minor)), name
    doc = info.to_dict()
    assert doc["version"] == info.version and len(doc["optional"]) == len(OPTIONAL_SYMBOLS)


def test_version_lines():
    for flag in ("--version", "-V"):
        proc = _pybpf(flag)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == f"pybpf {pybpf.__version__}"
        assert lines[1].startswith(f"libbpf {pybpf.features.libbpf().version} (")
        assert lines[2] == f"kernel {os.uname().release}"
        assert lines[3].startswith(f"Python {platform.python_version()} (")
        assert lines[4] == ("compiled extension: in use" if fast.EXTENSION
                            else "compiled extension: not in use (ABI-mode binding)")


def test_version_json_and_extension_switched_off():
    proc = _pybpf("-j", "-V", PYBPF_NO_EXTENSION="1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["pybpf"] == pybpf.__version__ and doc["kernel"] == os.uname().release
    assert doc["python"] == platform.python_version() and doc["compiled_extension"] is False
    assert doc["libbpf"] == pybpf.features.libbpf().version
    text = _pybpf("-V", PYBPF_NO_EXTENSION="1").stdout
    assert "compiled extension: not in use (ABI-mode binding)" in text


def test_features_command_json_and_table():
    proc = _pybpf("features", "-j")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    info = pybpf.features.libbpf()
    assert doc["libbpf"]["version"] == info.version and doc["libbpf"]["path"] == info.path
    assert {o["symbol"]: o["present"] for o in doc["libbpf"]["optional"]} == info.optional
    assert {o["symbol"]: o["since"] for o in doc["libbpf"]["optional"]} == {
        n: f"{v[0]}.{v[1]}" for n, v in OPTIONAL_SYMBOLS.items()}
    assert doc["kernel"]["release"] == os.uname().release
    assert doc["kernel"]["btf"] == os.path.exists("/sys/kernel/btf/vmlinux")
    assert doc["binding"]["extension"] == fast.EXTENSION
    table = _pybpf("features")
    assert table.returncode == 0, table.stderr
    assert f"libbpf {info.version}" in table.stdout and "ring_buffer__consume_n" in table.stdout
    assert _pybpf("-j", "features").stdout == proc.stdout  # the global -j, as bpftool -j


def test_options_without_a_command_show_the_help():
    proc = _pybpf("--debug")
    assert proc.returncode == 2 and "Commands" in proc.stdout
