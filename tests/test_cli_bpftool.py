"""The CLI takes bpftool's habits: ``prog show id 5``, ``map dump name hist``, ``-j``, plain flags,
``load --pin`` making its directory, ``--disable``, ``--max-entries`` and ``--events``.

Real objects loaded into this kernel; answers are checked against the library.
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pybpf
from pybpf.cli import app
from pybpf.cli.render import normalize_argv
from tests.procs import Proc, pybpf_cmd, unique_binary

runner = CliRunner(env={"COLUMNS": "250", "LINES": "50"})


def run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args: object) -> object:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def loaded(kernel: None, bundled):
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        yield obj


def test_prog_show_by_id_name_tag_pin_and_all(loaded: pybpf.Object, bpffs: str) -> None:
    program = loaded.programs["on_getppid"]
    expected = program.info()
    assert run_json("prog", "show", "id", expected.id, "--json")["tag"] == expected.tag
    assert run_json("prog", "show", expected.id, "-j")["id"] == expected.id  # the bare id still works
    by_name = run_json("prog", "show", "name", "on_getppid", "--json")
    assert expected.id in [p["id"] for p in by_name] and all(p["name"] == "on_getppid" for p in by_name)
    assert [p["id"] for p in run_json("prog", "show", "tag", expected.tag, "-j")].count(expected.id) == 1
    pin = os.path.join(bpffs, "prog")
    program.pin(pin)
    assert run_json("prog", "show", "pinned", pin, "-j")["id"] == expected.id
    everything = run_json("prog", "show", "--json")  # no id: every program
    assert expected.id in [p["id"] for p in everything]
    table = run("prog", "show")
    assert table.exit_code == 0 and "on_getppid" in table.stdout and "programs" in table.stdout
    assert run("prog", "show", "name", "no_such_prog_x").exit_code == 1
    bad = run("prog", "show", "colour", "blue")
    assert bad.exit_code == 2 and "id ID" in bad.output


def test_map_dump_and_show_by_name_id_pin(loaded: pybpf.Object, bpffs: str) -> None:
    pairs = loaded.maps["pairs"]
    pairs[7] = (3, 1, 7)
    by_name = run_json("map", "dump", "name", "pairs", "--json")
    dumps = by_name if isinstance(by_name, list) else [by_name]
    ours = next(d for d in dumps if d["id"] == pairs.id)
    assert ours["entries"] == [{"key": 7, "value": {"count": 3, "parent_tgid": 1, "tgid": 7}}]
    assert run_json("map", "dump", "id", pairs.id, "-j")["entries"] == ours["entries"]
    assert run_json("map", "dump", pairs.id, "-j")["entries"] == ours["entries"]
    pin = os.path.join(bpffs, "pairs")
    pairs.pin(pin)
    assert run_json("map", "dump", "pinned", pin, "-j")["entries"] == ours["entries"]
    assert run_json("map", "show", "pinned", pin, "-j")["id"] == pairs.id
    assert pairs.id in [m["id"] for m in run_json("map", "show", "name", "pairs", "-j")]
    assert pairs.id in [m["id"] for m in run_json("map", "show", "-j")]
    text = run("map", "dump", "name", "pairs")
    assert text.exit_code == 0 and "parent_tgid" in text.stdout
    program_pin = os.path.join(bpffs, "prog")
    loaded.programs["on_getppid"].pin(program_pin)
    wrong = run("map", "show", "pinned", program_pin)
    assert wrong.exit_code == 1 and "pinned program, not a map" in wrong.stderr


def test_global_json_and_plain_flags(loaded: pybpf.Object) -> None:
    expected = loaded.programs["on_getppid"].info()
    assert run_json("-j", "prog", "show", "id", expected.id)["id"] == expected.id
    assert run_json("--json", "map", "show", "id", loaded.maps["pairs"].id)["name"] == "pairs"
    for args in (["prog", "list", "--help"], ["load", "--help"], ["--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "--json" in result.stdout
        assert "<bool>" not in result.stdout, result.stdout
    # --json took a value once (its help said --json <bool>); the console script still accepts it
    assert normalize_argv(["prog", "list", "--json", "true"]) == ["prog", "list", "--json"]
    assert normalize_argv(["prog", "list", "--json", "false"]) == ["prog", "list"]
    assert normalize_argv(["prog", "list", "--json=yes", "--", "--json", "true"]) == \
        ["prog", "list", "--json", "--", "--json", "true"]
    proc = subprocess.run([sys.executable, "-m", "pybpf.cli", "prog", "show", "id", str(expected.id), "--json",
                           "true"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == expected.id


def test_load_pin_makes_dir_disable_and_max_entries(kernel: None, bpffs: str, bundled) -> None:
    target = Path(bpffs) / "tools" / "counters"
    doc = run_json("load", bundled("counters"), "--pin", target, "--disable", "on_raw_sys_enter",
                   "--max-entries", "pairs=77", "--duration", "0.2", "--json")
    assert target.is_dir() and "pairs" in os.listdir(target)
    assert doc["links"] == 2  # three programs, one disabled
    assert "on_raw_sys_enter" not in os.listdir(target) and "on_getppid" in os.listdir(target)
    assert next(m for m in doc["maps"] if m["name"] == "pairs")["max_entries"] == 77
    with pybpf.Map.from_pin(str(target / "pairs")) as pairs:
        assert pairs.max_entries == 77
    bad = run("load", bundled("counters"), "--max-entries", "pairs")
    assert bad.exit_code == 2 and "MAP=N" in bad.output
    unknown = run("load", bundled("counters"), "--disable", "nope")
    assert unknown.exit_code == 1 and "no program 'nope'" in unknown.stderr


def test_load_streams_ring_buffer_events(kernel: None, bundled, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "pybpf.cli", "load", bundled("events_exec"), "--events", "execs",
                             "--duration", "6", "-j"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("loaded events_exec"), line
    children = []
    for _ in range(3):
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        children.append(child.pid)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    ours = [e for e in events if e["pid"] in children]
    assert len(ours) == 3, (children, events[:5])
    assert all(e["filename"] == "/bin/true" and e["comm"] == "true" for e in ours)
    assert set(ours[0]) == {"ts_ns", "pid", "ppid", "uid", "pad", "comm", "filename"}
    assert f"{len(events)} event(s) from ring buffer execs" in err
    # a table for people, and a ring buffer named with its record struct
    with pybpf.open(bundled("events_exec")) as obj:
        from pybpf.cli.run import event_dtype
        assert event_dtype(obj, "execs").names == tuple(ours[0])
        assert event_dtype(obj, "execs", "struct exec_event") == event_dtype(obj, "execs")
    start = time.monotonic()
    result = run("load", bundled("events_exec"), "--events", "execs:exec_event", "--duration", "1.5")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - start >= 1.5
    wrong = run("load", bundled("events_exec"), "--events", "dropped")
    assert wrong.exit_code == 1 and "no map 'dropped'" in wrong.stderr


def test_load_value_size_for_a_stack_map(kernel: None, bundled) -> None:
    """A stack trace map declared without value size (as bcc's tools do) loads with
    ``--value-size``; without it the error names the map and the kernel's reason."""
    obj = bundled("stackmap_settings")
    bare = subprocess.run([sys.executable, "-m", "pybpf.cli", "load", obj, "--duration", "0.1"],
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode == 1 and "creating map 'stackmap'" in bare.stderr, bare.stderr
    assert "value 0 B" in bare.stderr and "Invalid argument" in bare.stderr
    doc = run_json("load", obj, "--value-size", "stackmap=1016", "--max-entries", "stackmap=128",
                   "--set", f"want_tgid={os.getpid()}", "--duration", "0.3", "--json")
    stack = next(m for m in doc["maps"] if m["name"] == "stackmap")
    assert stack["type"] == "stack_trace" and stack["max_entries"] == 128
    bad = run("load", obj, "--value-size", "nomap=8")
    assert bad.exit_code == 2 and "no map 'nomap'" in bad.output and "stackmap" in bad.output
    with pybpf.open(obj) as o:
        o.maps["stackmap"].value_size = 127 * 8
        o.maps["stackmap"].max_entries = 64
        o.load()
        assert o.maps["stackmap"].value_size == 1016


def test_load_events_text_is_one_line_per_event_under_one_header(kernel: None, bundled, tmp_path: Path) -> None:
    """`--events` without -j: one header, then one aligned line per event, however many
    batches the events came in (never a new boxed table per batch)."""
    proc = Proc(pybpf_cmd("load", bundled("events_exec"), "--events", "execs"))
    try:
        proc.wait_for(lambda: any(l.startswith("loaded events_exec") for l in proc.err), what="loaded")
        children: list[int] = []
        for _ in range(4):   # each in a batch of its own: the next exec once this one's line is out
            child = subprocess.Popen(["/bin/true"])
            child.wait()
            children.append(child.pid)
            proc.wait_for(lambda: any(l.split()[1:2] == [str(children[-1])] for l in proc.out[1:]),
                          what=f"the line of exec {children[-1]}")
    finally:
        rc = proc.stop()   # SIGINT, as Ctrl-C: the reader stops and counts
    assert rc == 0, proc.err
    lines, out = proc.out, "\n".join(proc.out)
    assert lines[0].split() == ["ts_ns", "pid", "ppid", "uid", "pad", "comm", "filename"]
    assert not any(ch in out for ch in "┏┃━│╇"), out[:500]          # no boxes
    ours = [l for l in lines[1:] if l.split()[1:2] and int(l.split()[1]) in children]
    assert len(ours) == 4
    start = lines[0].index("comm")
    assert all(l[start:start + 4] == "true" for l in ours)          # aligned under the header
    assert all(l.endswith("/bin/true") for l in ours)
    assert f"{len(lines) - 1} event(s) from ring buffer execs" in proc.err


@pytest.mark.parametrize("events", [False, True], ids=["counts", "events"])
def test_load_stops_on_ctrl_c_when_started_with_sigint_ignored(kernel: None, bundled, events: bool) -> None:
    """A job started in the background of a script inherits SIGINT ignored; like the C tools,
    `pybpf load` sets its own handler, so Ctrl-C still stops it and it prints what it counted."""
    args = ["--events", "execs"] if events else []
    proc = Proc(pybpf_cmd("load", bundled("events_exec"), *args),
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        proc.wait_for(lambda: any(l.startswith("loaded events_exec") for l in proc.err), what="loaded")
    finally:
        rc = proc.stop(signal.SIGINT)
    assert rc == 0, proc.err
    if events:
        assert any(re.fullmatch(r"\d+ event\(s\) from ring buffer execs", l) for l in proc.err), proc.err
    else:
        assert proc.out, "the counts printed at the stop"


def test_load_live_view_shows_struct_keys_as_columns(kernel: None, bundled) -> None:
    # Only the test's own execs reach the map: execsnoop's targ_uid filter, set to a uid nothing else
    # on the machine runs as (other suites exec thousands of programs, and the view shows the top 20).
    uid = 61000 + os.getpid() % 4000
    with tempfile.TemporaryDirectory(prefix="pybpf-live-") as tmp:
        os.chmod(tmp, 0o755)  # the binary runs as that uid
        prog = unique_binary(Path(tmp), "/bin/true", "pbk")
        proc = Proc(pybpf_cmd("load", bundled("execsnoop"), "--set", f"targ_uid={uid}"))
        try:
            proc.wait_for(lambda: any(l.startswith("loaded execsnoop") for l in proc.err), what="loaded")
            for _ in range(3):
                subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", str(prog)],
                               check=True)
        finally:
            rc = proc.stop()   # SIGINT: the view of the maps as they are now (the execs are counted)
    assert rc == 0, proc.err
    out = "\n".join(proc.out)
    assert "map exec_counts" in out and "struct keys, table below" in out
    table_text = out[out.index("map exec_counts"):]
    header = next(l for l in table_text.splitlines() if "comm" in l and "errno_" in l)
    assert "value" in header
    row = next(l for l in table_text.splitlines() if prog.name in l)
    assert [c for c in re.split(r"[│┃|]", row) if c.strip()][-2:] == [" 0 ", " 3 "] or row.split()[-3:-1] == ["0", "3"] \
        or re.search(rf"{prog.name}\s*[│|]\s*0\s*[│|]\s*3\s*[│|]", row), row
