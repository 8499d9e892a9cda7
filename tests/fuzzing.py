"""Fork-per-case fuzzing of pybpf's input paths: shared by tests/test_fuzz.py (a seeded slice
in CI) and tools/fuzz.py (the long run).

A case is a mutated bundled object (or a mutated raw BTF blob) sent through one target:

* ``open``     ``pybpf.open(bytes)``: the pure ELF/BTF checks, then libbpf's open;
* ``inspect``  ``pybpf --debug inspect --json FILE`` (pure parsing only);
* ``btf_dump`` ``pybpf --debug btf dump FILE`` (C through libbpf's btf_dump, then JSON);
* ``load``     ``pybpf.open(bytes).load()`` into the running kernel (root only);
* ``gen``      ``pybpf gen``: the module generated for a mutated object, or for ``counters`` with
               hostile names (``tests.mutate.rename``), is imported and every member used; a
               canary shows that importing or using it never ran object data;
* ``usdt``     ``usdt list`` (the notes reader, then the CLI table) of a mutated binary with USDT
               notes (Debian's CPython: its section headers, notes and all);
* ``extract``  ``btf extract`` of a mutated kernel image (bzImage or bare, each codec), ELF, raw
               BTF or BTFHub tarball, under a 4 GiB address-space limit (a bomb is a MemoryError).

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

TARGETS = ("open", "inspect", "btf_dump", "load", "gen", "usdt", "extract")
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

    def add(self, target: str, outcome: Outcome, data: bytes | Mutant, save_dir: Path | None) -> None:
        self.counts[(target, outcome.kind)] += 1
        if outcome.kind == FOREIGN:
            self.foreign[outcome.detail.splitlines()[-1] if outcome.detail else "?"] += 1
        if outcome.kind in (FOREIGN, CRASH, HANG) and save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            path = save_dir / f"{target}-{outcome.kind.replace(' ', '_')}-{len(self.bad)}.bin"
            path.write_bytes(bytes(data))
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
        found = _parse_regions(data)
        if len(_REGIONS) < 64:  # the seeds; a one-off input (a renamed object) is not kept alive
            _REGIONS[data] = found
    return found


def _parse_regions(data: bytes) -> dict[str, tuple[int, int]]:
    regions = {"file": (0, len(data))}
    try:
        from elftools.elf.elffile import ELFFile
        elf = ELFFile(io.BytesIO(data))
        shoff, shnum, shentsize = elf["e_shoff"], elf["e_shnum"], elf["e_shentsize"]
        regions["shdrs"] = (shoff, min(len(data), shoff + shnum * shentsize))
        for sec in elf.iter_sections():
            if sec.name in (".BTF", ".BTF.ext", ".symtab", ".maps", ".note.stapsdt") and sec["sh_type"] != "SHT_NOBITS":
                regions[sec.name] = (sec["sh_offset"], sec["sh_offset"] + sec["sh_size"])
    except Exception:  # noqa: BLE001 - an already-corrupt seed: mutate it whole
        pass
    return regions


class Mutant:
    """A case's input, kept small: its seed (shared) and the edits made to it, or a recipe.

    Hypothesis keeps every value a strategy returned for the whole run (its span values), so a
    strategy that returned the mutated bytes of a 6.6 MB binary would hold 6.6 MB per case;
    ``bytes(mutant)`` makes the input when the case runs."""

    __slots__ = ("edits", "make", "prefix", "seed")

    def __init__(self, seed: bytes | Callable[[], bytes], edits: tuple[tuple[int, int, bytes | None], ...] = (),
                 prefix: bytes = b"") -> None:
        self.seed = seed if isinstance(seed, bytes) else None
        self.make = None if isinstance(seed, bytes) else seed
        self.edits = edits
        self.prefix = prefix

    def base(self) -> bytes:
        return self.seed if self.seed is not None else self.make()  # type: ignore[misc]

    def __bytes__(self) -> bytes:
        data = bytearray(self.base())
        for start, end, chunk in self.edits:
            if chunk is None:
                del data[start:]
            else:
                data[start:end] = chunk
        return self.prefix + bytes(data)

    def __repr__(self) -> str:
        return f"<Mutant of {len(self.base())} bytes, {len(self.edits)} edit(s)>"


@st.composite
def mutated(draw: Callable[..., Any], seed: bytes | Mutant) -> Mutant:
    """``seed`` with 1-8 structure-aware edits (as a :class:`Mutant`)."""
    base = seed.base() if isinstance(seed, Mutant) else seed
    data = bytearray(base)
    regions = _regions(base)
    edits: list[tuple[int, int, bytes | None]] = []

    def put(start: int, chunk: bytes) -> None:
        end = start + len(chunk) if start + len(chunk) <= len(data) else len(data)
        data[start:end] = chunk
        edits.append((start, end, chunk))

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
            put(pos, bytes([data[pos] ^ 1 << draw(st.integers(0, 7))]))
        elif op == "byte":
            put(pos, bytes([draw(st.integers(0, 255))]))
        elif op == "u32":
            pos = lo + (pos - lo) // 4 * 4
            if pos + 4 <= len(data):
                old = struct.unpack_from("<I", data, pos)[0]
                value = draw(st.one_of(st.sampled_from(_INTERESTING), st.integers(0, 2**32 - 1),
                                       st.integers(-16, 16).map(lambda d, o=old: (o + d) & 0xFFFFFFFF),
                                       st.just(len(data))))
                put(pos, struct.pack("<I", value & 0xFFFFFFFF))
        elif op == "truncate":
            if draw(st.booleans()) or name == "file":
                del data[pos:]
                edits.append((pos, pos, None))
            else:
                put(pos, bytes(hi - pos))
        else:
            src = draw(st.integers(0, len(data) - 1))
            n = draw(st.integers(1, 64))
            put(pos, bytes(data[src:src + n]))
    if isinstance(seed, Mutant):
        return Mutant(seed.make if seed.make is not None else base, seed.edits + tuple(edits), seed.prefix)
    return Mutant(base, tuple(edits))


# ---- gen: hostile names --------------------------------------------------------------------------

CANARY = "PYBPF_GEN_PWNED"
# what a name from the object tries: end a literal, run code, take one of the module's own names
PAYLOAD = f'__import__("os").environ.__setitem__("{CANARY}", "1")'
NAME_FRAGMENTS = ['"""', "'''", "\\", '"', "'", PAYLOAD, ";", "#", "{", "}", "\\N{", "__init__", "__enter__",
                  "__getattribute__", "__class__", "class", "class_", "load", "open", "raw", "NAMES", "TypedMap",
                  "typed_map", "Counters", "counters", "np", "int", "property", "type", "__", "_", " ", "0",
                  "ｌｏａｄ", "x½", "\x1b", "\n", "\r", "\u2028", "\u202e", "\udcff"]
RENAMED_MAPS = ["pairs", "slots"]
RENAMED_GLOBALS = ["hits", "last_parent_tgid", "per_slot_seen", "increment", "greeting", "want_tgid", "small_knob"]
RENAMED_PROGRAMS = ["on_getppid", "on_raw_sys_enter", "on_btf_sys_enter"]
RENAMED_MEMBERS = ["count", "parent_tgid", "tgid"]


def _names(alphabet: st.SearchStrategy[str], fragments: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.sampled_from(fragments), st.text(alphabet, min_size=1, max_size=8)),
                    min_size=1, max_size=4).map("".join)


# BTF names: printable ASCII (pybpf's BTF validator refuses the rest); ELF names: any text but NUL
BTF_NAMES = _names(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                   [f for f in NAME_FRAGMENTS if f.isascii() and f.isprintable()])
ELF_NAMES = _names(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                   [f for f in NAME_FRAGMENTS if not ("\ud800" <= f[:1] <= "\udfff")])
ANY_NAMES = _names(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), NAME_FRAGMENTS)


def renamed_counters(struct: str = "pair", members: dict[str, str] | None = None,
                     names: dict[str, str] | None = None, programs: dict[str, str] | None = None) -> bytes:
    """``counters`` with struct ``pair``, its members, maps and globals (BTF and symbol) and
    programs (symbols: any text) renamed."""
    from tests.mutate import rename
    btf: dict[tuple[str, ...], str] = {("struct", "pair"): struct}
    btf.update({("member", "pair", old): new for old, new in (members or {}).items()})
    btf.update({("var", old): new for old, new in (names or {}).items()})
    return rename(seed_objects()["counters"], btf, {**(names or {}), **(programs or {})})


@st.composite
def hostile_objects(draw: Callable[..., Any]) -> tuple[Mutant, str]:
    """(counters with every name drawn from BTF_NAMES/ELF_NAMES, as a Mutant; an object name)."""
    struct_name = draw(BTF_NAMES)
    members = dict(zip(RENAMED_MEMBERS, draw(st.lists(BTF_NAMES, min_size=3, max_size=3))))
    variables = dict(zip(RENAMED_MAPS + RENAMED_GLOBALS, draw(st.lists(BTF_NAMES, min_size=9, max_size=9,
                                                                       unique=True))))
    programs = dict(zip(RENAMED_PROGRAMS, draw(st.lists(ELF_NAMES, min_size=3, max_size=3, unique=True))))
    recipe = Mutant(lambda: renamed_counters(struct_name, members, variables, programs))  # made when run
    return recipe, draw(ANY_NAMES)


# ---- usdt: a real binary with USDT notes --------------------------------------------------------

_USDT: list[bytes] = []


def usdt_binary() -> bytes:
    """Debian's CPython with its USDT notes (python3.11 on 12, python3.13 on 13)."""
    if not _USDT:
        from pybpf.distro import usdt_python
        _USDT.append(Path(usdt_python()).read_bytes())
    return _USDT[0]


# ---- extract: kernel images --------------------------------------------------------------------

_IMAGES: dict[str, bytes] = {}


def kernel_images() -> dict[str, bytes]:
    """Small kernel build artefacts around a real BTF (counters'): raw BTF, an ELF with .BTF,
    bzImages of each codec, a bare gzip image, a BTFHub tarball."""
    if not _IMAGES:
        import bz2
        import lzma
        import zlib
        import zstandard
        from pybpf.btf.extract import _tar_bytes
        from tests.mutate import bzimage, elf_with_btf, lz4_legacy
        raw = raw_btf_of(seed_objects()["counters"])
        elf = elf_with_btf(raw)
        gz = zlib.compressobj(9, zlib.DEFLATED, 31)
        codecs = {"gzip": gz.compress(elf) + gz.flush(), "xz": lzma.compress(elf, format=lzma.FORMAT_XZ),
                  "lzma": lzma.compress(elf, format=lzma.FORMAT_ALONE), "bzip2": bz2.compress(elf),
                  "lz4": lz4_legacy(elf), "zstd": zstandard.ZstdCompressor().compress(elf)}
        _IMAGES.update({"raw": raw, "elf": elf, "bare-gzip": codecs["gzip"], "tarball": _tar_bytes("k.btf", raw)})
        _IMAGES.update({f"bzimage-{name}": bzimage(data) for name, data in codecs.items()})
    return _IMAGES


def raw_btf_of(obj: bytes) -> bytes:
    from pybpf.spec.elf import ObjectSpec
    return ObjectSpec(obj, name="seed").sections[".BTF"].data


@st.composite
def cases(draw: Callable[..., Any], targets: tuple[str, ...] = TARGETS) -> tuple[str, Mutant]:
    """(target, input): a mutated object, or for btf_dump a mutated object or raw BTF blob."""
    target = draw(st.sampled_from(targets))
    if target == "usdt":
        return target, draw(mutated(usdt_binary()))
    if target == "extract":
        images = kernel_images()
        return target, draw(mutated(images[draw(st.sampled_from(sorted(images)))]))
    seeds = seed_objects()
    seed = seeds[draw(st.sampled_from(sorted(seeds)))]
    if target == "gen" and draw(st.booleans()):
        recipe, name = draw(hostile_objects())  # hostile names, sometimes mutated on top
        case = draw(mutated(recipe)) if draw(st.booleans()) else recipe
        case.prefix = name.encode("utf-8", "surrogatepass") + b"\0"
        return target, case
    if target == "btf_dump" and draw(st.booleans()):
        seed = raw_btf_of(seed)
    case = draw(mutated(seed))
    if target == "gen":
        case.prefix = b"fuzz\0"
    return target, case


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


def _target_gen(data: bytes, path: str) -> None:
    """Generate, import (a module object of its own) and use every member, without a kernel."""
    import types
    import numpy as np
    from pybpf.spec.codegen import generate
    name, _, obj = data.partition(b"\0")
    source = generate(obj, name=name.decode("utf-8", "surrogatepass"))
    os.environ.pop(CANARY, None)
    module = types.ModuleType("fuzz_gen")
    exec(compile(source, "fuzz_gen.py", "exec"), module.__dict__)  # noqa: S102 - the point of the target
    try:
        cls = module.__dict__[module.__all__[0]]
        for record_name in module.__all__[2:]:
            record = module.__dict__[record_name]
            rows = np.zeros(1, record.dtype)
            record(rows[0]).to_dict()
        with cls.open() as skel:
            for attr in cls.NAMES:
                getattr(skel, attr)
    finally:
        if CANARY in os.environ:
            raise AssertionError("the generated module ran code from the object")


def _target_usdt(data: bytes, path: str) -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a size that allocates is a MemoryError
    from pybpf.spec.usdt import read_probes
    read_probes(path)
    _cli(["usdt", "list", path])


def _target_extract(data: bytes, path: str) -> None:
    import resource
    from pybpf.btf.extract import btf_from_tarball, extract_btf
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a bomb is a MemoryError, not a squeeze
    extract_btf(path)
    if data[:6] == b"\xfd7zXZ\x00" or data[:2] == b"\x1f\x8b":  # the same bytes as a BTFHub archive
        btf_from_tarball(path)


_RUNNERS = {"open": _target_open, "inspect": _target_inspect, "btf_dump": _target_btf_dump,
            "load": _target_load, "gen": _target_gen, "usdt": _target_usdt, "extract": _target_extract}


def run_case(target: str, data: bytes | Mutant, timeout: float = 20.0, workdir: str | None = None) -> Outcome:
    """Run one case in a forked child; classify how it ended."""
    data = bytes(data)
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
            _RUNNERS["gen"](b"warm\0" + seed, f.name)
            from pybpf.btf.extract import extract_btf
            for name, image in kernel_images().items():
                if name != "tarball":
                    extract_btf(image, where="warm-up")
