"""The C baselines: found, compiled against the system libbpf, cached, and driven.

Sources live in ``pybpf/bench/c/map_*`` (package data, so an installed pybpf
can build them); in a checkout, ``benchmarks/c/map_*`` are symlinks to them.
The binary is built with ``$CC`` (default ``cc``) ``-O2 ... -lbpf`` into
``$PYBPF_BENCH_CACHE`` (default ``~/.cache/pybpf/bench``), named by a hash of
the sources, flags and compiler, so an edit to any source rebuilds it.

``CBaseline`` runs one long-lived process per case (see ``c/map_bench.c``): the
map fd is inherited, and each ``run()`` asks for one timed pass.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["BuildError", "CBaseline", "Sample", "build", "compiler_version", "sources"]

SOURCE_DIR = Path(__file__).resolve().parent / "c"
CFLAGS = ["-O2", "-Wall", "-Wextra"]
LIBS = ["-lbpf"]


class BuildError(RuntimeError):
    """The C baselines could not be compiled (the message says what to install)."""


class Sample(tuple):
    """One timed pass: ``(elapsed_ns, checksum, count)``."""

    __slots__ = ()

    def __new__(cls, ns: int, checksum: int, count: int) -> Sample:  # noqa: PYI034
        """A sample: total nanoseconds, the checksum it computed, elements done."""
        return super().__new__(cls, (ns, checksum, count))

    ns = property(lambda self: self[0])
    checksum = property(lambda self: self[1])
    count = property(lambda self: self[2])


def sources() -> list[Path]:
    """The C baseline sources shipped with the package."""
    files = sorted(SOURCE_DIR.glob("map_*.[ch]"))
    if not any(f.suffix == ".c" for f in files):
        raise BuildError(f"no C baseline sources in {SOURCE_DIR}; reinstall pybpf")
    return files


def _compiler() -> str:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise BuildError(f"no C compiler {cc!r} on PATH: install one (apt-get install gcc) or set CC")
    return cc


def compiler_version() -> str:
    """The C compiler's version line, recorded with the figures."""
    try:
        out = subprocess.run([_compiler(), "--version"], capture_output=True, text=True, check=False).stdout
    except (BuildError, OSError):
        return "unknown"
    return out.splitlines()[0] if out else "unknown"


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pybpf" / "bench"
    return Path(os.environ.get("PYBPF_BENCH_CACHE", default))


def build() -> Path:
    """The baseline binary, compiled now if the sources (or flags, compiler) changed."""
    cc = _compiler()
    files = sources()
    digest = hashlib.sha256()
    for part in [cc, compiler_version(), *CFLAGS, *LIBS]:
        digest.update(part.encode() + b"\0")
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    target = cache_dir() / f"pybpf-bench-c-{digest.hexdigest()[:16]}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name and rename, so a concurrent run never sees half a binary.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-")
    os.close(fd)
    cmd = [cc, *CFLAGS, "-o", tmp, *(str(f) for f in files if f.suffix == ".c"), *LIBS]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise BuildError(f"building the C baselines failed ({' '.join(cmd)}):\n{proc.stderr.strip()}\n"
                         "they need a C compiler and the libbpf headers (apt-get install gcc libbpf-dev)")
    os.replace(tmp, target)
    return target


class CBaseline:
    """One C process serving timed passes of ``op`` on map ``fd`` (-1: no map)."""

    def __init__(self, binary: Path, op: str, fd: int, entries: int, value_size: int, *,
                 chunk: int = 1, inner: int = 1) -> None:
        self.op = op
        args = [str(binary), op, str(fd), str(entries), str(value_size), str(chunk), str(inner)]
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      pass_fds=(fd,) if fd >= 0 else ())

    def run(self) -> Sample:
        """Run one C pass and parse its sample."""
        return self._ask("run")

    def warm(self, keys: int) -> Sample:
        """One untimed pass over the first ``keys`` keys only."""
        return self._ask(f"warm {keys}")

    def _ask(self, command: str) -> Sample:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the answer (or its absence) below says why
        line = self._proc.stdout.readline().split()
        if len(line) != 3:
            detail = f"errno {line[1]} ({os.strerror(int(line[1]))})" if line[:1] == ["error"] else "no answer"
            raise RuntimeError(f"C baseline {self.op!r} failed: {detail}")
        return Sample(int(line[0]), int(line[1]), int(line[2]))

    def close(self) -> None:
        """Stop the C baseline process."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
