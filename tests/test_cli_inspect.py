"""``pybpf inspect`` and ``pybpf btf dump``: JSON checked against the library's own answers,
clean one-line errors for bad input, usage errors, and mutated real objects fed to ``inspect``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import pybpf
from pybpf import cheader
from pybpf.btf.types import Btf
from pybpf.cli import app
from pybpf.errors import BpfError, ObjectFormatError
from pybpf.spec.elf import ObjectSpec

from .conftest import needs_kernel

runner = CliRunner(env={"COLUMNS": "250", "LINES": "50"})  # tables must not wrap what tests read
KERNEL_BTF = "/sys/kernel/btf/vmlinux"


def invoke(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args: str) -> object:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_clean_error(result: object, *needles: str) -> str:
    """Exit 1, exactly one line on stderr containing every needle, no traceback anywhere."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def btf_range(data: bytes) -> tuple[int, int]:
    """File offsets of the .BTF section of an ELF image."""
    import io
    section = ELFFile(io.BytesIO(data)).get_section_by_name(".BTF")
    return section["sh_offset"], section["sh_offset"] + section["sh_size"]


# ---- JSON against the library ----------------------------------------------------------

@pytest.mark.parametrize("name", pybpf.bundled_names())
def test_inspect_json_matches_spec(name: str) -> None:
    path = pybpf.bundled(name)
    doc = run_json("inspect", "--json", path)
    spec = ObjectSpec.from_file(path)
    assert set(doc) >= {"programs", "maps", "globals", "core_relocations", "btf"}
    assert [(p["name"], p["section"], p["type"], p["insns"], p["license"]) for p in doc["programs"]] == \
        [(p.name, p.section, p.prog_type, p.insn_count, p.license) for p in spec.programs]
    assert [(m["name"], m["type"], m["key_size"], m["value_size"], m["max_entries"], m["flags"],
             m["pinning"]) for m in doc["maps"]] == \
        [(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flag_names, m.pinning)
         for m in spec.maps]
    assert [(g["section"], g["name"], g["type"], g["offset"], g["size"], bytes.fromhex(g["initial"]))
            for g in doc["globals"]] == \
        [(g.section, g.name, g.type_name, g.offset, g.size, g.initial) for g in spec.globals]
    assert [(r["program"], r["insn"], r["kind"], r["access"], r["path"]) for r in doc["core_relocations"]] == \
        [(r.program, r.insn_index, r.kind, r.access, r.path) for r in spec.core_relocations]
    assert doc["btf"]["kinds"] == spec.btf_summary()
    assert doc["btf"]["types"] == len(spec.btf) - 1  # every type but void (id 0)


def test_inspect_spells_out_types_and_relocations(bundled) -> None:
    doc = run_json("inspect", "--json", bundled("syscount"))
    counts = next(m for m in doc["maps"] if m["name"] == "counts")
    assert (counts["key_type"], counts["value_type"], counts["flags"]) == ("__u32", "__u64", ["MMAPABLE"])
    relo = doc["core_relocations"][0]
    assert (relo["program"], relo["kind"], relo["path"]) == \
        ("count_syscalls", "field_byte_offset", "trace_event_raw_sys_enter.id")
    skip = next(g for g in doc["globals"] if g["name"] == "skip_tgid")
    assert (skip["section"], skip["value"]) == (".rodata", 0)

    table = invoke("inspect", bundled("syscount"))
    assert table.exit_code == 0, table.output
    for text in ("count_syscalls", "raw_syscalls/sys_enter", "MMAPABLE", "trace_event_raw_sys_enter.id",
                 "skip_tgid", "field_byte_offset"):
        assert text in table.stdout


def test_inspect_kernel_btf_is_fast() -> None:
    if not os.path.exists(KERNEL_BTF):
        needs_kernel("no kernel BTF")
    start = time.perf_counter()
    doc = run_json("inspect", "--btf", KERNEL_BTF, "--json")
    elapsed = time.perf_counter() - start
    btf = Btf.from_file(KERNEL_BTF)
    assert doc["btf"]["kinds"] == btf.kind_counts()
    assert doc["btf"]["types"] == len(btf) - 1 > 50_000
    assert elapsed < 10, f"inspect --btf vmlinux took {elapsed:.1f} s"


def test_inspect_subprocess(bundled) -> None:
    proc = subprocess.run([sys.executable, "-m", "pybpf.cli", "inspect", "--json", bundled("counters")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [p["name"] for p in json.loads(proc.stdout)["programs"]] == \
        [p.name for p in ObjectSpec.from_file(bundled("counters")).programs]


# ---- bad input --------------------------------------------------------------------------

@pytest.fixture
def syscount_bytes(bundled) -> bytes:
    return Path(bundled("syscount")).read_bytes()


def _corrupt(data: bytes, what: str) -> bytes:
    raw = bytearray(data)
    start, end = btf_range(data)
    type_off = int.from_bytes(raw[start + 8:start + 12], "little")
    first_type = start + 24 + type_off
    if what == "no-btf":
        return bytes(raw).replace(b".BTF", b".XTF")
    if what == "truncated":
        return bytes(raw[: start + (end - start) // 2])
    if what == "bad-magic":
        raw[start:start + 2] = b"\x00\x00"
    elif what == "absurd-type-len":
        raw[start + 12:start + 16] = (0x7FFFFFF0).to_bytes(4, "little")
    elif what == "absurd-vlen":  # first type claims 65535 members
        info = int.from_bytes(raw[first_type + 4:first_type + 8], "little")
        raw[first_type + 4:first_type + 8] = ((info & ~0xFFFF) | 0xFFFF | (4 << 24)).to_bytes(4, "little")
    elif what == "unknown-kind":
        info = int.from_bytes(raw[first_type + 4:first_type + 8], "little")
        raw[first_type + 4:first_type + 8] = ((info & ~(0x1F << 24)) | (27 << 24)).to_bytes(4, "little")
    elif what == "string-offset":  # the first type's name points far outside the strings
        raw[first_type:first_type + 4] = (0x00FFFFFF).to_bytes(4, "little")
    return bytes(raw)


@pytest.mark.parametrize("what, phrase", [
    ("no-btf", "no .BTF section"),
    ("truncated", "past"),
    ("bad-magic", "magic"),
    ("absurd-type-len", "exceed"),
    ("absurd-vlen", "runs past"),
    ("unknown-kind", "unknown kind"),
    ("string-offset", "string offset"),
])
def test_inspect_bad_btf(tmp_path: Path, syscount_bytes: bytes, what: str, phrase: str) -> None:
    path = tmp_path / f"{what}.bpf.o"
    path.write_bytes(_corrupt(syscount_bytes, what))
    assert_clean_error(invoke("inspect", path), str(path), phrase)
    # --debug shows the traceback: the exception comes out, and it is pybpf's own
    debug = invoke("--debug", "inspect", path)
    assert isinstance(debug.exception, ObjectFormatError), debug.exception


@pytest.mark.parametrize("content, phrase", [
    (b"", "empty file"),
    (b"#!/bin/sh\necho hello\n", "not an ELF"),
    (b"\x7fELF\x02\x01\x01", "truncated ELF header"),
])
def test_inspect_not_elf(tmp_path: Path, content: bytes, phrase: str) -> None:
    path = tmp_path / "bad.o"
    path.write_bytes(content)
    assert_clean_error(invoke("inspect", path), str(path), phrase)
    assert_clean_error(invoke("inspect", "--json", path), str(path), phrase)


def test_inspect_foreign_elf_and_missing_file(tmp_path: Path) -> None:
    assert_clean_error(invoke("inspect", sys.executable), "not BPF")
    missing = tmp_path / "nope.bpf.o"
    assert_clean_error(invoke("inspect", missing), str(missing))
    assert_clean_error(invoke("inspect", "--btf", missing), str(missing))


def test_bad_input_subprocess_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "text.o"
    path.write_text("not an object\n")
    proc = subprocess.run(["pybpf", "inspect", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr and "not an ELF" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    debug = subprocess.run(["pybpf", "--debug", "inspect", str(path)], capture_output=True, text=True,
                           timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ObjectFormatError" in debug.stderr


@pytest.mark.parametrize("args", [
    ["inspect"],                                          # neither object nor --btf
    ["inspect", "a.o", "--btf", "b"],                     # both
    ["inspect", "--bogus", "a.o"],
    ["btf", "dump"],                                      # neither FILE nor --kernel
    ["btf", "dump", "x.o", "--kernel"],
    ["btf", "dump", "--kernel", "--format", "xml"],
    ["prog", "show", "notanumber"],
    ["map", "dump"],
    ["test-run", "x.o"],
    ["demo", "--duration", "-3"],
    ["nosuchcommand"],
])
def test_wrong_usage_gets_usage_error(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, (args, result.output)
    assert "Usage:" in result.output
    assert "Traceback" not in result.output


# ---- mutated real objects ----------------------------------------------------------------

@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(*_: object) -> None:
        raise TimeoutError(f"inspect did not finish within {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_ORIGINALS = {name: Path(pybpf.bundled(name)).read_bytes()
              for name in ("syscount", "counters", "net") if name in pybpf.bundled_names()}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_inspect_mutated_objects(tmp_path: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(_ORIGINALS)), label="object")
    raw = bytearray(_ORIGINALS[name])
    start, end = btf_range(bytes(raw))
    where = data.draw(st.sampled_from(["btf", "btf-header", "anywhere"]), label="where")
    lo, hi = {"btf": (start, end), "btf-header": (start, start + 24), "anywhere": (0, len(raw))}[where]
    for _ in range(data.draw(st.integers(1, 6), label="flips")):
        raw[data.draw(st.integers(lo, hi - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="truncate"):
        del raw[data.draw(st.integers(0, len(raw))):]
    path = tmp_path / "mutant.bpf.o"
    path.write_bytes(bytes(raw))

    with time_limit(30):
        debug = invoke("--debug", "inspect", "--json", path)
        plain = invoke("inspect", "--json", path)
    # Under --debug an error comes out as an exception: it must be one of pybpf's own.
    if debug.exception is not None and not isinstance(debug.exception, SystemExit):
        assert isinstance(debug.exception, BpfError), repr(debug.exception)
    if plain.exit_code == 0:
        assert set(json.loads(plain.stdout)) >= {"programs", "maps", "globals", "core_relocations", "btf"}
    else:
        assert_clean_error(plain, str(path))


# ---- btf dump ----------------------------------------------------------------------------

def test_btf_dump_object_c_and_json(bundled) -> None:
    path = bundled("counters")
    c = invoke("btf", "dump", path)
    assert c.exit_code == 0, c.output
    assert c.stdout == cheader.dump_c(path)
    assert "struct pair {" in c.stdout

    doc = run_json("btf", "dump", path, "--format", "json")
    btf = Btf.from_file(path)
    assert [t["id"] for t in doc["types"]] == list(range(1, len(btf)))
    for t in doc["types"]:
        assert (t["kind"], t["name"]) == (btf[t["id"]].kind, btf[t["id"]].name)
        if "size" in t:
            assert t["size"] == btf.sizeof(t["id"])


def test_btf_dump_one_type(bundled) -> None:
    path = bundled("counters")
    c = invoke("btf", "dump", path, "--type", "pair")
    assert c.exit_code == 0, c.output
    assert c.stdout == cheader.dump_c(path, type_names=["pair"], guard=False)
    assert "struct pair {" in c.stdout and "__VMLINUX_H__" not in c.stdout

    doc = run_json("btf", "dump", path, "--type", "pair", "--format", "json")
    btf = Btf.from_file(path)
    by_id = {t["id"]: t for t in doc["types"]}
    pair = by_id[btf.find("pair", "struct")]
    assert [m["name"] for m in pair["members"]] == [m[0] for m in btf[pair["id"]].members]
    for member in pair["members"]:  # everything the struct needs is there, down to the ints
        tid = member["type"]
        while tid:
            assert tid in by_id
            tid = by_id[tid].get("type", 0)


def test_btf_dump_errors(tmp_path: Path, bundled, syscount_bytes: bytes) -> None:
    assert_clean_error(invoke("btf", "dump", bundled("counters"), "--type", "no_such_type"),
                       "no_such_type")
    assert_clean_error(invoke("btf", "dump", bundled("counters"), "--type", "no_such_type", "-f", "json"),
                       "no_such_type", bundled("counters"))
    for what, phrase in (("no-btf", "no .BTF section"), ("bad-magic", "magic")):
        path = tmp_path / f"{what}.o"
        path.write_bytes(_corrupt(syscount_bytes, what))
        assert_clean_error(invoke("btf", "dump", path), str(path), phrase)
        assert_clean_error(invoke("btf", "dump", path, "-f", "json"), str(path), phrase)


def _raw_btf(name: str) -> bytes:
    data = _ORIGINALS[name]
    start, end = btf_range(data)
    return data[start:end]


def forked(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a forked child, so that a crash in C (libbpf) fails this test
    instead of killing the test run; assertion messages come back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        os.close(read_end)
        code, message = 0, b""
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            code, message = 1, f"{type(exc).__name__}: {exc}".encode()
        os.write(write_end, message[:60_000])
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        pytest.fail(f"crashed with signal {signal.Signals(os.WTERMSIG(status)).name}")
    assert os.WEXITSTATUS(status) == 0, message


def _check_commands(path: Path) -> None:
    for args in (["inspect", "--btf", path, "--json"], ["btf", "dump", path],
                 ["btf", "dump", path, "-f", "json"]):
        with time_limit(30):
            debug = invoke("--debug", *args)
            plain = invoke(*args)
        if debug.exception is not None and not isinstance(debug.exception, SystemExit):
            assert isinstance(debug.exception, BpfError), (args, repr(debug.exception))
        if plain.exit_code != 0:
            assert_clean_error(plain, str(path))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_raw_btf(tmp_path: Path, data: st.DataObject) -> None:
    """Raw BTF blobs, mutated, through ``inspect --btf`` and both ``btf dump`` formats
    (the C one goes on to libbpf's btf_dump when the pure parser accepts the blob)."""
    raw = bytearray(_raw_btf(data.draw(st.sampled_from(sorted(_ORIGINALS)), label="object")))
    header = data.draw(st.booleans(), label="header only")
    for _ in range(data.draw(st.integers(1, 6), label="flips")):
        raw[data.draw(st.integers(0, 23 if header else len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="truncate"):
        del raw[data.draw(st.integers(0, len(raw))):]
    path = tmp_path / "mutant.btf"
    path.write_bytes(bytes(raw))
    forked(lambda: _check_commands(path))


def test_btf_dump_member_of_incomplete_type(tmp_path: Path) -> None:
    """A struct member whose type became a forward declaration (kind flipped from
    typedef to fwd): libbpf 1.1's btf_dump divides by its zero alignment (SIGFPE)."""
    raw = bytearray(_raw_btf("net"))
    btf = Btf.from_bytes(bytes(raw))
    u64 = btf.find("__u64", "typedef")
    type_off = int.from_bytes(raw[8:12], "little")
    pos = 24 + type_off
    for _ in range(u64 - 1):  # walk to the type's record with the parser's own sizes
        info = int.from_bytes(raw[pos + 4:pos + 8], "little")
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        pos += 12 + {1: 4, 3: 12, 14: 4, 17: 4}.get(kind, 0) + vlen * {4: 12, 5: 12, 6: 8, 13: 8, 15: 12,
                                                                        19: 12}.get(kind, 0)
    info = int.from_bytes(raw[pos + 4:pos + 8], "little")
    raw[pos + 4:pos + 8] = ((info & ~(0x1F << 24)) | (7 << 24)).to_bytes(4, "little")
    raw[pos + 8:pos + 12] = bytes(4)
    assert Btf.from_bytes(bytes(raw)).kind_of(u64) == "fwd"
    path = tmp_path / "fwd-member.btf"
    path.write_bytes(bytes(raw))
    forked(lambda: _check_commands(path))
