"""``pybpf gen``: typed modules from a bundled object's BTF, checked by mypy and run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pybpf.cli import app
from pybpf.spec import inspect as inspect_object
from pybpf.spec.codegen import generate

ROOT = Path(__file__).resolve().parent.parent

TOOL = """
import os
import sys

import numpy as np

from counters_gen import Counters, Pair

with Counters.open() as skel:
    skel.want_tgid = os.getpid()
    skel.load()
    with skel.on_getppid.attach():
        for _ in range(3):
            os.getppid()
    hits: int = skel.hits
    pair: Pair = skel.pairs[os.getpid()]
    seen: np.ndarray = skel.per_slot_seen
    greeting: bytes = skel.greeting
    print(hits, pair.count, pair.parent_tgid == os.getppid(), int(seen[0]), greeting.rstrip(b"\\0").decode(),
          skel.slots[0], Pair.column(np.zeros(2, Pair.dtype), "tgid").shape)
"""

MISSPELT_FIELD = "    print(pair.cuont)\n"
MISSPELT_MAP = "    print(skel.pairz)\n"
MISSPELT_COLUMN = '    print(Pair.column(np.zeros(1, Pair.dtype), "tigd"))\n'


def _mypy(directory: Path, *names: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MYPYPATH=os.pathsep.join([str(directory), str(ROOT / "src")]))
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                           "--cache-dir", str(directory / ".mypy_cache"), "--follow-imports=silent",
                           *(str(directory / name) for name in names)],
                          cwd=directory, capture_output=True, text=True, env=env, timeout=600)


def test_generated_module_is_deterministic_and_typed(bundled, tmp_path):
    runner = CliRunner()
    obj = bundled("counters")
    first, second = tmp_path / "counters_gen.py", tmp_path / "again.py"
    for out in (first, second):
        result = runner.invoke(app, ["gen", obj, "-o", str(out)])
        assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text() == generate(obj)

    namespace: dict[str, object] = {}
    exec(compile(first.read_text(), str(first), "exec"), namespace)  # noqa: S102 - our own output
    assert namespace["OBJECT_BYTES"] == Path(obj).read_bytes()
    assert namespace["PAIR_DTYPE"] == inspect_object(obj).btf.dtype(inspect_object(obj).btf.find("pair", "struct"))
    counters = namespace["Counters"]
    for attr in ("pairs", "slots", "hits", "greeting", "want_tgid", "on_getppid", "struct_pair"):
        assert hasattr(counters, attr), attr

    (tmp_path / "tool.py").write_text(TOOL)
    bad = {"bad_field.py": (MISSPELT_FIELD, '"Pair" has no attribute "cuont"'),
           "bad_map.py": (MISSPELT_MAP, '"Counters" has no attribute "pairz"'),
           "bad_column.py": (MISSPELT_COLUMN, "incompatible type \"Literal['tigd']\""),}
    for file, (line, _) in bad.items():
        (tmp_path / file).write_text(TOOL + line)
    result = _mypy(tmp_path, "counters_gen.py", "tool.py", *bad)  # one mypy run for all of them
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert not [e for e in errors if not e.startswith("bad_")], result.stdout  # the module and the tool: clean
    for file, (_, needle) in bad.items():
        mine = [e for e in errors if e.startswith(file)]
        assert len(mine) == 1 and needle in mine[0], result.stdout


def test_generated_tool_runs(bundled, kernel, tmp_path):
    (tmp_path / "counters_gen.py").write_text(generate(bundled("counters")))
    (tmp_path / "tool.py").write_text(TOOL)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src")]))
    result = subprocess.run([sys.executable, "tool.py"], cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "3", "True", "3", "hello,", "pybpf", "3", "(2,)"]


@pytest.mark.parametrize("name", ["ringbuf_events", "maps_test", "pyaudit", "events_exec"])
def test_every_record_struct_and_map_gets_a_typed_attribute(bundled, tmp_path, name):
    source = generate(bundled(name), embed=False)
    assert "OBJECT_BYTES: bytes | None = None" in source and repr(os.path.abspath(bundled(name))) in source
    namespace: dict[str, object] = {}
    exec(compile(source, name, "exec"), namespace)  # noqa: S102
    spec = inspect_object(bundled(name))
    cls = next(v for k, v in namespace.items() if isinstance(v, type) and getattr(v, "__doc__", "") and
               k not in ("TypedMap",) and "one typed attribute per map" in (v.__doc__ or ""))
    for m in spec.maps:
        if not m.internal and not m.name.startswith("__"):
            assert hasattr(cls, m.name), m.name
    for g in spec.globals:
        assert hasattr(cls, g.name), g.name
    for p in spec.programs:
        assert hasattr(cls, p.name), p.name
    if name == "ringbuf_events":  # the record behind `struct event *unused_event_type`
        event = namespace["Event"]
        assert namespace["EVENT_DTYPE"].names == ("seq", "tgid", "pid", "comm")
        rec = np.zeros(1, namespace["EVENT_DTYPE"])
        rec["pid"] = 7
        assert event(rec[0]).pid == 7 and event(rec[0]).to_dict()["pid"] == 7
