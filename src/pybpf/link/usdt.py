"""USDT links: a program attached to a USDT probe through libbpf's ``bpf_program__attach_usdt``.

This module owns finding the probe (by path, by library name, or among the files a
process maps), checking it exists before libbpf is asked (so a missing probe is named,
with the probes the binary does have), and the ``UsdtLink`` that owns the attachment.
libbpf bumps the probe's semaphore (through the uprobe's ``ref_ctr_offset``) for as
long as the link lives, so ``_ENABLED()`` guarded probes fire only while attached.
The BPF side reads arguments with ``bpf_usdt_arg()`` from ``<bpf/usdt.bpf.h>``.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError
from pybpf.link import declared, parse_usdt_section
from pybpf.link.base import AttachTarget, LibbpfLink
from pybpf.link.symbols import resolve_binary

if TYPE_CHECKING:
    from pybpf.spec.usdt import UsdtProbe

__all__ = ["KIND", "UsdtLink", "attach", "attach_usdt", "find_usdt_probe", "parse_usdt_section"]


class UsdtLink(LibbpfLink):
    """A program attached to one USDT probe (every location of it in the binary)."""

    def __init__(self, ptr: Any, description: str, probe: UsdtProbe, pid: int, cookie: int) -> None:
        super().__init__(ptr, description)
        self.probe = probe
        self.pid = pid
        self.cookie = cookie


def find_usdt_probe(binary_or_pid: str | int, provider: str, name: str) -> UsdtProbe:
    """The probe ``provider:name`` of a binary (path or library name), or of a process
    (its binary first, then the libraries it maps). Raises an error naming the probe
    and listing the probes that are there when it is missing."""
    # pyelftools loads with the first USDT attach, not with every pybpf.open()
    from pybpf.spec.usdt import describe_probes, process_probes, read_probes

    if isinstance(binary_or_pid, int):
        probes = process_probes(binary_or_pid)
        where = f"process {binary_or_pid} (its binary and mapped libraries)"
    else:
        path = _resolve(binary_or_pid)
        probes = read_probes(path)
        where = path
    for probe in probes:
        if probe.provider == provider and probe.name == name:
            return probe
    raise BpfError(f"no USDT probe {provider}:{name} in {where}; it has: {describe_probes(probes)}",
                   errno.ENOENT)


def _resolve(binary: str) -> str:
    if "/" not in binary and not binary.startswith("lib"):
        # an executable name: look in PATH as well as for a library of that name
        for directory in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
            candidate = os.path.join(directory, binary)
            if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return os.path.realpath(candidate)
    try:
        return resolve_binary(binary)
    except BpfError as exc:
        raise BpfError(str(exc).replace("for a uprobe", "for a USDT probe"), exc.errno) from None


def attach_usdt(prog: Any, description: str, binary_or_pid: str | int, provider: str, name: str, *,
                pid: int = -1, cookie: int = 0, capability: str = "CAP_PERFMON") -> UsdtLink:
    """Attach the loaded libbpf program ``prog`` to USDT probe ``provider:name``.

    ``binary_or_pid`` is a path, a library or executable name, or a pid (then the
    probe is looked up in that process's files and the attachment is limited to it).
    ``pid=-1`` means every process running the binary."""
    if isinstance(binary_or_pid, bool) or not isinstance(binary_or_pid, (str, int, os.PathLike)):
        raise TypeError(f"binary_or_pid must be a path, a library name or a pid, not {binary_or_pid!r}")
    if isinstance(binary_or_pid, int):
        if pid not in (-1, binary_or_pid):
            raise ValueError(f"attach_usdt({binary_or_pid}, ..., pid={pid}): two different pids")
        pid = binary_or_pid
    target = binary_or_pid if isinstance(binary_or_pid, int) else os.fspath(binary_or_pid)
    probe = find_usdt_probe(target, provider, name)
    path = probe.path
    if isinstance(target, int):
        # the inode the process runs (/proc/PID/exe, /proc/PID/map_files/...): a binary replaced
        # on disk since it started still has its probes there, and the uprobe must be on it
        path = probe.source or path
    opts = _libbpf.new_opts("struct bpf_usdt_opts", usdt_cookie=cookie)
    c_path, c_provider, c_name = (ffi.new("char[]", s.encode()) for s in (path, provider, name))
    with _libbpf.capture() as log:
        ptr = lib.bpf_program__attach_usdt(prog, pid, c_path, c_provider, c_name, opts)
    what = f"USDT probe {provider}:{name} in {probe.path}" + (f" (pid {pid})" if pid >= 0 else "")
    if ptr == ffi.NULL:
        err = ffi.errno or errno.EINVAL
        text = log.text.strip()
        message = f"attaching {description} to {what}"
        if "__bpf_usdt_specs" in text or "USDT support" in text:
            raise BpfError(f"{message}: the object has no USDT support maps; include "
                           f"<bpf/usdt.bpf.h> and read arguments with bpf_usdt_arg()", err, log=text)
        if err == errno.ESRCH or (pid >= 0 and not os.path.exists(f"/proc/{pid}")):
            raise BpfError(f"{message}: no process with pid {pid}", errno.ESRCH, log=text)
        if err in (errno.ENOENT, errno.EINVAL) and text:
            last = text.splitlines()[-1].removeprefix("libbpf: ")
            raise BpfError(f"{message}: {last}", err, log=text)
        raise _libbpf.make_error(err, message, capability=capability, log=text)
    return UsdtLink(ptr, f"{description} -> {what}", probe, pid, cookie)


def attach(prog: AttachTarget, binary_or_pid: str | int, provider: str, name: str, *, pid: int = -1,
           cookie: int = 0) -> UsdtLink:
    """Attach to the USDT probe ``provider:name`` (every site of it).

    ``binary_or_pid`` is a path, a library or executable name (``libfoo.so.1``,
    ``python3.11``), or a pid: then the probe is looked up in that process's binary
    and mapped libraries, and only that process fires it. ``pid`` limits a binary's
    probe to one process (-1: all). ``cookie`` is what ``bpf_usdt_cookie()`` returns.
    A missing probe raises an error listing the probes the binary has."""
    capability = "CAP_NET_ADMIN" if prog.prog_type.networking else "CAP_PERFMON"
    return attach_usdt(prog.libbpf_program(), f"{prog.type} program {prog.name!r}", binary_or_pid,
                       provider, name, pid=pid, cookie=cookie, capability=capability)


KIND = declared("usdt")
