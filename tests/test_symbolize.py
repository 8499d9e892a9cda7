"""pybpf.symbolize against real sources: this kernel's kallsyms (with a BPF program's own
symbol), programs and a shared library built here, a binary inside a mount namespace the
host cannot see, the vDSO, a perf map, DWARF lines, and hostile ELF bytes."""

from __future__ import annotations

import bisect
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf
from pybpf.symbolize import ElfSymbols, KernelSymbols, PerfMap, Symbolizer, read_maps
from tests.conftest import needs_kernel
from tests.stackprogs import hotcold_path, start


@pytest.fixture
def hotcold():
    return hotcold_path()


def nm(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True, check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (line.split() for line in out.splitlines())
            if len(parts) == 3 and parts[1] in "tT"}


def runtime_address(pid: int, path: Path, symbol: str) -> int:
    """Where ``symbol`` of ``path`` is in ``pid``: base of the file's offset-0 mapping + its vaddr
    (what the dynamic loader does for PIE programs and shared libraries, whose first PT_LOAD is
    at vaddr 0)."""
    real = os.path.realpath(path)
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and os.path.realpath(parts[5]) == real and int(parts[2], 16) == 0:
                return int(parts[0].split("-")[0], 16) + nm(path)[symbol]
    raise AssertionError(f"{path} is not mapped in {pid}")


# ---- kernel -----------------------------------------------------------------------------------

def test_kallsyms_parse_synthetic():
    text = (b"ffffffff81000000 T _stext\n"
            b"ffffffff81000100 t helper\n"
            b"0000000000000000 A fixed_percpu_data\n"
            b"ffffffffc0001000 t mod_fn\t[mymod]\n"
            b"ffffffff81000050 T early\n"
            b"ffffffffc0002000 t bpf_prog_0123456789abcdef_on_x\t[bpf]\n")
    ks = KernelSymbols(data=text)
    assert len(ks) == 5
    assert ks.addresses.tolist() == sorted(ks.addresses.tolist())
    assert ks.lookup(0xFFFFFFFF81000060) == ("early", 0x10, "[kernel.kallsyms]")
    assert ks.lookup(0xFFFFFFFFC0001008) == ("mod_fn", 8, "[mymod]")
    assert ks.lookup(0xFFFFFFFFC0002004)[0].endswith("_on_x")
    assert ks.lookup(0x1000) is None
    sym = Symbolizer()
    sym._kernel = ks
    frames = sym.kernel(np.array([0xFFFFFFFF81000101, 0xFFFFFFFF81000101, 5], np.uint64))
    assert frames.names.tolist() == ["helper", "helper", "[unknown]"]
    assert frames.offsets.tolist() == [1, 1, 0]


def test_kallsyms_refusals():
    with pytest.raises(pybpf.ObjectFormatError, match="not kallsyms"):
        KernelSymbols(data=b"hello world\n")
    with pytest.raises(pybpf.ObjectFormatError, match="hexadecimal"):
        KernelSymbols(data=b"ffffffff8100000g T x\n")
    with pytest.raises(pybpf.BpfPermissionError, match="kptr_restrict"):
        KernelSymbols(data=b"0000000000000000 T _stext\n0000000000000000 T x\n")


def test_kallsyms_bulk_equals_bisect(kernel):
    ks = KernelSymbols()
    assert len(ks) > 10_000
    rng = np.random.default_rng(7)
    picks = rng.choice(ks.addresses, 20_000) + rng.integers(0, 64, 20_000).astype(np.uint64)
    idx = ks.index(picks)
    starts = ks.addresses.tolist()
    expect = [bisect.bisect_right(starts, a) - 1 for a in picks.tolist()]
    assert idx.tolist() == expect
    # a symbol every kernel has, found by name and back
    addr = ks.address("schedule")
    assert addr and ks.lookup(addr + 1)[:2] == ("schedule", 1)


def test_bpf_program_has_its_own_kernel_symbol(bundled, kernel):
    with open("/proc/sys/net/core/bpf_jit_kallsyms") as f:
        if f.read().strip() != "1":
            needs_kernel("net.core.bpf_jit_kallsyms is 0: JIT-compiled programs are not in kallsyms")
    with pybpf.open(bundled("probes")) as obj:
        obj.load()
        sym = Symbolizer()
        ks = sym.kernel_symbols()
        tag = obj.programs["on_perf_event"].info().tag
        name = f"bpf_prog_{tag}_on_perf_event"
        addr = ks.address(name)
        assert addr is not None, f"{name} not in kallsyms"
        frame = sym.kernel([addr + 8])[0]
        assert (frame.name, frame.offset, frame.module) == (name, 8, "[bpf]")


# ---- ELF ------------------------------------------------------------------------------------

def test_elf_symbols_match_nm(hotcold):
    elf = ElfSymbols(str(hotcold))
    want = nm(hotcold)
    for name in ("main", "hot", "cold"):
        i = elf.index(np.array([want[name] + 1], np.uint64))[0]
        assert elf.symbol_name(i) == name
    assert len(elf.build_id or "") == 40
    lib = ElfSymbols(str(hotcold.parent / "libhotcold.so"))
    assert {"lib_hot", "lib_cold"} <= set(lib.names())


def test_elf_lines(hotcold):
    elf = ElfSymbols(str(hotcold))
    addr = nm(hotcold)["hot"]
    file_line, none = elf.file_lines(np.array([addr + 1, 3], np.uint64))
    assert none is None
    assert file_line is not None and file_line[0] == "hotcold.c"
    text = (Path(__file__).parent / "data" / "stacks" / "hotcold.c").read_text().splitlines()
    assert "hot(double unit)" in text[file_line[1] - 2] + text[file_line[1] - 1]   # the signature or its "{"
    lib = ElfSymbols(str(hotcold.parent / "libhotcold.so"))
    assert lib.file_lines(np.array([nm(hotcold.parent / "libhotcold.so")["lib_hot"]], np.uint64))[0][0] \
        == "libhotcold.c"


@given(cut=st.integers(0, 4096), flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)),
                                                  max_size=8))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_elf_bytes(hotcold, cut, flips):
    data = bytearray(hotcold.read_bytes()[:cut or None])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        elf = ElfSymbols("hostile", data=bytes(data))
    except pybpf.ObjectFormatError as exc:
        assert "hostile" in str(exc)
        return
    idx = elf.index(np.arange(0, 0x3000, 16, dtype=np.uint64))
    for i in set(idx.tolist()) - {-1}:
        assert isinstance(elf.symbol_name(i), str)


def test_elf_refusals(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(pybpf.ObjectFormatError, match="not an ELF"):
        ElfSymbols(str(empty))
    text = tmp_path / "text"
    text.write_bytes(b"#!/bin/sh\n" * 20)
    with pytest.raises(pybpf.ObjectFormatError, match="not an ELF"):
        ElfSymbols(str(text))
    elf32 = tmp_path / "elf32"
    elf32.write_bytes(b"\x7fELF\x01\x01\x01" + b"\0" * 100)
    with pytest.raises(pybpf.ObjectFormatError, match="64-bit little-endian"):
        ElfSymbols(str(elf32))


# ---- processes --------------------------------------------------------------------------------

def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()
    if p.stdout:
        p.stdout.close()


def test_user_frames_of_a_pie_program_and_after_it_exits(hotcold, tmp_path):
    prog = tmp_path / "hotcold"
    shutil.copy(hotcold, prog)
    p = start(prog, 30)
    try:
        sym = Symbolizer(lines=True)
        hot = runtime_address(p.pid, prog, "hot")
        cold = runtime_address(p.pid, prog, "cold")
        frames = sym.user(p.pid, [hot + 4, cold, 1])
        assert frames.names.tolist() == ["hot", "cold", "[unknown]"]
        assert frames.offsets.tolist()[:2] == [4, 0]
        assert frames.modules[0] == str(prog)
        # where they are in the file (what perf and the C tools' -v print): nm's value + the offset
        assert frames.file_addrs.tolist()[:2] == [nm(prog)["hot"] + 4, nm(prog)["cold"]]
        assert frames[0].file == "hotcold.c"
    finally:
        _stop(p)
    prog.unlink()                        # gone from disk, and the process gone too
    assert not os.path.exists(f"/proc/{p.pid}/maps")
    again = sym.user(p.pid, [cold + 2, hot])
    assert again.names.tolist() == ["cold", "hot"]
    assert Symbolizer().user(p.pid, [hot]).names.tolist() == ["[unknown]"]   # no snapshot: unknown


def test_snapshot_taken_again_after_exec(hotcold):
    """A process snapshotted before it exec'd (a fork's child, as a profiler first sees it) is
    snapshotted again when asked for once it runs the new program: its frames are the new
    program's, not the old one's (which would name wrong functions where the two overlap)."""
    p = subprocess.Popen(["sh", "-c", f"echo started && read _ && exec {hotcold} 30"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "started\n"   # sh is mapped (Popen returns in the middle of its exec)
        sym = Symbolizer()
        before = sym.remember(p.pid)
        assert before is not None and str(hotcold) not in [m.path for m in before.mappings]
        assert sym.remember(p.pid) is before                  # the same program: the snapshot kept
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().startswith("ready")
        after = sym.remember(p.pid)
        assert after is not before and str(hotcold) in [m.path for m in after.mappings]
        assert sym.user(p.pid, [runtime_address(p.pid, hotcold, "hot") + 2]).names.tolist() == ["hot"]
        assert sym.remember(p.pid) is after
    finally:
        p.stdin.close()
        _stop(p)


def test_shared_library_at_its_load_base(hotcold):
    p = start(hotcold, 30, "lib")
    try:
        lib = hotcold.parent / "libhotcold.so"
        addr = runtime_address(p.pid, lib, "lib_hot")
        mapped = [m for m in read_maps(p.pid) if m.path == str(lib)]
        assert mapped and mapped[0].start > 0x10000
        frames = Symbolizer().user(p.pid, [addr + 3, runtime_address(p.pid, lib, "lib_cold")])
        assert frames.names.tolist() == ["lib_hot", "lib_cold"]
        assert frames.modules.tolist() == [str(lib)] * 2
    finally:
        _stop(p)


def test_binary_in_a_mount_namespace_the_host_cannot_see(hotcold, kernel):
    if shutil.which("unshare") is None:
        needs_kernel("needs unshare (util-linux)")
    hidden = Path(tempfile.mkdtemp(prefix="pybpf-ns-"))
    inner = hidden / "opt" / "app" / "hotcold"
    script = (f"mount -t tmpfs pybpf-test {hidden} && mkdir -p {inner.parent} && "
              f"cp {hotcold} {inner} && exec {inner} 30")
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("ready")
        assert not inner.exists()                   # the host has no such file
        maps = Symbolizer().remember(p.pid)
        i = [m.path for m in maps.mappings].index(str(inner))
        assert maps.elves[i].path == f"/proc/{p.pid}/root{inner}"
        # the file's first PT_LOAD is at offset 0, vaddr 0: runtime = lowest mapping + vaddr
        lowest = min(int(line.split("-")[0], 16) for line in Path(f"/proc/{p.pid}/maps").read_text().splitlines()
                     if line.rstrip().endswith(str(inner)))
        hot = lowest + nm(hotcold)["hot"]
        assert Symbolizer().user(p.pid, [hot + 1]).names.tolist() == ["hot"]
    finally:
        _stop(p)
        os.rmdir(hidden)


def test_vdso_symbols():
    sym = Symbolizer()
    maps = sym.remember(os.getpid())
    i = next(i for i, m in enumerate(maps.mappings) if m.path == "[vdso]")
    vdso = maps.elves[i]
    assert vdso is not None
    names = set(vdso.names())
    assert {"__vdso_clock_gettime", "__vdso_gettimeofday"} & names
    # the same bytes through pyelftools, an independent reader
    from io import BytesIO

    from elftools.elf.elffile import ELFFile
    m = maps.mappings[i]
    with open("/proc/self/mem", "rb", buffering=0) as f:
        f.seek(m.start)
        raw = f.read(m.end - m.start)
    dynsym = ELFFile(BytesIO(raw)).get_section_by_name(".dynsym")
    want = {s.name: s["st_value"] for s in dynsym.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}
    name, value = sorted(want.items())[0]
    assert sym.user(os.getpid(), [m.start + value + 1]).names.tolist() == [name]


def test_perf_map_names_jit_code(tmp_path):
    # a process with anonymous executable memory: this Python, whose perf map the test writes as
    # a JIT would (the format perf, Python 3.12 -X perf and node --perf-basic-prof share)
    import mmap

    pid = os.getpid()
    path = Path(f"/tmp/perf-{pid}.map")
    if path.exists():
        pytest.skip(f"{path} exists already")
    # an executable anonymous mapping of our own, where a JIT puts its code (private: a shared one
    # reads "/dev/zero (deleted)" in /proc/PID/maps; Python 3.13 maps no anonymous code of its own)
    before = {m.start for m in read_maps(pid)}
    block = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_EXEC)
    anon = [m for m in read_maps(pid) if not m.path and m.start not in before]
    assert anon, read_maps(pid)
    start_addr = anon[0].start
    try:
        path.write_text(f"{start_addr:x} 40 py::jitted_a\n{start_addr + 0x40:x} 20 py::jitted_b\nbogus line\n")
        sym = Symbolizer()
        frames = sym.user(pid, [start_addr + 4, start_addr + 0x41, start_addr + 0x70])
        assert frames.names.tolist() == ["py::jitted_a", "py::jitted_b", "[unknown]"]
        assert frames.modules.tolist()[:2] == ["[perf-map]", "[perf-map]"]
        with path.open("a") as f:   # JITs append: a later lookup sees the new entry
            f.write(f"{start_addr + 0x70:x} 10 py::jitted_c\n")
        time.sleep(0.01)
        os.utime(path)
        assert sym.user(pid, [start_addr + 0x71]).names.tolist() == ["py::jitted_c"]
        pm = PerfMap(str(path))
        assert len(pm.names) == 3
    finally:
        path.unlink()
        block.close()


def test_bulk_equals_one_by_one(hotcold):
    p = start(hotcold, 30, "lib")
    try:
        maps = read_maps(p.pid)
        rng = random.Random(3)
        addrs = [rng.randrange(m.start, m.end) for m in maps for _ in range(200)] + [0, 8, 2**63]
        sym = Symbolizer()
        bulk = sym.user(p.pid, np.array(addrs, np.uint64))
        one = [sym.user(p.pid, [a])[0] for a in addrs[::37]]
        assert [str(f) for f in one] == [str(bulk[i]) for i in range(0, len(addrs), 37)]
        assert bulk.resolved.sum() > len(addrs) // 4
    finally:
        _stop(p)


def test_bad_addresses():
    sym = Symbolizer()
    with pytest.raises(pybpf.InvalidArgumentError, match="1-d"):
        sym.user(os.getpid(), np.zeros((2, 2), np.uint64))
    with pytest.raises(pybpf.InvalidArgumentError, match="integers"):
        sym.user(os.getpid(), ["main"])
    with pytest.raises(pybpf.InvalidArgumentError, match="negative"):
        sym.kernel([-1])
    assert len(sym.user(os.getpid(), [])) == 0


# ---- exporter decoders -----------------------------------------------------------------------------

def test_kstack_and_ustack_label_decoders(kernel):
    import ctypes

    from pybpf.metrics.decoders import DECODERS, CachedDecoder
    ks = KernelSymbols()
    sched, sleep = ks.address("schedule"), ks.address("do_nanosleep")
    field = np.zeros(8, np.uint64)
    field[:2] = [sched + 4, sleep + 8]
    dec = CachedDecoder("kstack")
    assert dec(field) == "schedule\ndo_nanosleep" == dec(field.copy())
    libc = ctypes.CDLL("libc.so.6")
    getpid = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    rec = np.zeros((), np.dtype([("pid", "<u4"), ("addrs", "<u8", (4,))]))
    rec["pid"] = os.getpid()
    rec["addrs"][:2] = [getpid, 0]
    assert DECODERS["ustack"](rec) in ("getpid", "__getpid")
    with pytest.raises(ValueError, match="struct field"):
        DECODERS["ustack"](field)
