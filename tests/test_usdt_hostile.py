"""Issue 20 items 11 and 12: ``usdt list`` on damaged binaries, and on a process whose binary a
package upgrade replaced.

11: mutants of Debian's CPython (its section header table and its notes) through the notes
reader and the CLI, each in a forked child (``tests/fuzzing.py``, target ``usdt``): every one
is read or refused with a pybpf error. 12: a running CPython whose file is replaced on disk
still has its probes: read, and attached to, through ``/proc/PID/exe``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from pybpf.distro import usdt_python
from pybpf.spec.usdt import process_probes
from tests import fuzzing

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    fuzzing.warm_up()


@seed(11)
@settings(max_examples=150, database=None, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(fuzzing.cases(("usdt",)))
def test_damaged_binaries_are_read_or_refused_with_a_pybpf_error(case: tuple[str, fuzzing.Mutant]) -> None:
    outcome = fuzzing.run_case(*case, timeout=60)
    assert outcome.kind in (fuzzing.ACCEPTED, fuzzing.TYPED), f"{outcome.kind}: {outcome.detail}"


def _damaged(section: str, field: int, value: int) -> bytes:
    """The binary with one 64-bit field (24: sh_offset, 32: sh_size) of ``section``'s header set."""
    import io
    import struct
    from elftools.elf.elffile import ELFFile
    data = bytearray(fuzzing.usdt_binary())
    elf = ELFFile(io.BytesIO(bytes(data)))
    index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == section)
    struct.pack_into("<Q", data, elf["e_shoff"] + index * elf["e_shentsize"] + field, value)
    return bytes(data)


@pytest.mark.parametrize("section, field, value", [
    (".note.stapsdt", 24, 1 << 63),    # an offset no seek takes (EINVAL / OverflowError)
    (".note.stapsdt", 32, 1 << 62),    # a size a read would try to allocate (MemoryError)
    (".note.stapsdt", 32, 1 << 33),    # past the end of the file
    (".shstrtab", 24, 1 << 63),        # section names read from nowhere (ValueError)
])
def test_the_damage_the_campaign_found_is_a_typed_error(section: str, field: int, value: int) -> None:
    outcome = fuzzing.run_case("usdt", _damaged(section, field, value), timeout=60)
    assert outcome.kind == fuzzing.TYPED, f"{outcome.kind}: {outcome.detail}"


GC = """
import gc, sys
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
for _ in range(25):
    gc.collect()
sys.stdout.write("done\\n"); sys.stdout.flush()
sys.stdin.readline()
"""


def _line(stream, timeout: float = 60) -> str:  # noqa: ANN001
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "timed out"
    return stream.readline()


def test_probes_of_a_binary_replaced_on_disk(kernel, tmp_path: Path):
    binary = tmp_path / f"py-{uuid.uuid4().hex[:8]}"
    shutil.copy(usdt_python(), binary)
    target = subprocess.Popen([str(binary), "-c", GC], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    tool = None
    try:
        assert _line(target.stdout) == "ready\n"
        upgrade = tmp_path / "new"
        shutil.copy("/bin/true", upgrade)           # what dpkg does: the new file, renamed over the old
        os.replace(upgrade, binary)
        listed = subprocess.run([sys.executable, "-m", "pybpf.cli", "usdt", "list", "--pid", str(target.pid),
                                 "--json"], capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
        assert listed.returncode == 0, listed.stderr
        mine = [p for p in json.loads(listed.stdout)["probes"] if p["path"] == str(binary)]
        assert {"gc__start", "gc__done", "audit"} <= {p["name"] for p in mine if p["provider"] == "python"}
        assert all(p.source == f"/proc/{target.pid}/exe" for p in process_probes(target.pid)
                   if p.path == str(binary))
        tool = subprocess.Popen([sys.executable, "-m", "pybpf.cli", "tool", "pygc", "--pid", str(target.pid),
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
        line = _line(tool.stderr)
        assert line.startswith("Tracing "), line + tool.stderr.read()
        target.stdin.write("go\n")
        target.stdin.flush()
        assert _line(target.stdout) == "done\n"
        target.stdin.close()
        target.wait(30)
        out, err = tool.communicate(timeout=60)
        assert tool.returncode == 0, err
        report = json.loads(out.splitlines()[-1])
        assert report["generations"][2]["collections"] >= 25, report  # each gc.collect() is one of generation 2
    finally:
        for proc in (target, tool):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc is not None:
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
