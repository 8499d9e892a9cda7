"""The wheel: built from a clean copy of the source tree, it carries every bundled object and the
include set, leaves the tree as it was, and works installed in a fresh venv with no compiler on
PATH. Where cmake or clang is missing, the build fails and says which, instead of making a wheel
without objects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT

SOURCES = sorted(p.name.removesuffix(".bpf.c") for p in (ROOT / "bpf_src").glob("*.bpf.c"))
_SKIP_NAMES = shutil.ignore_patterns(".git", ".venv", "dist", "*.egg-info", "__pycache__", "*.pyc", "*.bpf.o",
                                     "*.tmp", ".hypothesis", ".mypy_cache", ".pytest_cache", ".ruff_cache")
# what a build leaves in a work tree (git-ignored): the copy is the tree as committed
_BUILT = {ROOT / "build", ROOT / "src" / "pybpf" / "include"}


def _skip(directory: str, names: list[str]) -> set[str]:
    return set(_SKIP_NAMES(directory, names)) | {n for n in names if Path(directory, n) in _BUILT}


def _env(path: str) -> dict[str, str]:
    """A clean environment: no PYTHONPATH (the installed package must be the one imported), the
    machine's pip settings kept (index, certificates), PATH as given."""
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in ("HOME", "LANG", "TMPDIR")}
    env.update(PATH=path, COLUMNS="250")
    return env


def _files(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in tree.rglob("*")}


def _copy_tree(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=_skip)
    return dest


def _pip_wheel(src: Path, out: Path, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(out)],
                          capture_output=True, text=True, timeout=600, env=_env(path))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("wheel")
    src = _copy_tree(base / "src")
    before = _files(src)
    proc = _pip_wheel(src, base / "out", os.environ["PATH"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _files(src) == before, "pip wheel wrote into the source tree"
    wheels = list((base / "out").glob("pybpf-*.whl"))
    assert len(wheels) == 1, wheels
    yield wheels[0]


def test_wheel_carries_objects_and_include_set(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"pybpf/bpf/{s}.bpf.o" for s in SOURCES} <= names
    for header in ("vmlinux.h", "bpf/bpf_helpers.h", "bpf/bpf_helper_defs.h", "bpf/bpf_core_read.h",
                   "bpf/bpf_tracing.h", "bpf/bpf_endian.h"):
        assert f"pybpf/include/{header}" in names, header
    assert zipfile.ZipFile(wheel).read("pybpf/include/vmlinux.h") == (ROOT / "vmlinux/vmlinux.h").read_bytes()
    assert "pybpf/py.typed" in names and "pybpf/toolchain.py" in names


def test_installed_wheel_runs_without_a_compiler(kernel, wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    proc = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-compile", str(wheel)],
                          capture_output=True, text=True, timeout=600, env=_env(os.environ["PATH"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    env = _env(str(bin_dir))  # nothing but the venv: no clang, no cmake, no llvm-strip
    assert shutil.which("clang", path=env["PATH"]) is None and shutil.which("cc", path=env["PATH"]) is None
    demo = subprocess.run([str(bin_dir / "pybpf"), "demo", "--duration", "1", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["total"] > 0

    code = (
        "import os, pybpf\n"
        "with pybpf.open(pybpf.bundled('counters')) as obj:\n"
        "    obj.rodata['want_tgid'] = os.getpid()\n"
        "    obj.load()\n"
        "    with obj.programs['on_getppid'].attach():\n"
        "        os.getppid()\n"
        "    print(int(obj.bss['hits']), pybpf.__file__, pybpf.include_dir())\n"
    )
    run = subprocess.run([str(bin_dir / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    hits, module, include = run.stdout.split()
    assert int(hits) == 1
    assert module.startswith(str(venv)) and include.startswith(str(venv))
    assert Path(include, "vmlinux.h").is_file()

    build = subprocess.run([str(bin_dir / "pybpf"), "build", str(ROOT / "bpf_src" / "counters.bpf.c"),
                            "-o", str(tmp_path / "c.bpf.o")], capture_output=True, text=True, timeout=120,
                           env=env)
    assert build.returncode == 1 and "clang is not installed" in build.stderr, build.stderr


def _bin_with(tmp_path: Path, tools: list[str]) -> str:
    """A PATH of only ``tools`` (symlinked from this machine's PATH)."""
    d = tmp_path / "bin"
    d.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, tool
        (d / tool).symlink_to(found)
    return str(d)


def test_wheel_without_cmake_fails_clearly(tmp_path: Path) -> None:
    src = _copy_tree(tmp_path / "src")
    proc = _pip_wheel(src, tmp_path / "out", _bin_with(tmp_path, []))
    assert proc.returncode != 0
    assert "cmake is not on PATH" in proc.stdout + proc.stderr
    assert not list((tmp_path / "out").glob("*.whl"))


def test_wheel_without_clang_fails_clearly(tmp_path: Path) -> None:
    src = _copy_tree(tmp_path / "src")
    proc = _pip_wheel(src, tmp_path / "out", _bin_with(tmp_path, ["cmake", "make"]))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "clang is needed to build the BPF objects" in out, out
    assert not list((tmp_path / "out").glob("*.whl"))
