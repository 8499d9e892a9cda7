"""Compiling BPF C (``pybpf.build``, ``pybpf build``) and the CO-RE header, on any kernel build.

Nothing here depends on the exact running kernel: the header generator is checked for
determinism, its header for *this* kernel must compile every bundled program, and objects built
from the *committed* header must load here (CO-RE). ``pybpf.build`` must give byte for byte what
the project's CMake build gives, so the two sets of flags cannot drift apart.
"""

from __future__ import annotations

import os
import shutil
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pybpf
from pybpf import cheader
from pybpf.errors import BuildError, CompilerNotFoundError
from pybpf.spec.elf import ObjectSpec
from pybpf.toolchain import cflags, find_clang, target_arch

from .conftest import ROOT, needs_kernel

SOURCES = sorted((ROOT / "bpf_src").glob("*.bpf.c"))
# the sources CMake builds with clang >= 19 (BPF arena pointers)
CLANG19_SOURCES = set(re.search(r"set\(CLANG19_SOURCES ([^)]*)\)", (ROOT / "CMakeLists.txt").read_text())[1].split())


def _clang19() -> str:
    for name in ("clang-19", "clang-20", "clang-21", "clang"):
        path = shutil.which(name)
        if path and int(re.search(r"clang version (\d+)", subprocess.run([path, "--version"], capture_output=True,
                                                                         text=True).stdout)[1]) >= 19:
            return path
    pytest.fail("no clang >= 19 (make setup installs clang-19 on Debian 12)")
# Objects whose load is meant to fail (refused program types, a verifier rejection): tested elsewhere.
MEANT_TO_FAIL = {"refused", "rejected", "upgrade_count_bad", "stackmap_settings"}

ATOMIC = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

long counter = 0;
long last = 0;

SEC("tp/syscalls/sys_enter_getppid")
int bump(void *ctx)
{
    last = __sync_fetch_and_add(&counter, 1);   /* result used: needs -mcpu=v3 on clang 14 */
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def _stem(src: Path) -> str:
    return src.name.removesuffix(".bpf.c")


def _kernel_btf() -> str:
    if not os.path.exists(cheader.KERNEL_BTF):
        needs_kernel("no kernel BTF at /sys/kernel/btf/vmlinux")
    return cheader.KERNEL_BTF


def test_flags_are_the_projects() -> None:
    flags = cflags()
    assert flags[:6] == ["-g", "-O2", "-target", "bpf", "-mcpu=v3", f"-D__TARGET_ARCH_{target_arch()}"]
    assert f"-I{pybpf.include_dir()}" in flags
    assert target_arch("x86_64") == "x86" and target_arch("aarch64") == "arm64"
    with pytest.raises(ValueError, match="target arch"):
        target_arch("pdp11")


def test_include_dir_is_the_committed_header_and_libbpfs_headers() -> None:
    inc = Path(pybpf.include_dir())
    assert (inc / "vmlinux.h").read_bytes() == (ROOT / "vmlinux" / "vmlinux.h").read_bytes()
    for name in ("bpf_helpers.h", "bpf_helper_defs.h", "bpf_core_read.h", "bpf_tracing.h", "bpf_endian.h"):
        assert (inc / "bpf" / name).is_file(), name
    for header in (ROOT / "bpf_src").glob("*.h"):
        assert (inc / header.name).read_bytes() == header.read_bytes()


def test_build_gives_the_cmake_objects(tmp_path: Path, bundled) -> None:
    """Every bundled object (CMake, from the committed header) is what pybpf.build makes."""
    def one(src: Path) -> tuple[str, bytes]:
        clang = _clang19() if src.name in CLANG19_SOURCES else None
        return _stem(src), pybpf.build(src, tmp_path / f"{_stem(src)}.bpf.o", clang=clang).read_bytes()

    with ThreadPoolExecutor(2) as pool:
        built = dict(pool.map(one, SOURCES))
    assert sorted(built) == pybpf.bundled_names()
    for name, data in built.items():
        assert data == Path(bundled(name)).read_bytes(), name
    assert not list(tmp_path.glob(".*.tmp"))


def test_build_does_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same object from any working directory: Debian 13's clang 19 numbered execsnoop's .BTF
    types differently in CMake's build/ than elsewhere until the flags fixed the compilation dir."""
    src = ROOT / "bpf_src" / "execsnoop.bpf.c"
    built = []
    for i, cwd in enumerate((ROOT / "build", tmp_path / "a" / "much" / "deeper" / "directory", Path("/"))):
        cwd.mkdir(parents=True, exist_ok=True)
        monkeypatch.chdir(cwd)
        built.append(pybpf.build(src, tmp_path / f"execsnoop{i}.bpf.o").read_bytes())
    assert built[0] == built[1] == built[2]
    assert b"execsnoop.bpf.c" in built[0]   # the line info names the source file, as before


def test_header_generator_is_deterministic() -> None:
    path = _kernel_btf()
    first = cheader.dump_c(path)
    second = cheader.dump_c(path)
    assert first == second
    assert first.startswith("#ifndef __VMLINUX_H__") and first.endswith("#endif /* __VMLINUX_H__ */\n")
    assert "struct task_struct {" in first
    proc = subprocess.run([sys.executable, "-m", "pybpf.cli", "btf", "dump", "--kernel"],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == first.encode()


def test_running_kernels_header_compiles_every_bundled_program(tmp_path: Path) -> None:
    (tmp_path / "vmlinux.h").write_text(cheader.dump_c(_kernel_btf()))
    out = tmp_path / "out"
    out.mkdir()

    def one(src: Path) -> Path:
        clang = _clang19() if src.name in CLANG19_SOURCES else None
        return pybpf.build(src, out / f"{_stem(src)}.bpf.o", include_dirs=[tmp_path], clang=clang)

    with ThreadPoolExecutor(2) as pool:
        objects = list(pool.map(one, SOURCES))
    assert len(objects) == len(SOURCES) > 0
    for obj in objects:
        assert ObjectSpec.from_file(str(obj)).programs, obj


@pytest.mark.parametrize("name", [_stem(s) for s in SOURCES if _stem(s) not in MEANT_TO_FAIL])
def test_objects_from_the_committed_header_load_here(kernel, bundled, name: str) -> None:
    with pybpf.open(bundled(name)) as obj:
        try:
            obj.load()
        except pybpf.NotSupportedError as exc:  # a kernel that refuses BPF arenas says so (tests/test_arena.py)
            assert exc.feature == "arena" and "does not allow BPF arena maps" in str(exc), exc
            return
        assert all(p.fd >= 0 for p in obj.programs.values() if p.autoload)


def test_mcpu_v3_atomics_build_and_run(kernel, tmp_path: Path) -> None:
    src = tmp_path / "atomic.bpf.c"
    src.write_text(ATOMIC)
    obj_path = pybpf.build(src)
    assert obj_path == tmp_path / "atomic.bpf.o"
    with pybpf.open(str(obj_path)) as obj:
        obj.load()
        with obj.programs["bump"].attach():
            for _ in range(3):
                os.getppid()
        assert int(obj.bss["counter"]) >= 3
        assert int(obj.bss["last"]) >= 2


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpf.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_cli_build_writes_the_object(tmp_path: Path) -> None:
    src = tmp_path / "atomic.bpf.c"
    src.write_text(ATOMIC)
    proc = _cli("build", str(src), "-o", str(tmp_path / "x.bpf.o"))
    assert proc.returncode == 0, proc.stderr
    data = (tmp_path / "x.bpf.o").read_bytes()
    assert data[:4] == b"\x7fELF"
    assert b".BTF.ext" in data and b".debug_info" not in data  # CO-RE info kept, DWARF stripped


def test_cli_build_shows_clangs_diagnostics(tmp_path: Path) -> None:
    src = tmp_path / "broken.bpf.c"
    src.write_text('#include "vmlinux.h"\nint f(void) { return undeclared_thing; }\n')
    proc = _cli("build", str(src))
    assert proc.returncode == 1
    assert "undeclared_thing" in proc.stderr and "error:" in proc.stderr
    assert "clang could not compile" in proc.stderr
    assert not (tmp_path / "broken.bpf.o").exists()
    with pytest.raises(BuildError) as info:
        pybpf.build(src)
    assert "undeclared_thing" in info.value.stderr


def test_cli_build_without_clang_says_so(tmp_path: Path) -> None:
    src = tmp_path / "atomic.bpf.c"
    src.write_text(ATOMIC)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))
    env.pop("PYBPF_CLANG", None)
    proc = _cli("build", str(src), env=env)
    assert proc.returncode == 1, proc.stderr
    assert "clang is not installed" in proc.stderr and "Traceback" not in proc.stderr
    old_path = os.environ["PATH"]
    os.environ["PATH"] = str(empty)
    try:
        with pytest.raises(CompilerNotFoundError) as info:
            pybpf.build(src)
        assert info.value.tool == "clang" and isinstance(info.value, FileNotFoundError)
    finally:
        os.environ["PATH"] = old_path
    assert find_clang()  # back on PATH
