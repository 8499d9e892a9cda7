"""USDT: note parsing (pure), ``pybpf usdt list``, and attaching to real probes.

The probes are real: a C program built here with ``<sys/sdt.h>`` (by gcc, which puts
arguments in registers of every width, and by clang, which puts them in stack memory),
and Debian's ``/usr/bin/python3`` under its real name (``pybpf.distro.usdt_python()``: python3.11
on Debian 12, python3.13 on 13; provider ``python``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pybpf
from pybpf.cli import app
from pybpf.distro import usdt_python
from pybpf.errors import BpfError
from pybpf.spec.usdt import UsdtArgError, parse_arg, read_probes

ROOT = Path(__file__).resolve().parent.parent
PROBES_C = ROOT / "tests" / "data" / "usdt_probes.c"
SDT_H = "/usr/include/x86_64-linux-gnu/sys/sdt.h"

# what fire_args() passes, in order (tests/data/usdt_probes.c); the last is the round
EXPECTED = [(-7, "int8"), (250, "uint8"), (-30000, "int16"), (65000, "uint16"),
            (-2000000000, "int32"), (4000000000, "uint32"), (-9000000000000000000, "int64"),
            (18000000000000000000, "uint64"), (-123456789012, "int64"), (3000000000, "uint32"),
            (-2, "int16")]


def debian_python() -> str:
    """Debian's USDT-probed CPython (python3.11 on 12, python3.13 on 13)."""
    try:
        return usdt_python()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module", params=["gcc", "clang"])
def probes_binary(request, tmp_path_factory) -> str:
    compiler = request.param
    if shutil.which(compiler) is None or not os.path.exists(SDT_H):
        pytest.fail(f"{compiler} or {SDT_H} missing: `make setup` installs them "
                    f"(APT_PACKAGES: {compiler} systemtap-sdt-dev)")
    out = tmp_path_factory.mktemp(f"usdt-{compiler}") / "usdt_probes"
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(out), str(PROBES_C)], check=True)
    return str(out)


class Driver:
    """The C program, driven line by line over its stdin/stdout."""

    def __init__(self, binary: str) -> None:
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def run(self, command: str) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        word, n, ran = self.proc.stdout.readline().split()
        assert word == "ok"
        return int(n), int(ran)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def driver(probes_binary) -> Iterator[Driver]:
    d = Driver(probes_binary)
    try:
        yield d
    finally:
        d.close()


# ---- pure -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, size, signed, kind, register, offset", [
    ("-4@%eax", 4, True, "reg", "rax", 0),
    ("8@%r12", 8, False, "reg", "r12", 0),
    ("1@%r8b", 1, False, "reg", "r8", 0),
    ("-1@%cl", 1, True, "reg", "rcx", 0),
    ("-2@%r9w", 2, True, "reg", "r9", 0),
    ("4@%r11d", 4, False, "reg", "r11", 0),
    ("-4@112(%rsp)", 4, True, "reg_deref", "rsp", 112),
    ("-8@-24(%rbp)", 8, True, "reg_deref", "rbp", -24),
    ("2@(%rdi)", 2, False, "reg_deref", "rdi", 0),
    ("-4@$-17", 4, True, "const", None, -17),
    ("8@$0x10", 8, False, "const", None, 16),
])
def test_arg_spec_decoding(spec, size, signed, kind, register, offset):
    arg = parse_arg(spec)
    assert (arg.size, arg.signed, arg.kind, arg.register, arg.offset) == (size, signed, kind, register, offset)
    assert arg.c_type == f"{'' if signed else 'u'}int{size * 8}_t"


@pytest.mark.parametrize("spec", ["3@%eax", "4@%xmm0", "8@sym(%rip,%rax,8)", "4@"])
def test_bad_arg_specs_are_refused(spec):
    with pytest.raises(UsdtArgError, match="USDT argument spec"):
        parse_arg(spec)


# The probes of Debian's CPython, by version (readelf -n agrees): Debian 13's python3.13 has no
# function__entry/return and no line probe.
DEBIAN_PYTHON_PROBES = {
    "python3.11": {"audit", "gc__start", "gc__done", "function__entry", "function__return",
                   "import__find__load__start", "import__find__load__done", "line"},
    "python3.13": {"audit", "gc__start", "gc__done", "import__find__load__start", "import__find__load__done"},
}


def test_debian_python_notes():
    python = debian_python()
    probes = {p.name: p for p in read_probes(python)}
    name = os.path.basename(python)
    if name in DEBIAN_PYTHON_PROBES:
        assert set(probes) == DEBIAN_PYTHON_PROBES[name], name
    assert {"audit", "gc__start", "gc__done"} <= set(probes)
    assert {p.provider for p in probes.values()} == {"python"}
    for probe in probes.values():
        assert probe.semaphore and probe.semaphore_offset, probe  # CPython guards every probe
        assert probe.offset < probe.address  # a file offset inside the first PT_LOAD segments
    if "function__entry" in probes:
        assert [a.c_type for a in probes["function__entry"].args] == ["uint64_t", "uint64_t", "int32_t"]
    assert [a.c_type for a in probes["audit"].args] == ["uint64_t", "uint64_t"]
    assert [a.c_type for a in probes["import__find__load__done"].args] == ["uint64_t", "int32_t"]


def test_c_program_notes(probes_binary):
    probes = {p.name: p for p in read_probes(probes_binary)}
    assert set(probes) == {"args", "guarded"}
    args = probes["args"].args
    assert [(a.size, a.signed) for a in args[:11]] == [
        (np.dtype(t).itemsize, np.dtype(t).kind == "i") for _, t in EXPECTED]
    assert (args[11].size, args[11].signed) == (8, True)
    assert probes["guarded"].args == ()
    assert probes["guarded"].semaphore != 0


def test_cli_usdt_list_binary_and_pid(probes_binary):
    runner = CliRunner()
    result = runner.invoke(app, ["usdt", "list", probes_binary, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [p["name"] for p in data["probes"]] == ["args", "guarded"]
    assert data["probes"][0]["args"][0]["c_type"] == "int8_t"
    table = runner.invoke(app, ["usdt", "list", probes_binary])
    assert table.exit_code == 0 and "pybpf_test" in table.output and "guarded" in table.output

    proc = subprocess.Popen([debian_python(), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        result = runner.invoke(app, ["usdt", "list", "--pid", str(proc.pid), "--json"])
        assert result.exit_code == 0, result.output
        names = {(p["path"], p["provider"], p["name"]) for p in json.loads(result.output)["probes"]}
        assert (debian_python(), "python", "audit") in names
    finally:
        proc.communicate(b"")
    assert runner.invoke(app, ["usdt", "list"]).exit_code == 2
    missing = runner.invoke(app, ["usdt", "list", "/nonexistent/binary"])
    assert missing.exit_code == 1 and "no such file" in missing.output


# ---- attached -------------------------------------------------------------------------

def test_arguments_read_back_exactly(bundled, kernel, driver):
    with pybpf.open(bundled("usdt_test")) as obj:
        obj.rodata["want_tgid"] = driver.pid
        obj.load()
        with obj.programs["on_args"].attach_usdt(driver.pid, "pybpf_test", "args", cookie=0xC0FFEE) as link:
            assert link.probe.name == "args"
            assert driver.run("args 25") == (25, 0)
        assert int(obj.bss["hits"]) == 25
        assert int(obj.data["arg_cnt"]) == 12
        assert int(obj.bss["arg_err"]) == 0
        assert int(obj.bss["last_cookie"]) == 0xC0FFEE
        raw = np.array(obj.bss["args"])  # int64, sign-extended per spec, as bpf_usdt_arg() gives
        for i, (value, ctype) in enumerate(EXPECTED):
            assert int(raw[i:i + 1].view(np.uint64)[0] if ctype == "uint64" else raw[i]) == value, (i, ctype)
        assert int(raw[11]) == 24  # the round of the last hit
        driver.run("args 5")
        assert int(obj.bss["hits"]) == 25  # detached


def test_semaphore_guarded_probe_fires_only_while_attached(bundled, kernel, driver, probes_binary):
    with pybpf.open(bundled("usdt_test")) as obj:
        obj.rodata["want_tgid"] = driver.pid
        obj.load()
        assert driver.run("guarded 40") == (40, 0)  # semaphore 0: the site's body never runs
        # by path and for every process: the kernel bumps the semaphore in running processes too
        with obj.programs["on_guarded"].attach_usdt(probes_binary, "pybpf_test", "guarded"):
            assert driver.run("guarded 40") == (40, 40)
        assert driver.run("guarded 40") == (40, 0)
        assert int(obj.bss["guarded_hits"]) == 40


def test_missing_probe_lists_what_is_there(bundled, kernel, probes_binary):
    with pybpf.open(bundled("usdt_test")) as obj:
        obj.load()
        program = obj.programs["on_args"]
        with pytest.raises(BpfError, match=r"no USDT probe pybpf_test:nope in .*usdt_probes; "
                                           r"it has: pybpf_test:args, pybpf_test:guarded"):
            program.attach_usdt(probes_binary, "pybpf_test", "nope")
        python = os.path.basename(debian_python())  # an executable name, found in PATH
        with pytest.raises(BpfError, match=rf"no USDT probe python:nope in .*{re.escape(python)}; it has: .*python:audit"):
            program.attach_usdt(python, "python", "nope")
        with pytest.raises(BpfError, match="cannot find the binary 'libnope.so.7' for a USDT probe"):
            program.attach_usdt("libnope.so.7", "x", "y")
        with pytest.raises(BpfError, match="no process with pid"):
            program.attach_usdt(2 ** 22 + 1, "python", "audit")
        with pytest.raises(BpfError, match=r"use attach_usdt\(binary_or_pid, provider, name\)"):
            program.attach()


AUDIT_SCRIPT = """
import sys
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
for i in range(1000):
    sys.audit("app.event", i)
sys.stdout.write("done\\n"); sys.stdout.flush()
sys.stdin.readline()
"""


def test_auto_attach_from_section_counts_python_audit_events(bundled, kernel):
    proc = subprocess.Popen([debian_python(), "-c", AUDIT_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        with pybpf.open(bundled("usdt_test")) as obj:
            obj.rodata["want_tgid"] = proc.pid
            obj.load()
            program = obj.programs["on_audit"]
            # Debian's python3 by its link: the same section on every release
            assert program.section == "usdt//usr/bin/python3:python:audit" and program.auto_attachable
            with program.attach() as link:
                assert os.path.realpath(link.probe.path) == debian_python() and link.pid == -1
                proc.stdin.write("go\n")
                proc.stdin.flush()
                assert proc.stdout.readline() == "done\n"
            assert int(obj.bss["audit_hits"]) == 1000
    finally:
        proc.kill()
        proc.communicate()
