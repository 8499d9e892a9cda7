"""Bad input and refusals: each gets a typed error a person can act on, and nothing leaks."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import textwrap

import pytest
from pathlib import Path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf
from pybpf import (
    BpfError,
    BpfPermissionError,
    ClosedError,
    KeyNotFoundError,
    NotSupportedError,
    ObjectFormatError,
    VerifierError,
)
from tests.conftest import new_fds, open_fds, run_unprivileged


def test_error_classes_are_builtins():
    assert issubclass(BpfError, OSError)
    assert issubclass(KeyNotFoundError, KeyError) and issubclass(KeyNotFoundError, BpfError)
    assert issubclass(BpfPermissionError, PermissionError)
    assert issubclass(ObjectFormatError, ValueError)
    assert issubclass(ClosedError, ValueError)
    err = BpfError("doing x", errno.EINVAL)
    assert err.errno == errno.EINVAL and "EINVAL" in str(err) and "doing x" in str(err)


@pytest.mark.parametrize("data, message", [
    (b"", "empty|too short|truncated"),
    (b"\x7fELF", "truncated|too short"),
    (bytes(range(256)) * 4, "not an ELF|ELF"),
])
def test_not_an_object(tmp_path, data, message):
    path = tmp_path / "bad.bpf.o"
    path.write_bytes(data)
    with pytest.raises(ObjectFormatError, match=f"(?i){message}") as info:
        pybpf.open(path)
    assert str(path) in str(info.value)
    with pytest.raises(ObjectFormatError):
        pybpf.open(data)


def test_elf_for_another_machine():
    with pytest.raises(ObjectFormatError, match="(?i)x86-64.*not (a )?BPF|not BPF"):
        pybpf.open(sys.executable if os.path.exists(sys.executable) else "/bin/true")


def test_non_bpf_elf_object(tmp_path):
    source = tmp_path / "plain.c"
    source.write_text("int answer(void) { return 42; }\n")
    obj = tmp_path / "plain.o"
    subprocess.run(["cc", "-c", str(source), "-o", str(obj)], check=True)
    with pytest.raises(ObjectFormatError, match="(?i)not (a )?BPF|x86-64"):
        pybpf.open(obj)


def test_truncated_objects(bundled, tmp_path):
    data = Path(bundled("counters")).read_bytes()
    for cut in (16, 63, 64, 500, len(data) // 3, len(data) // 2, len(data) - 100):
        with pytest.raises(ObjectFormatError):
            pybpf.open(data[:cut])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_objects_never_crash(bundled, data):
    """Flipped bytes: either a clean pybpf error at open, or an object that opens and closes.

    Each attempt runs in a subprocess so that a crash inside libbpf would show up as a
    failed test (a non-zero signal exit) instead of taking the test run down."""
    original = Path(bundled("net")).read_bytes()
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    code = textwrap.dedent("""
        import sys, pybpf
        data = sys.stdin.buffer.read()
        try:
            with pybpf.open(data) as obj:
                list(obj.programs); list(obj.maps)
        except pybpf.BpfError as exc:
            print(type(exc).__name__)
    """)
    result = subprocess.run([sys.executable, "-c", code], input=bytes(mutated), capture_output=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr.decode()[-2000:])


def test_verifier_rejection_carries_program_and_log(bundled, kernel):
    with pybpf.open(bundled("rejected")) as obj:
        with pytest.raises(VerifierError) as info:
            obj.load()
        assert obj.state == "failed"
    error = info.value
    assert error.program == "unchecked_lookup"
    assert "unchecked_lookup" in str(error)
    assert "invalid mem access" in str(error) and "processed" not in str(error)
    assert "invalid mem access" in error.log or "map_value_or_null" in error.log
    assert error.source_line is not None and "*value += 1" in error.source_line
    assert error.errno in (errno.EACCES, errno.EINVAL)


@pytest.mark.parametrize("program, kind", [
    ("on_fentry", "fentry"), ("on_fexit", "fexit"), ("on_fmod_ret", "fmod_ret"), ("on_lsm", "lsm"),
])
def test_refused_tracing_kinds_say_so(bundled, kernel, program, kind):
    with pybpf.open(bundled("refused")) as obj:
        for name, prog in obj.programs.items():
            prog.autoload = name == program
        try:
            obj.load()
        except NotSupportedError as exc:
            assert exc.feature == kind
            assert f"{kind} program {program!r}" in str(exc)
            assert "EPERM before verification" in str(exc)
            assert "fentry/fexit/fmod_ret/lsm" in str(exc)
            return
        # A kernel that allows it: then it must really attach.
        obj.programs[program].attach().close()


@pytest.mark.parametrize("program", ["on_kprobe", "on_kretprobe"])
def test_kprobes_absent_say_so(bundled, kernel, program):
    with pybpf.open(bundled("refused")) as obj:
        for name, prog in obj.programs.items():
            prog.autoload = name == program
        obj.load()
        if pybpf.kernel.features.kprobes_available():
            with obj.programs[program].attach():
                pass
            return
        with pytest.raises(NotSupportedError, match="kprobes are not available in this kernel") as info:
            obj.programs[program].attach()
        assert info.value.feature == "kprobe"
        with pytest.raises(NotSupportedError, match="CONFIG_KPROBES"):
            obj.programs[program].attach_kprobe("do_nanosleep")


def test_unprivileged_load_names_the_capability(bundled, kernel):
    code = textwrap.dedent(f"""
        import pybpf
        obj = pybpf.open({bundled("counters")!r})
        try:
            obj.load()
        except pybpf.BpfPermissionError as exc:
            print("PERM", exc.capability, "|", exc)
        finally:
            obj.close()
    """)
    result = run_unprivileged(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PERM CAP_BPF"), result.stdout + result.stderr
    assert "run as root or grant" in result.stdout


def test_unprivileged_inspection_still_works(bundled, kernel):
    """Opening (pure parsing + libbpf's open) needs no privilege."""
    code = f"import pybpf; obj = pybpf.open({bundled('counters')!r}); print(sorted(obj.programs)); obj.close()"
    result = run_unprivileged(code)
    assert result.returncode == 0, result.stderr
    assert "on_getppid" in result.stdout


def test_attach_before_load_and_after_close(bundled, kernel):
    obj = pybpf.open(bundled("counters"))
    with pytest.raises(BpfError, match="after a successful load"):
        obj.programs["on_getppid"].attach()
    obj.load()
    obj.close()
    with pytest.raises(ClosedError):
        obj.programs


def test_no_fd_leak_over_200_cycles(bundled, kernel):
    path = bundled("counters")

    def cycle() -> None:
        with pybpf.open(path) as obj:
            obj.rodata["want_tgid"] = os.getpid()
            obj.load()
            link = obj.programs["on_getppid"].attach()
            os.getppid()
            assert int(obj.bss["hits"]) == 1
            del link  # the object closes it

    cycle()  # warm caches (kernel BTF fd inside libbpf, etc.)
    before = open_fds()
    for _ in range(200):
        cycle()
    assert not new_fds(before)


def test_no_fd_leak_on_failed_loads(bundled, kernel, tmp_path):
    cycle_path = bundled("rejected")
    before = open_fds()
    for _ in range(20):
        with pybpf.open(cycle_path) as obj:
            with pytest.raises(VerifierError):
                obj.load()
        with pytest.raises(ObjectFormatError):
            pybpf.open(b"\x7fELF" + struct.pack("<I", 0) * 20)
    assert not new_fds(before)


def test_pin_errors_say_what_bpffs_wants(bundled, kernel, bpffs, tmp_path):
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        slots = obj.maps["slots"]
        with pytest.raises(BpfError, match="does not allow '.'"):
            slots.pin(f"{bpffs}/counters.slots")
        with pytest.raises(BpfError, match="not on a bpffs"):
            slots.pin(str(tmp_path / "slots"))
        slots.pin(f"{bpffs}/slots")
        with pytest.raises(BpfError, match="already pinned"):
            obj.programs["on_getppid"].pin(f"{bpffs}/slots")
        with pybpf.Map.from_pin(f"{bpffs}/slots") as pinned:
            assert pinned.info.id == slots.info.id


def test_missing_fentry_target_quotes_libbpfs_error_line(bundled, kernel):
    """The reason is libbpf's error line for the program, not its first (debug) line, which
    is now the log of a CO-RE relocation that succeeded (``relo #0: <byte_off> ... ki_pos``)."""
    with pybpf.open(bundled("refused")) as obj:
        for name, prog in obj.programs.items():
            prog.autoload = name == "on_missing_target"
        with pytest.raises(pybpf.BpfError) as info:
            obj.load()
    message = str(info.value)
    assert "on_missing_target" in message
    assert "pybpf_no_such_function" in message and "relo #" not in message, message
    assert "failed to find kernel BTF type ID" in message, message
