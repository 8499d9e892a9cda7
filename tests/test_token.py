"""BPF tokens: uid 65534, with no capability in the initial user namespace, in a user and mount
namespace of its own, loads and runs a bundled object through a token made from a bpffs that
this (root) test mounts for it with delegate_* options; without the token the same load is a
BpfPermissionError naming what is missing.

The delegation follows the kernel's own selftest: the child makes the bpffs context in its
namespace (``fsopen``) and passes it over a unix socket; root sets the ``delegate_*`` options
(only the initial namespace may) and creates the superblock; the child mounts it in its private
mount namespace. The object is the README's ``counters``, through its raw tracepoint program: a
tracepoint or kprobe needs ``perf_event_open``, which tokens do not delegate.

Loading through a token needs libbpf >= 1.4 (Debian 13): with libbpf 1.1 (Debian 12) ``open``
refuses ``token_path=`` and ``$LIBBPF_BPF_TOKEN_PATH`` with NotSupportedError naming 1.4, and the
token itself is made with pybpf's own BPF_TOKEN_CREATE on both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest

import pybpf
from tests.conftest import ROOT, needs_kernel

_libc = None

CHILD = textwrap.dedent(r'''
    import ctypes, errno, json, os, socket, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def check(ret, what):
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return ret

    sock = socket.socket(fileno=int(sys.argv[1]))
    mountpoint, obj_path = sys.argv[2], sys.argv[3]
    # Everything from the checkout is read now, while CAP_DAC_READ_SEARCH still lets uid 65534 read
    # it (a checkout under /root): in its user namespace the process has no capability outside.
    import importlib, pkgutil
    import pybpf
    for module in pkgutil.walk_packages(pybpf.__path__, "pybpf."):  # pybpf imports lazily: all of it now
        if not module.name.startswith(("pybpf.cli", "pybpf.tools", "pybpf.bench", "pybpf.metrics", "pybpf.upgrade")):
            importlib.import_module(module.name)
    pybpf.LIBBPF_VERSION
    with open(obj_path, "rb") as f:
        obj_bytes = f.read()
    pybpf.open(obj_bytes, object_name="counters").close()  # the parse's lazy imports (no load: no caps)
    CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
    check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", "0 65534 1"), ("gid_map", "0 65534 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    MS_REC, MS_PRIVATE = 0x4000, 1 << 18
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    fs_fd = check(libc.syscall(430, b"bpf", 0), "fsopen(bpf)")           # this namespace's bpffs
    socket.send_fds(sock, [b"fs"], [fs_fd])
    assert sock.recv(16) == b"configured"                              # root set delegate_*
    mnt_fd = check(libc.syscall(432, fs_fd, 0, 0), "fsmount")
    os.makedirs(mountpoint, exist_ok=True)
    check(libc.syscall(429, mnt_fd, b"", -100, mountpoint.encode(), 4), "move_mount")  # MOVE_MOUNT_F_EMPTY_PATH

    import pybpf
    from pybpf.kernel.features import capabilities
    from pybpf.kernel.token import Token
    out = {"uid": os.getuid(), "caps_in_userns": sorted(capabilities())}
    with Token(mountpoint) as token:
        out["token_fd"] = token.fileno() >= 0

    def run(**open_kw):
        try:
            with pybpf.open(obj_bytes, object_name="counters", **open_kw) as obj:
                for name, prog in obj.programs.items():
                    prog.autoload = name == "on_raw_sys_enter"
                obj.rodata["want_tgid"] = os.getpid()
                obj.load()
                with obj.programs["on_raw_sys_enter"].attach():
                    for _ in range(5):
                        os.getppid()
                return {"raw_hits": int(obj.bss["per_slot_seen"][SLOT_RAW_TP])}
        except pybpf.BpfError as exc:
            return {"error": type(exc).__name__, "message": str(exc),
                    "capability": getattr(exc, "capability", None), "feature": getattr(exc, "feature", None)}

    SLOT_RAW_TP = int(sys.argv[4])
    out["no_token"] = run(token_path="")
    out["token_path"] = run(token_path=mountpoint)
    os.environ["LIBBPF_BPF_TOKEN_PATH"] = mountpoint
    out["token_env"] = run()
    print(json.dumps(out))
''')


def _fsconfig(fd: int, cmd: int, key: bytes | None = None, value: bytes | None = None) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(431, fd, cmd, key, value, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fsconfig({key!r}): {os.strerror(err)}")


def _delegate(fs_fd: int) -> None:
    """Root's part: the delegate_* options (only the initial user namespace may set them), then the
    superblock (FSCONFIG_SET_STRING = 1, FSCONFIG_CMD_CREATE = 6)."""
    for option in (b"delegate_cmds", b"delegate_maps", b"delegate_progs", b"delegate_attachs"):
        _fsconfig(fs_fd, 1, option, b"any")
    _fsconfig(fs_fd, 6)


def _slot_raw_tp() -> int:
    """counters.bpf.c's slot of its raw tracepoint program (an enum in the source)."""
    import re

    source = (ROOT / "bpf_src" / "counters.bpf.c").read_text()
    enum = re.search(r"enum\s*slot\s*{([^}]*)}", source)
    assert enum is not None
    names = [part.split("=")[0].strip() for part in enum[1].split(",") if part.strip()]
    return names.index("SLOT_RAW_TP")


def _run_child(bundled) -> dict:
    if shutil.which("setpriv") is None:
        needs_kernel("needs setpriv (util-linux)")
    probe = subprocess.run(["unshare", "--user", "true"], capture_output=True, text=True)
    if probe.returncode != 0:  # e.g. inside a chroot: the kernel refuses new user namespaces there
        needs_kernel(f"this process may not make a user namespace ({probe.stderr.strip()}): a chroot, or "
                     f"user.max_user_namespaces = 0")
    parent, child = socket.socketpair()
    mountpoint = f"/tmp/pybpf-token-{uuid.uuid4().hex[:8]}"
    # one thread: unshare(CLONE_NEWUSER) refuses a multithreaded process (numpy's BLAS starts threads)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HOME="/tmp", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("LIBBPF_BPF_TOKEN_PATH", None)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all,+dac_read_search",
           "--ambient-caps=+dac_read_search", "--bounding-set=-all,+dac_read_search", sys.executable, "-c", CHILD, str(child.fileno()), mountpoint, bundled("counters"),
           str(_slot_raw_tp())]
    with parent:
        with child:
            proc = subprocess.Popen(cmd, pass_fds=[child.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env, cwd="/tmp")
        try:
            parent.settimeout(30)
            _, fds, _, _ = socket.recv_fds(parent, 16, 1)
            if len(fds) != 1:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"the child sent no bpffs context: {err.strip()[-2000:]}")
            try:
                _delegate(fds[0])
            finally:
                os.close(fds[0])
            parent.sendall(b"configured")
            out, err = proc.communicate(timeout=120)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_unprivileged_user_loads_and_runs_through_a_token(bundled, kernel):
    result = _run_child(bundled)
    assert result["uid"] == 0  # root only in its own namespace: uid 65534 outside
    assert result["token_fd"] is True  # pybpf's own BPF_TOKEN_CREATE, any libbpf
    refused = result["no_token"]
    assert refused["error"] == "BpfPermissionError", refused
    assert "CAP_BPF" in refused["capability"] and "token_path=" in refused["message"]
    if pybpf.features.libbpf_version() < (1, 4):
        for case in ("token_path", "token_env"):
            assert result[case]["error"] == "NotSupportedError", result[case]
            assert "needs libbpf >= 1.4" in result[case]["message"] and result[case]["feature"] == "bpf_token"
        assert "LIBBPF_BPF_TOKEN_PATH" in result["token_env"]["message"]
        return
    for case in ("token_path", "token_env"):
        assert result[case] == {"raw_hits": result[case].get("raw_hits")} and result[case]["raw_hits"] >= 5, result


def test_token_errors_name_the_cause(tmp_path, kernel):
    from pybpf.kernel.token import Token

    with pytest.raises(pybpf.BpfError, match="not the root of a bpffs mount"):
        Token(tmp_path)
    with pytest.raises(pybpf.BpfError, match="No such file"):
        Token(tmp_path / "missing")


def test_token_requests_per_libbpf_release(bundled, kernel, monkeypatch, tmp_path):
    """libbpf 1.1 cannot pass a token: open() refuses the request, naming 1.4. libbpf >= 1.4 takes
    it, and a path that is not a delegating bpffs fails the load."""
    if pybpf.features.libbpf_version() < (1, 4):
        with pytest.raises(pybpf.NotSupportedError, match=r"token_path='/x'.*needs libbpf >= 1.4"):
            pybpf.open(bundled("counters"), token_path="/x")
        monkeypatch.setenv("LIBBPF_BPF_TOKEN_PATH", "/y")
        with pytest.raises(pybpf.NotSupportedError, match=r"\$LIBBPF_BPF_TOKEN_PATH'/y'"):
            pybpf.open(bundled("counters"))
    else:
        with pybpf.open(bundled("counters"), token_path=str(tmp_path)) as obj:
            with pytest.raises(pybpf.BpfError, match=f"creating a BPF token from {tmp_path}: not the root of a bpffs"):
                obj.load()
    monkeypatch.delenv("LIBBPF_BPF_TOKEN_PATH", raising=False)
    with pybpf.open(bundled("counters"), token_path="") as obj:  # "" asks for no token
        obj.load()
