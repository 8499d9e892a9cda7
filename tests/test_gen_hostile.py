"""Issue 20 item 1: ``pybpf gen`` keeps every name of a hostile object as data.

The objects are the bundled ``counters`` with names rewritten (``tests.mutate.rename``: BTF
strings and ELF symbols) to what a hostile object can hold. The generated module must import
without running any of it, every name must reach the code only as a string literal, every
identifier must be a valid, unique, non-dunder ASCII one recorded in ``NAMES``, and every map,
global, program and record field must be reachable and round-trip.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import keyword
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings

import pybpf
from pybpf.spec.codegen import PyNames, generate, py_identifier
from tests.fuzzing import (CANARY, PAYLOAD, RENAMED_GLOBALS, RENAMED_MAPS, RENAMED_PROGRAMS, Mutant,
                           hostile_objects, renamed_counters)

ROOT = Path(__file__).resolve().parent.parent
MAPS, GLOBALS, PROGRAMS = RENAMED_MAPS, RENAMED_GLOBALS, RENAMED_PROGRAMS
hostile = renamed_counters


def _seed() -> bytes:
    return Path(pybpf.bundled("counters")).read_bytes()


def load_module(source: str, directory: str) -> ModuleType:
    """Import ``source`` as a module file, as ``import m`` would."""
    name = "gen_" + uuid.uuid4().hex
    path = os.path.join(directory, name + ".py")
    Path(path).write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _identifiers(source: str) -> set[str]:
    """Every identifier the module's code defines or uses (not the text inside literals)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
    return found


def _sample(dtype: np.dtype, i: int) -> Any:
    """A value of ``dtype`` that differs per field (``i``) and from zero."""
    if dtype.subdtype is not None:
        return np.full(dtype.shape, _sample(dtype.base, i), dtype.base)
    if dtype.kind in "iu":
        return (i + 1) % 100 + 1
    if dtype.kind == "f":
        return float(i) + 0.5
    if dtype.kind == "b":
        return True
    return bytes([65 + i % 26]) * dtype.itemsize


def check_module(source: str, directory: str) -> ModuleType:
    """Import the generated module and use every part of it (no kernel: the object stays open)."""
    tree_names = _identifiers(source)
    for ident in tree_names:
        assert ident.isascii() and ident.isidentifier(), ident
    os.environ.pop(CANARY, None)
    module = load_module(source, directory)
    assert CANARY not in os.environ, "importing the generated module ran object data"
    cls = getattr(module, module.__all__[0])
    records = [getattr(module, name) for name in module.__all__[2:]]
    # the class's own machinery is the generated one, never shadowed by a name from the object
    for method in ("open", "load", "attach", "close", "__init__", "__enter__", "__exit__"):
        assert getattr(cls, method).__qualname__ == f"{cls.__name__}.{method}", method
    assert cls.__getattribute__ is object.__getattribute__ and cls.__class__ is type
    assert module.TypedMap.__name__ == "TypedMap" and module.np is np and module.pybpf is pybpf
    for attr in list(cls.NAMES) + [a for r in records for a in r.NAMES]:
        assert attr.isascii() and attr.isidentifier() and not keyword.iskeyword(attr), attr
        assert not attr.startswith("__"), attr
        assert attr in tree_names
    for record in records:
        check_record(record)
    with cls.open() as skel:
        obj = skel.obj
        seen: dict[str, set[str]] = {"map": set(), "program": set(), "global": set()}
        for attr, name in cls.NAMES.items():
            value = getattr(skel, attr)
            if isinstance(value, type):
                assert value in records and getattr(module, value.__name__) is value
            elif isinstance(value, pybpf.Program):
                assert value is obj.programs[name]
                seen["program"].add(name)
            elif isinstance(value, (pybpf.Map, module.TypedMap)):
                assert getattr(value, "raw", value) is obj.maps[name]
                seen["map"].add(name)
            else:
                check_global(skel, attr, name, value)
                seen["global"].add(name)
        assert seen["program"] == set(obj.programs)
        assert seen["map"] == {m.name for m in obj.file_spec.maps if not m.internal and not m.name.startswith("__")}
        assert seen["global"] == {v for s in (obj.bss, obj.data, obj.rodata) for v in s}
    assert CANARY not in os.environ, "using the generated module ran object data"
    return module


def _section_of(obj: pybpf.Object, name: str) -> pybpf.Section:
    return next(s for s in (obj.bss, obj.data, obj.rodata) if name in s)


def check_global(skel: Any, attr: str, name: str, value: Any) -> None:
    section = _section_of(skel.obj, name)
    assert np.array_equal(np.asarray(value), np.asarray(section[name])), name
    if getattr(type(skel), attr).fset is None:
        return
    dtype = section.dtype_of(name)
    new = _sample(dtype, 7)
    setattr(skel, attr, new)
    if dtype.kind == "S":
        assert bytes(section[name][()]) == new
    else:
        assert np.array_equal(np.asarray(section[name]), np.asarray(new)), name
    assert np.array_equal(np.asarray(getattr(skel, attr)), np.asarray(section[name])), name


def check_record(record: type) -> None:
    dtype = record.dtype  # type: ignore[attr-defined]
    assert record.FIELDS == dtype.names  # type: ignore[attr-defined]
    assert sorted(record.NAMES.values()) == sorted(dtype.names)  # type: ignore[attr-defined]
    rows = np.zeros(2, dtype)
    rec = record(rows[0])
    for i, (attr, name) in enumerate(record.NAMES.items()):  # type: ignore[attr-defined]
        fdt = dtype.fields[name][0]
        if fdt.names is not None:
            nested = getattr(rec, attr)
            assert type(nested).dtype == fdt
            continue
        value = _sample(fdt, i)
        setattr(rec, attr, value)
        assert np.array_equal(np.asarray(rows[0][name]), np.asarray(value)), name
        assert np.array_equal(np.asarray(getattr(rec, attr)), np.asarray(value)), name
    as_dict = rec.to_dict()
    assert tuple(as_dict) == dtype.names  # every field, under its own name: none dropped
    assert not rows[1].tobytes().strip(b"\0")  # the other record untouched


# ---- the reproducers --------------------------------------------------------------

INJECTION = 'x""";__import__("os").system("touch PWNED");"""'


def test_struct_name_closing_the_docstring_runs_nothing_at_import(tmp_path):
    obj = tmp_path / "hostile.bpf.o"
    obj.write_bytes(hostile(struct=INJECTION))
    from typer.testing import CliRunner
    from pybpf.cli import app
    result = CliRunner().invoke(app, ["gen", str(obj), "-o", str(tmp_path / "m.py")])
    assert result.exit_code == 0, result.output
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src")]))
    done = subprocess.run([sys.executable, "-c", "import m; print(m.__all__)"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "PWNED").exists()
    assert INJECTION in (tmp_path / "m.py").read_text().replace('\\"', '"')  # kept, as data


@pytest.mark.parametrize("what", ["global", "map", "program"])
def test_names_of_globals_maps_and_programs_stay_data(tmp_path, what):
    payload = 'x""";' + PAYLOAD + ';"""'
    data = {"global": lambda: hostile(names={"hits": payload}),
            "map": lambda: hostile(names={"pairs": payload}),
            "program": lambda: hostile(programs={"on_getppid": payload + "\n" + PAYLOAD})}[what]()
    module = check_module(generate(data, name="counters"), str(tmp_path))
    assert any(name.startswith(payload) for name in module.Counters.NAMES.values())


def test_name_clashes_make_distinct_working_members(tmp_path):
    data = hostile(struct="typed_map", members={"count": "class", "tgid": "class_"},
                   names={"hits": "__getattribute__", "pairs": "counters"},
                   programs={"on_getppid": "__init__", "on_raw_sys_enter": "ｌｏａｄ", "on_btf_sys_enter": "x½"})
    module = check_module(generate(data, name="counters"), str(tmp_path))
    cls = module.Counters
    names = cls.NAMES
    assert sorted(names.values()) == sorted(["typed_map", "__getattribute__", "counters", "__init__", "ｌｏａｄ",
                                             "x½", "slots", *GLOBALS[1:]])
    assert module.TypedMap.__module__ == module.__name__  # not the record class
    record = next(getattr(module, n) for n in module.__all__[2:])
    assert record.__name__ not in ("TypedMap", "Counters") and set(record.FIELDS) == {"class", "parent_tgid",
                                                                                      "class_"}
    # a struct named like the object gets its own class
    data = hostile(struct="counters")
    module = check_module(generate(data, name="counters"), str(tmp_path))
    assert module.__all__[0] == "Counters" and module.__all__[2] != "Counters"


def test_hostile_module_is_mypy_clean(tmp_path):
    data = hostile(struct=INJECTION, members={"count": "class", "tgid": "class_", "parent_tgid": "int"},
                   names={"hits": "__getattribute__", "pairs": "typed_map", "slots": "Pair", "greeting": "property"},
                   programs={"on_getppid": "__init__", "on_raw_sys_enter": "ｌｏａｄ", "on_btf_sys_enter": "x½"})
    (tmp_path / "hostile_gen.py").write_text(generate(data, name="counters"))
    env = dict(os.environ, MYPYPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src")]))
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
                             str(tmp_path / ".mypy_cache"), "--follow-imports=silent", "hostile_gen.py"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_identifier_function():
    taken: set[str] = set()
    made = []
    for name in ["load", "ｌｏａｄ", "__init__", "__x", "class", "class_", "x½", "", "_", "__", "0day", "a-b", "a b",
                 "None", "Ünïcode", "\x1b[2J", "a" * 3]:
        ident = py_identifier(name, taken)
        taken.add(ident)
        made.append(ident)
        assert ident.isascii() and ident.isidentifier() and not keyword.iskeyword(ident)
        assert not ident.startswith("__")
    assert len(set(made)) == len(made)
    assert made[:2] == ["load", "load_2"]
    names = PyNames(["Counters"])
    assert names.add("counters", "camel") == "Counters2" and names.names == {"Counters2": "counters"}
    assert py_identifier("task_info", style="camel") == "TaskInfo"
    assert py_identifier("TaskInfo", style="const") == "TASK_INFO"
    with pytest.raises(ValueError, match="--class"):
        generate(_seed(), class_name="__init__")
    with pytest.raises(ValueError, match="--class"):
        generate(_seed(), class_name="TypedMap")


# ---- any names ------------------------------------------------------------------------------

@seed(20)
@settings(max_examples=int(os.environ.get("PYBPF_GEN_EXAMPLES", "60")), database=None, deadline=None,
          derandomize=True, suppress_health_check=list(HealthCheck))
@given(hostile_objects())
def test_any_names_stay_data_and_round_trip(case: tuple[Mutant, str]):
    recipe, object_name = case
    with tempfile.TemporaryDirectory(prefix="pybpf-gen-") as directory:
        module = check_module(generate(bytes(recipe), name=object_name), directory)
        assert module.__doc__ is not None and repr(object_name) in module.__doc__
        assert 0 < len(module.OBJECT_NAME.encode()) <= 15  # as libbpf keeps it, cut between characters
    assert not hasattr(builtins, CANARY)
