"""``pybpf prog``/``map`` ``list``/``show`` answered without typer (``pybpf.cli.kernelview``):
the same bytes as through the typer commands, none of typer, click, rich, pydantic or numpy
loaded, and everything else (help, a reference that names nothing, ``--debug``) left to typer.

Real programs and maps loaded into this kernel; the machine is shared, so listings are
compared on the lines and entries of our own programs and maps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pybpf
from pybpf.cli import kernelview

from .conftest import ROOT

NEVER = ("typer", "click", "rich", "pydantic", "numpy")


def _pybpf(*argv: object, direct: bool = True) -> subprocess.CompletedProcess[str]:
    """``pybpf ARGV`` in a fresh interpreter (through typer when ``direct`` is False); stderr
    ends with the top-level packages of NEVER it loaded."""
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: sys.stderr.write('\\nMODULES ' + json.dumps(sorted({m.split('.')[0] for m in "
            f"sys.modules if m.split('.')[0] in {NEVER!r}}})) + '\\n'))\n"
            f"sys.argv = ['pybpf', *{[str(a) for a in argv]!r}]\n"
            + ("" if direct else "import pybpf.cli.kernelview as k\nk.run = lambda argv: False\n")
            + "from pybpf.cli import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "250"}, check=False)


def _stable(text: str) -> str:
    """``text`` without the load time in seconds since the epoch: each process derives it from
    its own reading of CLOCK_REALTIME - CLOCK_BOOTTIME, which moves by a microsecond or so (the
    ISO form, to the second, stays)."""
    if text.startswith(("{", "[")):
        doc = json.loads(text)
        for item in doc if isinstance(doc, list) else [doc]:
            item.pop("loaded_at", None)
        return json.dumps(doc)
    return "\n".join(line for line in text.splitlines() if not line.startswith("loaded_at "))


def _split(proc: subprocess.CompletedProcess[str]) -> tuple[str, list[str]]:
    err, _, modules = proc.stderr.rpartition("MODULES ")
    return err.strip(), json.loads(modules)


@pytest.fixture
def loaded(kernel: None, bundled, bpffs: str):
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        obj.programs["on_getppid"].pin(os.path.join(bpffs, "prog"))
        obj.maps["pairs"].pin(os.path.join(bpffs, "pairs"))
        yield obj


def _ours(text: str, ids: set[int]) -> list[str]:
    """The title-less lines of a listing that are about ``ids`` (the header included)."""
    lines = text.splitlines()
    return [lines[1]] + [line for line in lines[2:] if int(line.split()[0]) in ids]


def _rows(text: str) -> list[list[str]]:
    """Every row of a listing, word by word (whatever the column widths)."""
    return [line.split() for line in text.splitlines()[2:]]


def test_the_same_bytes_as_typer_without_it(loaded: pybpf.Object, bpffs: str) -> None:
    program, pairs = loaded.programs["on_getppid"], loaded.maps["pairs"]
    prog_id, map_id = program.info().id, pairs.id
    map_ids = {m.id for m in loaded.maps.values()}
    singles = [
        ("prog", "show", prog_id), ("prog", "show", "id", prog_id), ("prog", "show", "pinned", f"{bpffs}/prog"),
        ("map", "show", map_id), ("map", "show", "id", map_id, "-j"), ("-j", "map", "show", "pinned", f"{bpffs}/pairs"),
        ("prog", "show", "id", prog_id, "--json"), ("--json", "prog", "show", prog_id),
    ]
    for argv in singles:
        direct, typer_path = _pybpf(*argv), _pybpf(*argv, direct=False)
        assert direct.returncode == typer_path.returncode == 0, (argv, direct.stderr, typer_path.stderr)
        assert _stable(direct.stdout) == _stable(typer_path.stdout), argv
        assert _split(direct)[1] == [], argv   # none of typer, click, rich, pydantic, numpy
        assert "typer" in _split(typer_path)[1]
        if "-j" in argv or "--json" in argv:
            assert json.loads(direct.stdout)["id"] in (prog_id, map_id)
        else:
            assert direct.stdout.splitlines()[0].startswith(("program ", "map "))
    assert _pybpf("prog", "show", prog_id).stdout.splitlines()[0] == f"program {prog_id} on_getppid"

    listings = [(("prog", "show", "name", "on_getppid"), {prog_id}), (("prog", "list"), {prog_id}),
                (("prog", "show", "tag", program.info().tag), {prog_id}), (("map", "list"), map_ids),
                (("map", "show"), map_ids), (("map", "show", "name", "pairs"), {map_id})]
    for argv, ids in listings:
        # Column widths come from every row, other processes' included: programs and maps come and
        # go between the two runs on a shared machine, so the pair is taken again until both list
        # the same rows; then the whole listing must be the same bytes.
        for _ in range(10):
            direct, typer_path = _pybpf(*argv), _pybpf(*argv, direct=False)
            assert direct.returncode == typer_path.returncode == 0, (argv, direct.stderr, typer_path.stderr)
            if _rows(direct.stdout) == _rows(typer_path.stdout):
                assert direct.stdout == typer_path.stdout, argv
                break
        assert _split(direct)[1] == []
        mine = _ours(direct.stdout, ids)
        assert [line.split() for line in mine] == [line.split() for line in _ours(typer_path.stdout, ids)], argv
        assert len(mine) == 1 + len(ids), direct.stdout
        title = direct.stdout.splitlines()[0]
        assert title.endswith(" programs" if argv[0] == "prog" else " maps") and title.split()[0].isdigit()
        for line in mine[1:]:  # aligned under the header
            assert line.index(line.split()[1]) == mine[0].index("type")
        as_json = json.loads(_pybpf(*argv, "-j").stdout)
        assert ids <= {doc["id"] for doc in as_json}
    row = next(line for line in _pybpf("prog", "list").stdout.splitlines()[2:] if int(line.split()[0]) == prog_id)
    assert row.split()[1:4] == ["tracepoint", "on_getppid", program.info().tag]


def test_anything_else_is_typers(loaded: pybpf.Object) -> None:
    prog_id = loaded.programs["on_getppid"].info().id
    for argv, code, words in ((("prog", "show", "colour", "blue"), 2, "id ID"),
                              (("prog", "show", "id", "0"), 2, "positive number"),
                              (("map", "list", "extra"), 2, "extra"),
                              (("prog", "show", "--help"), 0, "Programs by id, name, tag or pin"),
                              (("prog", "show", "--bogus"), 2, "--bogus")):
        proc = _pybpf(*argv)
        err, modules = _split(proc)
        assert proc.returncode == code, (argv, proc.stdout, err)
        assert words in proc.stdout + err, (argv, proc.stdout, err)
        assert "typer" in modules, argv
    debug = _pybpf("--debug", "prog", "show", prog_id)
    assert debug.returncode == 0 and "typer" in _split(debug)[1]
    assert _stable(debug.stdout) == _stable(_pybpf("prog", "show", prog_id).stdout)


def test_errors_read_as_through_typer(loaded: pybpf.Object, bpffs: str) -> None:
    missing = 2**31 - 7
    for argv in (("prog", "show", missing), ("map", "show", "id", missing), ("map", "show", "pinned", f"{bpffs}/prog"),
                 ("prog", "show", "name", "no_such_prog_x"), ("map", "show", "pinned", f"{bpffs}/nothing")):
        direct, typer_path = _pybpf(*argv), _pybpf(*argv, direct=False)
        assert direct.returncode == typer_path.returncode == 1, argv
        assert _split(direct)[0] == _split(typer_path)[0], argv
        assert _split(direct)[0].startswith("error: ") and "Traceback" not in direct.stderr
    assert "pinned program, not a map" in _pybpf("map", "show", "pinned", f"{bpffs}/prog").stderr


def test_reference_rules() -> None:
    """The words bpftool takes, read without the kernel."""
    assert kernelview.reference([], kernelview.PROG_KINDS, "program") is None
    assert kernelview.reference(["12"], kernelview.PROG_KINDS, "program") == ("id", "12")
    assert kernelview.reference(["tag", "AB"], kernelview.PROG_KINDS, "program") == ("tag", "AB")
    for words in (["tag", "ab"], ["x"], ["id", "-1"], ["id", "0"], ["1", "2"], ["name"]):
        with pytest.raises(kernelview.BadReference):
            kernelview.reference(words, kernelview.MAP_KINDS, "map")
    assert not kernelview.run(["prog"]) and not kernelview.run(["btf", "dump"]) and not kernelview.run(["--debug"])
    assert not kernelview.run(["map", "dump", "1"]) and not kernelview.run(["prog", "show", "--", "1"])


def test_text_table_escapes_and_aligns() -> None:
    text = kernelview.text_table("2 things\x1b[2J", ["id", "name"], [(1, "a\x1b]0;x\x07"), (22, None), (3, [4, 5])])
    lines = text.splitlines()
    assert lines[0] == "2 things\\x1b[2J"
    assert lines[1] == "id  name"
    assert lines[2] == "1   a\\x1b]0;x\\x07" and lines[3] == "22  -" and lines[4] == "3   4,5"
