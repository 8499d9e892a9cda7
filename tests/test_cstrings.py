"""C strings in records: text ends at the first NUL wherever pybpf shows it.

bpf_ringbuf_reserve does not zero records, so once a ring wraps a ``char[N]``
field holds the new string, a NUL, then bytes of an older record. The
kernel test makes exactly that happen: a 4 KiB ring, 60 exec records, long
file names first and short ones after the ring has wrapped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pybpf
from pybpf.cli import app
from pybpf.cli.render import jsonable
from pybpf.cli.run import snapshot

ROOT = Path(__file__).resolve().parent.parent
TRUE = "/bin/true"


def _exec_stream_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("exec_stream", ROOT / "examples" / "exec_stream.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cstrings_cuts_every_char_field_at_its_first_nul() -> None:
    dtype = np.dtype([("pid", "u4"), ("comm", "S8"), ("inner", [("tag", "S4"), ("n", "u1")], (2,)),
                      ("names", ("S3", (2,)))])
    records = np.zeros(3, dtype)
    records["pid"] = [1, 2, 3]
    records["comm"] = [b"ab\0stale", b"abcdefgh", b"\0xyz"]
    records["inner"]["tag"] = b"x\0yz"
    records["inner"]["n"] = 7
    records["names"] = b"q\0r"
    before = records.copy()
    clean = pybpf.cstrings(records)
    assert clean["comm"].tolist() == [b"ab", b"abcdefgh", b""]
    assert (clean["inner"]["tag"] == b"x").all() and (clean["inner"]["n"] == 7).all()
    assert (clean["names"] == b"q").all()
    assert clean["pid"].tolist() == [1, 2, 3]
    # the bytes after the NUL are zero, not just hidden
    raw = clean.view(np.uint8).reshape(3, -1)
    assert raw[0, 4:12].tolist() == [ord("a"), ord("b")] + [0] * 6
    assert np.array_equal(records, before)  # a copy by default
    assert pybpf.cstrings(records["comm"]).tolist() == [b"ab", b"abcdefgh", b""]
    assert pybpf.cstrings(records, copy=False) is not None and records["comm"][0] == b"ab"
    frozen = before.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        pybpf.cstrings(frozen, copy=False)
    with pytest.raises(TypeError, match="char arrays"):
        pybpf.cstrings(np.zeros(3, "u4"))
    assert pybpf.cstring(b"/bin/true\0_to_f\0h") == b"/bin/true"
    # rendering: JSON and tables show the C string
    assert jsonable(before[0])["comm"] == "ab"
    assert jsonable(before[0]["names"]) == ["q", "q"]


def test_ring_records_after_wrap(kernel: None, bundled, tmp_path: Path) -> None:
    long_name = tmp_path / ("t" * 48)
    long_name.symlink_to(TRUE)
    wanted = ["./" + long_name.name] * 30 + [TRUE] * 30  # run from tmp_path: 50 of 64 bytes
    seen: dict[int, np.ndarray] = {}
    order: list[int] = []
    with pybpf.open(bundled("events_exec")) as obj:
        obj.maps["execs"].max_entries = 4096  # 36 records of 112 bytes: the ring wraps
        obj.rodata["want_ppid"] = os.getpid()  # only this test's execs: the machine may be busy
        obj.load()
        with obj.programs["on_exec"].attach(), pybpf.RingBuffer(obj.maps["execs"], dtype="exec_event") as rb:
            for path in wanted:
                child = subprocess.Popen([path], cwd=tmp_path)
                child.wait()
                order.append(child.pid)
                for record in rb.read(1.0):
                    seen[int(record["pid"])] = record.copy()
                while child.pid not in seen:  # the record is in the ring once exec returned
                    batch = rb.read(1.0)
                    assert len(batch), f"no exec record for pid {child.pid}"
                    for record in batch:
                        seen[int(record["pid"])] = record.copy()
        dropped = int(obj.bss["dropped"])
        ours = np.array([seen[pid] for pid in order])
    assert len(ours) == 60, dropped
    clean = pybpf.cstrings(ours)
    assert clean["filename"].tolist() == [p.encode() for p in wanted]
    assert all(c == b"true" or c == long_name.name[:15].encode() for c in clean["comm"].tolist())
    # what numpy alone shows: garbage after the NUL in records written over older ones
    raw = ours["filename"].tolist()
    stale = [r for r, p in zip(raw, wanted) if r != p.encode()]
    assert stale, "the ring never put stale bytes after a NUL: the test did not wrap it"
    assert all(r.startswith(b"/bin/true\0") for r in stale)
    # every place pybpf renders text shows the C string
    assert [jsonable(r)["filename"] for r in ours] == wanted
    rows = _exec_stream_module().rows(ours, 0.0)
    assert [row[5] for row in rows] == wanted


def test_cli_shows_text_up_to_the_nul(kernel: None, bundled) -> None:
    with pybpf.open(bundled("counters")) as obj:
        obj.data["greeting"] = b"hi\0left over"
        obj.load()
        assert bytes(obj.data["greeting"][()]) == b"hi\0left over"  # the bytes are really there
        greeting = next(g for g in snapshot(obj)["globals"] if g["name"] == "greeting")
        assert greeting["value"] == "hi"  # `pybpf load` (table and JSON)
        data_map = next(m for name, m in obj.maps.items() if name.endswith(".data"))
        result = CliRunner().invoke(app, ["map", "dump", str(data_map.id), "--json"])
        assert result.exit_code == 0, result.output
        entry = json.loads(result.stdout)["entries"][0]["value"]
        assert entry["greeting"] == "hi"  # `pybpf map dump`
        result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["map", "dump", str(data_map.id)])
        assert '"greeting": "hi"' in result.stdout and "left over" not in result.stdout
    assert os.path.exists(ROOT / "examples" / "exec_stream.py")
