"""Issue 10: close() racing load() and the pre-load setters, blocking calls that honour
Ctrl-C and close(), and the messages of calls refused for lack of privilege.

Races run in a subprocess: on the old code they died with SIGSEGV (libbpf's object freed
under bpf_object__load, or under a setter).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from pathlib import Path

import pybpf
from tests.conftest import ROOT, needs_kernel, run_unprivileged
from tests.mutate import run_python


def _survives(code: str, timeout: float = 120) -> str:
    result = run_python(textwrap.dedent(code), timeout=timeout)
    assert result.returncode == 0, f"child died (rc {result.returncode}): {result.stderr[-3000:]}"
    return result.stdout


def test_close_during_load(bundled, kernel):
    out = _survives(f"""
        import threading, time, random, pybpf
        outcomes = set()
        for i in range(30):
            obj = pybpf.open({bundled("counters")!r})
            def load():
                try:
                    obj.load()
                    outcomes.add("loaded")
                except pybpf.ClosedError:
                    outcomes.add("closed first")
            t = threading.Thread(target=load)
            t.start()
            time.sleep(random.random() * 0.05)
            obj.close()  # waits for a load in progress
            t.join()
            assert obj.closed
            try:
                obj.load()
                raise SystemExit("load after close worked")
            except pybpf.ClosedError:
                pass
        print(sorted(outcomes))
    """)
    assert "loaded" in out


def test_setters_racing_close(bundled):
    out = _survives(f"""
        import random, threading, time, pybpf
        raised = 0
        for i in range(60):
            obj = pybpf.open({bundled("counters")!r})
            running = threading.Event()
            def poke():
                global raised
                running.set()
                try:
                    for n in range(20000):
                        obj.rodata["want_tgid"] = n
                        obj.rodata["want_tgid"]
                        obj.data["increment"] = n
                        obj.maps["pairs"].max_entries = 100 + n
                        obj.maps["pairs"].key_size
                        obj.programs["on_getppid"].autoload = bool(n & 1)
                        obj.programs["on_getppid"].autoload
                        obj.bss.bytes()
                except pybpf.ClosedError:
                    raised += 1
            t = threading.Thread(target=poke)
            t.start()
            running.wait()
            time.sleep(random.random() * 0.01)
            obj.close()
            t.join()
        print("closed-errors", raised)
    """)
    assert int(out.split()[-1]) > 0


@pytest.fixture
def full_ring(kernel, bundled):
    """A user ring buffer with no room left (nothing consumes it)."""
    with pybpf.open(bundled("ringbuf_user")) as obj:
        obj.load()  # not attached: nothing drains the ring
        urb = pybpf.UserRingBuffer(obj.maps["requests"])
        with pytest.raises(pybpf.BufferFullError):
            while True:
                urb.submit(bytes(1024))
        yield urb
        urb.close()


def test_submit_waiting_for_room_wakes_on_close(full_ring):
    import threading
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            full_ring.submit(bytes(1024), timeout=60)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    full_ring.close()
    t.join(20)
    assert not t.is_alive(), "submit(timeout=60) still waiting after close()"
    assert time.monotonic() - started < 20
    assert len(errors) == 1 and isinstance(errors[0], pybpf.ClosedError), errors


def test_submit_waiting_for_room_honours_sigint(kernel, bundled):
    code = textwrap.dedent(f"""
        import os, signal, threading, time, pybpf
        with pybpf.open({bundled("ringbuf_user")!r}) as obj:
            obj.load()
            urb = pybpf.UserRingBuffer(obj.maps["requests"])
            try:
                while True:
                    urb.submit(bytes(1024))
            except pybpf.BufferFullError:
                pass
            # Python's own Ctrl-C handler, even when started as a background job (SIGINT ignored)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            started = time.monotonic()
            try:
                urb.submit(bytes(1024), timeout=60)
                print("submitted")
            except KeyboardInterrupt:
                print("interrupted after", round(time.monotonic() - started, 2))
            urb.close()
    """)
    result = run_python(code, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "interrupted after" in result.stdout, result.stdout
    assert float(result.stdout.split()[-1]) < 30  # not the 60 s timeout


def test_enable_stats_without_cap_sys_admin_leaves_no_traceback(kernel):
    result = run_unprivileged(textwrap.dedent("""
        import gc, pybpf
        try:
            pybpf.enable_stats()
        except pybpf.BpfPermissionError as e:
            print("refused", e.capability)
        gc.collect()
    """))
    assert "refused CAP_SYS_ADMIN" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


def _run_with_bpf_caps(code: str) -> subprocess.CompletedProcess[str]:
    """As user nobody with CAP_BPF and CAP_PERFMON, and CAP_DAC_READ_SEARCH until ``code`` calls
    drop_dac_read_search() (it reads tracefs; it also lets nobody import pybpf and numpy from a
    checkout and venv under /root, as in the Debian 13 check)."""
    if shutil.which("setpriv") is None:
        needs_kernel("needs setpriv (util-linux)")
    caps = "bpf,perfmon,dac_read_search"
    code = textwrap.dedent("""
        import ctypes

        def drop_dac_read_search():
            # capset(2), version 3: CAP_PERFMON (38) and CAP_BPF (39) kept in every set, nothing else
            hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
            keep = (1 << (38 - 32)) | (1 << (39 - 32))
            data = (ctypes.c_uint32 * 6)(0, 0, 0, keep, keep, keep)
            assert ctypes.CDLL(None, use_errno=True).capset(hdr, data) == 0, ctypes.get_errno()
    """) + code
    plus = ",".join(f"+{c}" for c in caps.split(","))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HOME="/tmp")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps=-all,{plus}",
           f"--ambient-caps={plus}", f"--bounding-set=-all,{plus}", sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd="/tmp")


def test_unreadable_tracefs_is_named(kernel, bundled):
    st = os.stat("/sys/kernel/tracing")
    if st.st_mode & 0o005:
        pytest.skip("tracefs is readable by others on this machine: nothing to report")
    # the object is copied where nobody can read it
    result = _run_with_bpf_caps(textwrap.dedent(f"""
        import importlib, pybpf, pybpf.kernel.fs, pybpf.kernel.features, pybpf.link
        for kind in pybpf.link.KINDS:  # each attach kind's file is imported on first use
            importlib.import_module(f"pybpf.link.{{kind.module}}")
        with pybpf.open(bytes.fromhex({Path(bundled("counters")).read_bytes().hex()!r}),
                        object_name="counters") as obj:
            obj.load()
            drop_dac_read_search()
            try:
                obj.programs["on_getppid"].attach()
                print("attached")
            except pybpf.BpfError as e:
                print(type(e).__name__, e)
    """))
    out = result.stdout + result.stderr
    if "attached" not in out and "Error" not in result.stdout:
        pytest.skip(f"this Python cannot run as nobody without CAP_DAC_READ_SEARCH: {result.stderr[-300:]}")
    assert "tracefs is mounted at /sys/kernel/tracing" in out, out
    assert "mounting" not in out and "CAP_SYS_ADMIN" not in out, out


def test_pinned_map_with_another_definition(bundled, bpffs):
    pin = os.path.join(bpffs, "pairs")
    with pybpf.Map.create("hash", key_size=4, value_size=8, max_entries=10, name="pairs") as other:
        other.pin(pin)
    with pybpf.open(bundled("counters")) as obj:
        obj.maps["pairs"].set_pin_path(pin)
        with pytest.raises(pybpf.BpfError, match=f"pinned at {pin}: parameter mismatch.*max_entries"):
            obj.load()
