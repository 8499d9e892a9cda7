"""Fork-per-case fuzzing of pybpf's input paths: shared by tests/test_fuzz.py (a seeded slice
in CI) and tools/fuzz.py (the long run).

A case is a mutated bundled object (or a mutated raw BTF blob) sent through one target:

* ``open``     ``pybpf.open(bytes)``: the pure ELF/BTF checks, then libbpf's open;
* ``inspect``  ``pybpf --debug inspect --json FILE`` (pure parsing only);
* ``btf_dump`` ``pybpf --debug btf dump FILE`` (C through libbpf's btf_dump, then JSON);
* ``load``     ``pybpf.open(bytes).load()`` into the running kernel (root only).

Each case runs in a child forked from the warm parent, so a crash is a signal the parent sees
(not the end of the run) and a hang is a child still running at its deadline (then killed).
The child exits 0 when the input was accepted, 1 for a pybpf error (a ``BpfError``: the
typed rejection the issue asks for), 3 for any other exception (its type is reported).

Mutations are structure-aware: they pick a region (the whole file, the ``.BTF``, ``.BTF.ext``
or ``.symtab`` section, the section header table) and change it the way corrupt files do:
bit flips, random bytes, 32-bit fields set to boundary values (0, 1, sizes, 2**31, 2**32-1),
truncation, and chunks copied from elsewhere in the file.
"""

from __future__ import annotations

import io
import os
import select
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import pybpf  # noqa: E402
from pybpf.errors import BpfError  # noqa: E402

TARGETS = ("open", "inspect", "btf_dump", "load")
SEED_OBJECTS = ("counters", "syscount", "net", "maps_test", "probes", "ringbuf_events", "ringbuf_user",
                "events_exec")
_INTERESTING = (0, 1, 2, 7, 8, 16, 24, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x00FFFFFF, 0x01000000,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
ACCEPTED, TYPED, FOREIGN, CRASH, HANG = "accepted", "typed error", "foreign error", "crash", "hang"


@dataclass
class Outcome:
    kind: str
    detail: str = ""


@dataclass
class Tally:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    foreign: Counter[str] = field(default_factory=Counter)
    bad: list[tuple[str, str, str]] = field(default_factory=list)  # (target, kind, saved file)

    def add(self, target: str, outcome: Outcome, data: bytes, save_dir: Path | None) -> None:
        self.counts[(target, outcome.kind)] += 1
        if outcome.kind == FOREIGN:
            self.foreign[outcome.detail.splitlines()[-1] if outcome.detail else "?"] += 1
        if outcome.kind in (FOREIGN, CRASH, HANG) and save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            path = save_dir / f"{target}-{outcome.kind.replace(' ', '_')}-{len(self.bad)}.bin"
            path.write_bytes(data)
            (path.with_suffix(".txt")).write_text(outcome.detail)
            self.bad.append((target, outcome.kind, str(path)))

    def total(self, kind: str | None = None) -> int:
        return sum(n for (_t, k), n in self.counts.items() if kind is None or k == kind)


# ---- inputs ----------------------------------------------------------------------------------

_SEEDS: dict[str, bytes] = {}


def seed_objects() -> dict[str, bytes]:
    if not _SEEDS:
        for name in SEED_OBJECTS:
            _SEEDS[name] = Path(pybpf.bundled(name)).read_bytes()
    return _SEEDS


_REGIONS: dict[bytes, dict[str, tuple[int, int]]] = {}


def _regions(data: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges worth mutating on their own: sections that libbpf parses, the header table
    (parsed once per seed)."""
    found = _REGIONS.get(data)
    if found is None:
        found = _REGIONS[data] = _parse_regions(data)
    return found


def _parse_regions(data: bytes) -> dict[str, tuple[int, int]]:
    regions = {"file": (0, len(data))}
    try:
        from elftools.elf.elffile import ELFFile
        elf = ELFFile(io.BytesIO(data))
        shoff, shnum, shentsize = elf["e_shoff"], elf["e_shnum"], elf["e_shentsize"]
        regions["shdrs"] = (shoff, min(len(data), shoff + shnum * shentsize))
        for sec in elf.iter_sections():
            if sec.name in (".BTF", ".BTF.ext", ".symtab", ".maps") and sec["sh_type"] != "SHT_NOBITS":
                regions[sec.name] = (sec["sh_offset"], sec["sh_offset"] + sec["sh_size"])
    except Exception:  # noqa: BLE001 - an already-corrupt seed: mutate it whole
        pass
    return regions


@st.composite
def mutated(draw: Callable[..., Any], seed: bytes) -> bytes:
    """A copy of ``seed`` with 1-8 structure-aware edits."""
    data = bytearray(seed)
    regions = _regions(seed)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        name = draw(st.sampled_from(sorted(regions)))
        lo, hi = regions[name]
        hi = min(hi, len(data))
        if hi - lo < 4:
            lo, hi = 0, len(data)
        op = draw(st.sampled_from(["flip", "byte", "u32", "u32", "truncate", "copy"]))
        pos = draw(st.integers(lo, max(lo, hi - 1)))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "u32":
            pos = lo + (pos - lo) // 4 * 4
            if pos + 4 <= len(data):
                old = struct.unpack_from("<I", data, pos)[0]
                value = draw(st.one_of(st.sampled_from(_INTERESTING), st.integers(0, 2**32 - 1),
                                       st.integers(-16, 16).map(lambda d, o=old: (o + d) & 0xFFFFFFFF),
                                       st.just(len(data))))
                struct.pack_into("<I", data, pos, value & 0xFFFFFFFF)
        elif op == "truncate":
            if draw(st.booleans()) or name == "file":
                del data[pos:]
            else:
                data[pos:hi] = bytes(hi - pos)
        else:
            src = draw(st.integers(0, len(data) - 1))
            n = draw(st.integers(1, 64))
            chunk = data[src:src + n]
            data[pos:pos + len(chunk)] = chunk
    return bytes(data)


def raw_btf_of(obj: bytes) -> bytes:
    from pybpf.spec.elf import ObjectSpec
    return ObjectSpec(obj, name="seed").sections[".BTF"].data


@st.composite
def cases(draw: Callable[..., Any], targets: tuple[str, ...] = TARGETS) -> tuple[str, bytes]:
    """(target, input): a mutated object, or for btf_dump a mutated object or raw BTF blob."""
    target = draw(st.sampled_from(targets))
    seeds = seed_objects()
    seed = seeds[draw(st.sampled_from(sorted(seeds)))]
    if target == "btf_dump" and draw(st.booleans()):
        seed = raw_btf_of(seed)
    return target, draw(mutated(seed))


# ---- the targets (run in the child) ----------------------------------------------------------

def _cli(args: list[str]) -> None:
    from pybpf.cli import app
    app(["--debug", *args], standalone_mode=False)


def _target_open(data: bytes, path: str) -> None:
    pybpf.open(data, object_name="fuzz").close()


def _target_inspect(data: bytes, path: str) -> None:
    _cli(["inspect", "--json", path])


def _target_btf_dump(data: bytes, path: str) -> None:
    try:
        _cli(["btf", "dump", path])
    finally:
        _cli(["btf", "dump", "--format", "json", path])


def _target_load(data: bytes, path: str) -> None:
    with pybpf.open(data, object_name="fuzz") as obj:
        obj.load()


_RUNNERS = {"open": _target_open, "inspect": _target_inspect, "btf_dump": _target_btf_dump,
            "load": _target_load}


def run_case(target: str, data: bytes, timeout: float = 20.0, workdir: str | None = None) -> Outcome:
    """Run one case in a forked child; classify how it ended."""
    fd, path = tempfile.mkstemp(suffix=".bpf.o", dir=workdir)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    rd, wr = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 4
            try:
                os.close(rd)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                try:
                    _RUNNERS[target](data, path)
                    code = 0
                except BpfError:
                    code = 1
                except BaseException as exc:  # noqa: BLE001 - the point: any other type is reported
                    os.write(wr, "".join(traceback.format_exception(exc))[-4000:].encode("utf-8", "replace"))
                    code = 3
            finally:
                os._exit(code)
        os.close(wr)
        wr = -1
        return _wait(pid, rd, timeout)
    finally:
        if wr >= 0:
            os.close(wr)
        os.close(rd)
        os.unlink(path)


def _wait(pid: int, rd: int, timeout: float) -> Outcome:
    pidfd = os.pidfd_open(pid)
    try:
        deadline = time.monotonic() + timeout
        chunks = []
        status = None
        while status is None:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Outcome(HANG, f"still running after {timeout} s")
            ready, _, _ = select.select([pidfd, rd], [], [], left)
            if rd in ready:
                chunk = os.read(rd, 65536)
                if chunk:
                    chunks.append(chunk)
            if pidfd in ready:
                _, status = os.waitpid(pid, 0)
        while True:
            chunk = os.read(rd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(pidfd)
    detail = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        return Outcome(CRASH, f"killed by {signal.Signals(os.WTERMSIG(status)).name}")
    code = os.WEXITSTATUS(status)
    return {0: Outcome(ACCEPTED), 1: Outcome(TYPED), 3: Outcome(FOREIGN, detail)}.get(
        code, Outcome(FOREIGN, f"exit code {code}: {detail}"))


def can_load() -> bool:
    from pybpf.kernel import features
    return features.detect().privileged and os.path.exists("/sys/kernel/btf/vmlinux")


def warm_up() -> None:
    """Import and run every target once in the parent, so each forked child starts warm."""
    import contextlib
    seed = seed_objects()["counters"]
    with tempfile.NamedTemporaryFile(suffix=".bpf.o") as f, open(os.devnull, "w") as null:
        f.write(seed)
        f.flush()
        with contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            for target in ("open", "inspect", "btf_dump"):
                _RUNNERS[target](seed, f.name)
