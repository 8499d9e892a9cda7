"""Compiling BPF C into CO-RE objects with pybpf's own flags, and the include set to compile against.

``pybpf build X.bpf.c`` and :func:`build` run what the project's CMake build runs for every
bundled program::

    clang -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_<arch> -Wall -Wno-unused-function \\
          -fdebug-compilation-dir=. -I <pybpf.include_dir()> -idirafter /usr/include/<multiarch> \\
          -c X.bpf.c -o X.bpf.o
    llvm-strip -g X.bpf.o

``-mcpu=v3`` lets clang 14 emit atomics whose result is used (``__sync_fetch_and_add``; without
it: "Invalid usage of the XADD return value"); ``-fdebug-compilation-dir=.`` makes the object
independent of the directory clang runs in (Debian 13's clang 19 numbers some ``.BTF`` types
differently in another working directory, and CMake compiles in ``build/``); ``llvm-strip -g``
drops DWARF and keeps ``.BTF`` and ``.BTF.ext``, which CO-RE needs. :func:`include_dir` holds
the committed ``vmlinux.h``, libbpf's BPF-side headers (``<bpf/bpf_helpers.h>``,
``bpf_core_read.h``, ``bpf_tracing.h``, ``bpf_endian.h``, ``usdt.bpf.h``) and the project's
shared BPF headers; it ships in the wheel, so an installed pybpf compiles a user's program with
clang alone.

Only the standard library and :mod:`pybpf.errors`: no libbpf, no kernel.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pybpf.errors import BuildError, CompilerNotFoundError

__all__ = ["build", "cflags", "find_clang", "find_strip", "include_dir", "target_arch"]

_PACKAGE = Path(__file__).resolve().parent

# platform.machine() -> (__TARGET_ARCH_<x> as bpf_tracing.h spells it, Debian multiarch tuple)
_ARCHES: dict[str, tuple[str, str]] = {
    "x86_64": ("x86", "x86_64-linux-gnu"),
    "amd64": ("x86", "x86_64-linux-gnu"),
    "i386": ("x86", "i386-linux-gnu"),
    "i686": ("x86", "i386-linux-gnu"),
    "aarch64": ("arm64", "aarch64-linux-gnu"),
    "arm64": ("arm64", "aarch64-linux-gnu"),
    "armv7l": ("arm", "arm-linux-gnueabihf"),
    "s390x": ("s390", "s390x-linux-gnu"),
    "ppc64le": ("powerpc", "powerpc64le-linux-gnu"),
    "riscv64": ("riscv", "riscv64-linux-gnu"),
    "loongarch64": ("loongarch", "loongarch64-linux-gnu"),
    "mips64": ("mips", "mips64el-linux-gnuabi64"),
}
_CLANGS = ("clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14")
_STRIPS = ("llvm-strip", "llvm-strip-19", "llvm-strip-18", "llvm-strip-17", "llvm-strip-16",
           "llvm-strip-15", "llvm-strip-14")


def include_dir() -> str:
    """The directory to pass as ``-I`` when compiling BPF C for pybpf (like ``numpy.get_include()``).

    It holds ``vmlinux.h``, ``bpf/bpf_helpers.h`` and the other libbpf BPF-side headers, and the
    project's shared BPF headers. Raises ``FileNotFoundError`` in a source tree where the
    objects were never built (``make bpf`` stages it).
    """
    path = _PACKAGE / "include"
    if not (path / "vmlinux.h").is_file():
        raise FileNotFoundError(f"pybpf's include set is missing ({path}): in a source tree, build it "
                                "with `make bpf` (cmake -S . -B build && cmake --build build)")
    return str(path)


def target_arch(machine: str | None = None) -> str:
    """The ``__TARGET_ARCH_<arch>`` suffix for ``machine`` (default: this one), e.g. ``x86``."""
    machine = (machine or platform.machine()).lower()
    try:
        return _ARCHES[machine][0]
    except KeyError:
        raise ValueError(f"pybpf does not know the BPF target arch of {machine!r}") from None


def _multiarch_dir(machine: str | None = None) -> str | None:
    entry = _ARCHES.get((machine or platform.machine()).lower())
    if entry is None:
        return None
    path = f"/usr/include/{entry[1]}"
    return path if os.path.isdir(path) else None


def _find(names: Sequence[str], tool: str, package: str, given: str | None) -> str:
    if given is not None:
        found = shutil.which(given)
        if found is None:
            raise CompilerNotFoundError(f"{given} not found: it is needed to compile BPF C", tool=tool)
        return found
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    raise CompilerNotFoundError(f"{tool} is not installed (not found on PATH): compiling BPF C needs "
                                f"clang and llvm-strip (Debian: apt-get install {package})", tool=tool)


def find_clang(clang: str | None = None) -> str:
    """Path of clang (``clang``, else the newest ``clang-N``); :class:`CompilerNotFoundError` if none."""
    return _find(_CLANGS, "clang", "clang", clang or os.environ.get("PYBPF_CLANG"))


def find_strip(strip: str | None = None) -> str:
    """Path of llvm-strip; :class:`CompilerNotFoundError` if none."""
    return _find(_STRIPS, "llvm-strip", "llvm", strip or os.environ.get("PYBPF_LLVM_STRIP"))


def cflags(*, include_dirs: Sequence[str | os.PathLike[str]] = (), arch: str | None = None) -> list[str]:
    """The clang flags pybpf compiles BPF C with (``include_dirs`` come before :func:`include_dir`)."""
    flags = ["-g", "-O2", "-target", "bpf", "-mcpu=v3", f"-D__TARGET_ARCH_{arch or target_arch()}",
             "-Wall", "-Wno-unused-function", "-fdebug-compilation-dir=."]
    for d in include_dirs:
        flags += [f"-I{os.fspath(d)}"]
    flags += [f"-I{include_dir()}"]
    multiarch = _multiarch_dir()
    if multiarch is not None:
        flags += ["-idirafter", multiarch]
    return flags


def _default_output(source: Path) -> Path:
    name = source.name
    if name.endswith(".bpf.c"):
        return source.with_name(name[: -len(".c")] + ".o")
    if name.endswith(".c"):
        return source.with_name(name[: -len(".c")] + ".bpf.o")
    return source.with_name(name + ".bpf.o")


def build(source: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, *,
          include_dirs: Sequence[str | os.PathLike[str]] = (), defines: Sequence[str] = (),
          extra_cflags: Sequence[str] = (), clang: str | None = None, strip: str | None = None,
          arch: str | None = None) -> Path:
    """Compile BPF C ``source`` into a stripped CO-RE object and return its path.

    ``output`` defaults to ``X.bpf.o`` beside ``X.bpf.c``. ``include_dirs`` are searched before
    pybpf's own include set (a directory with another ``vmlinux.h`` overrides the committed one);
    ``defines`` are ``NAME`` or ``NAME=VALUE``. Raises :class:`CompilerNotFoundError` when clang or
    llvm-strip is missing and :class:`BuildError` (with clang's ``stderr``) when compiling fails.
    The output appears whole or not at all.
    """
    src = Path(source)
    if not src.is_file():
        raise FileNotFoundError(f"no such BPF C source: {src}")
    out = Path(output) if output is not None else _default_output(src)
    clang_path = find_clang(clang)
    strip_path = find_strip(strip)
    command = [clang_path, *cflags(include_dirs=include_dirs, arch=arch),
               *[f"-D{d}" for d in defines], *extra_cflags, "-c", str(src)]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        proc = subprocess.run([*command, "-o", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"clang could not compile {src} (exit {proc.returncode}):\n{proc.stderr.strip()}",
                             command=command, stderr=proc.stderr)
        strip_cmd = [strip_path, "-g", str(tmp)]
        proc = subprocess.run(strip_cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"llvm-strip failed on {tmp} (exit {proc.returncode}): {proc.stderr.strip()}",
                             command=strip_cmd, stderr=proc.stderr)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
