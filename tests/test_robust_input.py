"""Issue 10: bad input never crashes, hangs or exhausts memory; errors are pybpf's own types.

Every case here failed on the code before the fix (a signal, a hang, a bare builtin error
or gigabytes of memory); crashes and hangs are run in a subprocess so they show.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

import pybpf
from pybpf.btf.types import Btf
from pybpf.errors import InvalidArgumentError, MapMemoryError, ObjectFormatError
from pybpf.maps.memory import MapMemory, check_map_memory, estimate_map_bytes
from tests.conftest import needs_kernel
from tests.mutate import (
    break_section_name,
    break_symbol_name,
    run_python,
    set_bitfield,
    set_symbol_value,
)
from tests.test_btf import BtfBuilder


def _raw(bundled, name: str) -> bytes:
    return Path(bundled(name)).read_bytes()


def _expect_typed(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """The child printed a pybpf error type (no signal, no traceback of a builtin)."""
    assert result.returncode == 0, f"child died (rc {result.returncode}): {result.stderr[-2000:]}"
    for word in words:
        assert word in result.stdout, result.stdout + result.stderr


# ---- BTF that libbpf would crash on -------------------------------------------------------

def test_bitfield_on_char_array_is_refused_before_libbpf(bundled, kernel, tmp_path):
    """One byte of .BTF (comm:216 on a char[16]) made bpf_object__load die with SIGFPE in CO-RE."""
    mutant = tmp_path / "probes.bpf.o"
    mutant.write_bytes(set_bitfield(_raw(bundled, "probes"), "task_struct", "comm", 216))
    result = run_python(textwrap.dedent(f"""
        import pybpf
        try:
            with pybpf.open({str(mutant)!r}) as obj:
                obj.load()
            print("loaded")
        except pybpf.BpfError as e:
            print(type(e).__name__, e)
    """))
    _expect_typed(result, "ObjectFormatError", "comm", "bitfield")


def _btf_file(tmp_path: Path, name: str, build) -> Path:  # type: ignore[no-untyped-def]
    b = BtfBuilder()
    build(b)
    path = tmp_path / name
    path.write_bytes(b.blob())
    return path


def _pointer_array_cycle(b: BtfBuilder) -> None:
    i = b.int_("int", 4, signed=True)
    b.add(2, sz=3)                                   # [2] ptr -> [3]
    b.add(3, extra=struct.pack("<III", 2, i, 4))     # [3] array of 4 [2]


def _var_member(b: BtfBuilder) -> None:
    i = b.int_("int", 4, signed=True)
    c = b.int_("char", 1, signed=True)
    v = b.add(14, "v", sz=i, extra=struct.pack("<I", 1))
    # the padding before m is aligned to btf__align_of(VAR) == 0: a division by zero in libbpf
    b.add(4, "s", vlen=2, sz=16, extra=struct.pack("<IIIIII", b.s("c"), c, 0, b.s("m"), v, 64))


def _huge_struct(b: BtfBuilder) -> None:
    i = b.int_("int", 4, signed=True)
    b.add(4, "s", vlen=1, sz=0x08000000, extra=struct.pack("<III", b.s("a"), i, 0))


def _huge_offset(b: BtfBuilder) -> None:
    i = b.int_("int", 4, signed=True)
    b.add(4, "s", vlen=2, sz=0x20000008, extra=struct.pack("<IIIIII", b.s("a"), i, 0, b.s("b"), i, 0xFFFFFFC0))


@pytest.mark.parametrize("build,words", [
    (_pointer_array_cycle, ["cycle"]),          # was SIGSEGV (btf_dump recursed off the stack)
    (_var_member, ["member 'm'", "var"]),        # was SIGFPE (btf__align_of of a VAR is 0)
    (_huge_struct, ["padding"]),                # was 184 MB of output, 1.7 GB of memory
    (_huge_offset, ["padding"]),
])
def test_btf_dump_refuses_what_libbpf_cannot_write(tmp_path, build, words):
    path = _btf_file(tmp_path, "bad.btf", build)
    result = subprocess.run(["pybpf", "btf", "dump", str(path)], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent / "src")))
    assert result.returncode == 1, (result.returncode, result.stderr[-500:])
    assert result.stdout == ""
    for word in words:
        assert word in result.stderr


def test_kernel_btf_keeps_every_rule():
    """The rules are the kernel's: its own BTF passes them (no false positives)."""
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        needs_kernel("no kernel BTF")
    Btf.kernel().validate()


@pytest.mark.parametrize("edit,words", [
    # (struct member offsets, bitfields, kinds, names: each a rule libbpf does not check)
    (lambda b, i: b.add(4, "s", vlen=1, sz=4, extra=struct.pack("<III", b.s("m"), i, 64)), "exceeds"),
    (lambda b, i: b.add(4, "s", vlen=1, sz=4, kflag=1, extra=struct.pack("<III", b.s("m"), i, 33 << 24)),
     "33 bits on a 32-bit"),
    (lambda b, i: b.add(5, "u", vlen=1, sz=4, extra=struct.pack("<III", b.s("m"), i, 8)), "union"),
    (lambda b, i: b.add(6, "e", vlen=0, sz=0), "size 0"),
    (lambda b, i: b.add(16, "f", sz=3), "size 3"),
    (lambda b, i: b.add(12, "f", sz=i), "not a func_proto"),
    (lambda b, i: b.add(2, "named", sz=i), "has a name"),
    (lambda b, i: b.add(8, "", sz=i), "no name"),
    (lambda b, i: b.add(2, kflag=1, sz=i), "kind_flag"),
    (lambda b, i: b.add(4, "s\xe9", vlen=0, sz=4), "not printable ASCII"),
    (lambda b, i: b.add(3, extra=struct.pack("<III", i, i, 0x40000000 + 1)), "32 bits"),
])
def test_btf_rules(edit, words):
    b = BtfBuilder()
    i = b.int_("int", 4, signed=True)
    edit(b, i)
    with pytest.raises(ObjectFormatError, match=words):
        Btf.from_bytes(b.blob()).validate()


# ---- malformed objects that passed open() -------------------------------------------------

def test_bss_variable_past_its_section(bundled):
    raw = set_symbol_value(_raw(bundled, "counters"), "per_slot_seen", 200)  # .bss is 80 bytes
    with pytest.raises(ObjectFormatError, match="per_slot_seen"):
        pybpf.open(raw, object_name="counters")


@pytest.mark.parametrize("edit", [
    lambda raw: break_symbol_name(raw, "on_getppid"),
    lambda raw: break_section_name(raw, "tracepoint/syscalls/sys_enter_getppid"),
    lambda raw: break_symbol_name(raw, "pairs"),
])
def test_names_that_are_not_utf8(bundled, edit):
    mutant = edit(_raw(bundled, "counters"))
    with pytest.raises(ObjectFormatError, match="UTF-8"):
        pybpf.open(mutant, object_name="counters")


def test_object_name_cut_mid_character(bundled):
    with pytest.raises(ObjectFormatError, match="15"):
        pybpf.open(_raw(bundled, "counters"), object_name="abcdefghijklmn\u00e9")  # é is bytes 15-16
    pybpf.open(_raw(bundled, "counters"), object_name="abcdefghijklm\u00e9").close()  # fits in 15


def test_failed_opens_leak_nothing(bundled):
    """~960 of 160k mutants leaked ~43 KB of libbpf object each on a UnicodeDecodeError."""
    mutant = break_symbol_name(_raw(bundled, "counters"), "on_getppid")
    result = run_python(textwrap.dedent(f"""
        import resource, pybpf
        raw = open({bundled("counters")!r}, "rb").read()
        mutant = bytes.fromhex({mutant.hex()!r})
        def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096
        def attempt():
            try:
                pybpf.open(mutant, object_name="counters").close()
            except pybpf.ObjectFormatError:
                pass
        for _ in range(50): attempt()
        before = rss()
        for _ in range(400): attempt()
        print("growth", rss() - before)
    """), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    growth = int(result.stdout.split()[-1])
    assert growth < 4 << 20, f"RSS grew {growth} bytes over 400 failed opens"


def test_file_name_that_is_not_utf8(bundled, tmp_path):
    path = tmp_path / os.fsdecode(b"caf\xe9-\xff.bpf.o")
    path.write_bytes(_raw(bundled, "counters"))
    with pybpf.open(path) as obj:
        assert "on_getppid" in obj.programs
        assert obj.spec.programs


# ---- special files --------------------------------------------------------------------------

def _open_in_child(path: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    return run_python(textwrap.dedent(f"""
        import resource, pybpf
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # the machine survives the old code
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            pybpf.open({path!r}{extra})
            print("opened")
        except pybpf.BpfError as e:
            print(type(e).__name__, e)
        print("maxrss_growth_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """), timeout=30)


def test_open_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.bpf.o"
    os.mkfifo(fifo)
    _expect_typed(_open_in_child(str(fifo)), "ObjectFormatError", "FIFO")


def test_open_dev_zero_is_refused_without_reading():
    _expect_typed(_open_in_child("/dev/zero"), "ObjectFormatError", "character device")


@pytest.mark.parametrize("size", [2 << 30, 300 << 20])
def test_open_sparse_file_costs_no_memory(tmp_path, size):
    path = tmp_path / "sparse.bpf.o"
    with open(path, "wb") as f:
        f.truncate(size)
    result = _open_in_child(str(path))
    _expect_typed(result, "ObjectFormatError")
    assert int(result.stdout.split()[-1]) < 50_000, result.stdout  # KB: far below the file's size


def test_btf_custom_path_directory_and_fifo(bundled, tmp_path):
    with pytest.raises(ObjectFormatError, match=f"{tmp_path}.*directory"):
        pybpf.open(bundled("counters"), btf_custom_path=str(tmp_path))
    fifo = tmp_path / "btf.fifo"
    os.mkfifo(fifo)
    _expect_typed(_open_in_child(bundled("counters"), f", btf_custom_path={str(fifo)!r}"),
                  "ObjectFormatError", str(fifo), "FIFO")


def test_btf_custom_path_is_validated(bundled, tmp_path):
    path = tmp_path / "cycle.btf"
    b = BtfBuilder()
    _pointer_array_cycle(b)
    path.write_bytes(b.blob())
    with pytest.raises(ObjectFormatError, match="cycle.btf.*cycle"):
        pybpf.open(bundled("counters"), btf_custom_path=str(path))


# ---- map sizes ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [2**32, -1, 2**64, "10", 1.5])
def test_max_entries_outside_u32(bundled, value):
    with pybpf.open(bundled("counters")) as obj:
        with pytest.raises(InvalidArgumentError, match="max_entries"):
            obj.maps["pairs"].max_entries = value
        obj.maps["pairs"].max_entries = 2**32 - 1  # the largest a u32 holds is accepted here
        assert obj.maps["pairs"].max_entries == 2**32 - 1


def test_estimate_follows_the_kernel():
    n_cpus = 4
    assert estimate_map_bytes(MapMemory("a", "array", 4, 8, 1000, 0, n_cpus)) == 8000
    assert estimate_map_bytes(MapMemory("a", "array", 4, 8, 1000, 1 << 10, n_cpus)) == 8192  # page-aligned
    assert estimate_map_bytes(MapMemory("p", "percpu_array", 4, 8, 1000, 0, n_cpus)) == 1000 * (8 + 32)
    prealloc = estimate_map_bytes(MapMemory("h", "hash", 4, 8, 1000, 0, n_cpus))
    assert prealloc >= 1000 * (8 + 8)
    assert estimate_map_bytes(MapMemory("h", "hash", 4, 8, 1000, 1, n_cpus)) < prealloc  # NO_PREALLOC
    assert estimate_map_bytes(MapMemory("h", "hash", 4, 8, 10**9, 0, n_cpus, created=False)) == 0
    with pytest.raises(MapMemoryError, match="allow_large_maps") as info:
        check_map_memory("o", [MapMemory("big", "hash", 4, 8, 1_962_934_276, 0, n_cpus)], available=24 << 30)
    assert "big" in str(info.value) and info.value.needed > 24 << 30
    assert check_map_memory("o", [MapMemory("s", "hash", 4, 8, 1000, 0, n_cpus)], available=24 << 30) > 0


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) * 1024


def test_load_refuses_maps_larger_than_the_machine(bundled, kernel):
    """Before: the kernel was asked (a hash of 1.9e9 entries ran the machine out of memory)."""
    with pybpf.open(bundled("counters")) as obj:
        slots = obj.maps["slots"]
        slots.max_entries = min(2 * _mem_total() // slots.value_size, 2**32 - 1)
        with pytest.raises(MapMemoryError, match="slots.*allow_large_maps"):
            obj.load()
        assert obj.state == "open"  # nothing was created; the object can still be fixed and loaded
        slots.max_entries = 16
        obj.load()


def test_load_override_asks_the_kernel(bundled, kernel):
    """With the override the kernel decides (here: vmalloc refuses more than RAM at once)."""
    with pybpf.open(bundled("counters")) as obj:
        slots = obj.maps["slots"]
        slots.max_entries = min(2 * _mem_total() // slots.value_size, 2**32 - 1)
        with pytest.raises(pybpf.BpfError) as info:
            obj.load(allow_large_maps=True)
        assert not isinstance(info.value, MapMemoryError)
        assert info.value.errno in (errno.ENOMEM, errno.E2BIG, errno.EINVAL)


def test_env_override(bundled, kernel):
    result = run_python(textwrap.dedent(f"""
        import pybpf
        with pybpf.open({bundled("counters")!r}) as obj:
            obj.maps["slots"].max_entries = 2**32 - 1
            try:
                obj.load()
            except pybpf.BpfError as e:
                print(type(e).__name__)
    """), env={"PYBPF_ALLOW_LARGE_MAPS": "1"})
    assert result.returncode == 0 and "MapMemoryError" not in result.stdout, result.stdout + result.stderr


# ---- unchecked arguments --------------------------------------------------------------------

def test_lookup_batch_chunk_and_update_flags(kernel):
    with pybpf.Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=64) as m:
        m[1] = 2
        with pytest.raises(InvalidArgumentError, match="chunk"):
            m.lookup_batch(chunk=2**40)
        keys, values = m.lookup_batch(chunk=2**32 - 1)  # clamped to max_entries: no 4 TiB buffers
        assert list(keys) == [1] and list(values) == [2]
        for flags in (-1, 2**64, 1.5, None):
            with pytest.raises(InvalidArgumentError, match="flags"):
                m.update(3, 4, flags=flags)
        assert 3 not in m
