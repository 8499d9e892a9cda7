"""``pybpf btf dump``: the C header is formatted by libbpf in C (no Python call per fragment);
the JSON dump is encoded from the raw records, the same data as the decoded types, and stays
small in memory on the kernel's ~130k types. (Speed itself is a benchmark, not a test:
benchmarks/btf_dump_bench.py times both next to bpftool in one run.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pybpf
from pybpf import cheader
from pybpf.btf.tojson import iter_type_json, type_json_text
from pybpf.btf.types import Btf
from pybpf.cli.btf import type_json
from pybpf.errors import ObjectFormatError

from .conftest import needs_kernel


def _kernel_btf() -> str:
    if not os.path.exists(cheader.KERNEL_BTF):
        needs_kernel("no kernel BTF at /sys/kernel/btf/vmlinux")
    return cheader.KERNEL_BTF


def test_c_dump_makes_no_python_call_per_fragment() -> None:
    """libbpf prints vmlinux.h in ~10^6 fragments; each used to be a Python callback."""
    path = _kernel_btf()
    cheader.dump_c(pybpf.bundled("counters"))  # first use loads the libbpf binding: not counted
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        text = cheader.dump_c(path)
    finally:
        sys.setprofile(None)
    assert "struct task_struct {" in text
    assert calls < 1000, f"{calls} Python calls while dumping"


@pytest.mark.parametrize("name", ["counters", "probes", "events_exec", "maps_test"])
def test_json_text_is_the_decoded_types(bundled, name: str) -> None:
    btf = Btf.from_file(bundled(name))
    ids = range(len(btf))
    assert [json.loads(t) for t in iter_type_json(btf, ids)] == [type_json(btf[i]) for i in ids]


# The JSON encoder against the decoder on every type of every kernel of the corpus is checked in
# tests/test_btf.py::test_every_kernel_btf_matches_bpftool_and_libbpfs_c_dump (one decoding pass).


def test_json_text_refuses_what_decoding_refuses(bundled) -> None:
    """A copy of an object's BTF whose string section is cut to its leading NUL: every name
    offset is out of range, and both encoders say so in the same words."""
    btf = Btf.from_file(bundled("counters"))
    blob = bytearray(btf._data)
    hdr_len = int.from_bytes(blob[4:8], "little")
    str_off = int.from_bytes(blob[16:20], "little")
    blob[20:24] = (1).to_bytes(4, "little")
    broken = Btf.from_bytes(bytes(blob[:hdr_len + str_off + 1]), name="cut")
    named = next(i for i in range(1, len(btf)) if btf[i].name)
    with pytest.raises(ObjectFormatError) as ref:
        broken[named]
    with pytest.raises(ObjectFormatError) as ours:
        type_json_text(broken, named)
    assert str(ours.value) == str(ref.value)


def test_kernel_json_dump_is_complete_and_small(tmp_path: Path) -> None:
    """The whole kernel as JSON, through the CLI, in well under the 200 MB the issue allows
    (the dict-per-type dump took ~580 MB)."""
    path = _kernel_btf()
    out = tmp_path / "btf.json"
    code = ("import sys\nfrom pybpf.cli import app\n"
            f"sys.stdout = open({str(out)!r}, 'w')\n"
            "try:\n    app(['btf', 'dump', '--kernel', '--format', 'json'])\n"
            "except SystemExit as e:\n    code = e.code\n"
            "sys.stdout.close()\n"
            # VmHWM: this process's own peak (ru_maxrss would carry pytest's across fork+exec)
            "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
            "print(code, hwm, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    code_s, maxrss_kb = proc.stderr.split()[-2:]
    assert code_s in ("0", "None"), proc.stderr
    assert int(maxrss_kb) < 200 * 1024, f"peak RSS {int(maxrss_kb) // 1024} MB"
    doc = json.loads(out.read_text())
    btf = Btf.kernel()
    assert doc["file"] == path and len(doc["types"]) == len(btf) - 1
    for i in (1, len(btf) // 3, len(btf) // 2, len(btf) - 1):
        assert doc["types"][i - 1] == type_json(btf[i])
