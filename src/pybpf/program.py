"""``Program``: one BPF program of an ``Object``; attaches it and test-runs it.

A Program belongs to its Object (which owns the libbpf ``bpf_program``);
each ``attach*`` call returns a new ``Link`` the caller owns, and the Object
also closes any link still open when it closes.
"""

from __future__ import annotations

import builtins
import errno
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf._sys import libbpf as _libbpf
from pybpf.kernel import fs
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError, NotSupportedError
from pybpf.kinds import AttachType, ProgType
from pybpf.kernel.features import kprobes_available
from pybpf.link.base import IterLink, LibbpfLink, Link, SocketLink, TcLink, XdpLink
from pybpf.kernel.info import ProgramInfo, prog_info
from pybpf.link.symbols import resolve_binary
from pybpf.link.usdt import UsdtLink, attach_usdt, parse_usdt_section

if TYPE_CHECKING:
    from pybpf.object import Object

__all__ = ["Program", "TestRunResult", "XDP_MODES"]

XDP_MODES = {"skb": 1 << 1, "generic": 1 << 1, "drv": 1 << 2, "native": 1 << 2, "hw": 1 << 3}
_XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
_TC_POINTS = {"ingress": 1, "egress": 2}


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN returned."""

    __test__ = False  # not a pytest test class

    retval: int
    data_out: bytes
    duration_ns: int
    ctx_out: bytes | None = None


class Program:
    """A BPF program inside an Object."""

    def __init__(self, obj: Object, ptr: Any) -> None:
        self._obj = obj
        self._ptr = ptr
        self.name: str = ffi.string(lib.bpf_program__name(ptr)).decode()
        self.section: str = ffi.string(lib.bpf_program__section_name(ptr)).decode()

    def __repr__(self) -> str:
        return f"<Program {self.name} type={self.type} section={self.section!r}>"

    # ---- description -------------------------------------------------

    def _live(self) -> Any:
        self._obj._check_open()
        return self._ptr

    def _loaded(self) -> Any:
        self._obj._check_state("loaded", f"attaching program {self.name}")
        return self._ptr

    @property
    def type(self) -> str:
        """libbpf's name of the program type (``tracepoint``, ``xdp``, ``tracing``...)."""
        with self._obj._guard():
            return ProgType.name_of(lib.bpf_program__type(self._ptr))

    @property
    def prog_type(self) -> ProgType:
        """The program's kind, with its traits (``p.prog_type.networking``...)."""
        with self._obj._guard():
            return ProgType(lib.bpf_program__type(self._ptr))

    @property
    def expected_attach_type(self) -> str:
        with self._obj._guard():
            return AttachType.name_of(lib.bpf_program__expected_attach_type(self._ptr))

    @property
    def insn_count(self) -> int:
        """Instructions after relocation (libbpf's view, before the verifier)."""
        with self._obj._guard():
            return int(lib.bpf_program__insn_cnt(self._ptr))

    @property
    def autoload(self) -> bool:
        with self._obj._guard() as _:
            return bool(lib.bpf_program__autoload(self._ptr))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        with self._obj._guard("open", f"setting autoload of {self.name}"):
            _libbpf.check(lib.bpf_program__set_autoload(self._ptr, bool(value)), f"autoload of {self.name}")

    @property
    def fd(self) -> int:
        """The program's fd once loaded (owned by the Object; do not close it)."""
        with self._obj._guard("loaded", f"the fd of program {self.name}"):
            fd = lib.bpf_program__fd(self._ptr)
        if fd < 0:
            raise BpfError(f"program {self.name} was not loaded (autoload is off)", errno.ENOENT)
        return int(fd)

    @property
    def id(self) -> int:
        return self.info().id

    def info(self) -> ProgramInfo:
        """Kernel-side facts: id, tag, run_cnt, run_time_ns (when stats are enabled)..."""
        return prog_info(self.fd)

    @property
    def run_cnt(self) -> int:
        return self.info().run_cnt

    @property
    def run_time_ns(self) -> int:
        return self.info().run_time_ns

    def pin(self, path: str) -> None:
        fs.check_pin(lib.bpf_program__pin(self._live(), os.fsencode(path)), f"pinning {self.name} at {path}", path)

    def unpin(self, path: str) -> None:
        _libbpf.check(lib.bpf_program__unpin(self._live(), os.fsencode(path)), f"unpinning {self.name}")

    # ---- attaching ---------------------------------------------------

    def _capability(self) -> str:
        return "CAP_NET_ADMIN" if self.prog_type.networking else "CAP_PERFMON"

    def _own(self, link: Link) -> Link:
        self._obj._register_link(link)
        return link

    def _libbpf_link(self, ptr: Any, what: str, cls: builtins.type[LibbpfLink] = LibbpfLink,
                     log: str = "") -> LibbpfLink:
        if ptr == ffi.NULL:
            err = ffi.errno or errno.EINVAL
            raise self._attach_error(err, what, log)
        return self._own(cls(ptr, f"{self.name} -> {what}"))  # type: ignore[return-value]

    def _attach_error(self, err: int, what: str, log: str = "") -> BpfError:
        message = f"attaching {self.type} program {self.name!r} to {what}"
        if self.type == "kprobe" and self.section.startswith(("kprobe", "kretprobe")) \
                and not kprobes_available():
            return NotSupportedError(
                f"{message}: kprobes are not available in this kernel (no kprobe PMU and no "
                f"kprobe_events in tracefs: the kernel was built without CONFIG_KPROBES)",
                err, feature="kprobe", log=log)
        if err == errno.ENOENT and log:
            last = log.strip().splitlines()[-1].removeprefix("libbpf: ")
            return BpfError(f"{message}: {last}", err, log=log)
        return _libbpf.make_error(err, message, capability=self._capability(), log=log)

    @property
    def auto_attachable(self) -> bool:
        """Whether the SEC() name says where to attach (so ``attach()`` can work)."""
        return _explicit_verb(self.type, self.section) is None

    def attach(self) -> Link:
        """Attach according to the program's SEC() (libbpf's auto-attach)."""
        self._loaded()
        program_type = self.type
        verb = _explicit_verb(program_type, self.section)
        if verb is not None:
            raise BpfError(f"program {self.name!r} (SEC({self.section!r})) has no target in its section; "
                           f"use {verb}", errno.EINVAL)
        if program_type in ("tracepoint", "kprobe") and not self.section.startswith(("kprobe", "kretprobe")):
            fs.ensure_tracefs()
        if program_type == "tracing" and self.section.startswith("iter"):
            return self.attach_iter()
        usdt = parse_usdt_section(self.section)
        if usdt is not None:
            return self.attach_usdt(usdt[0], usdt[1], usdt[2])
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach(self._loaded())
        return self._libbpf_link(ptr, f"SEC({self.section})", log=log.text)

    def attach_tracepoint(self, category: str, name: str) -> Link:
        fs.ensure_tracefs()
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach_tracepoint(self._loaded(), category.encode(), name.encode())
        return self._libbpf_link(ptr, f"tracepoint {category}:{name}", log=log.text)

    def attach_raw_tracepoint(self, name: str) -> Link:
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach_raw_tracepoint(self._loaded(), name.encode())
        return self._libbpf_link(ptr, f"raw tracepoint {name}", log=log.text)

    def attach_trace(self) -> Link:
        """fentry/fexit/fmod_ret/tp_btf: attach to the target named at load time."""
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach_trace(self._loaded())
        return self._libbpf_link(ptr, f"BTF target of SEC({self.section})", log=log.text)

    def attach_lsm(self) -> Link:
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach_lsm(self._loaded())
        return self._libbpf_link(ptr, f"LSM hook of SEC({self.section})", log=log.text)

    def attach_kprobe(self, func_name: str, *, retprobe: bool = False, offset: int = 0) -> Link:
        opts = _libbpf.new_opts("struct bpf_kprobe_opts", retprobe=retprobe, offset=offset)
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach_kprobe_opts(self._loaded(), func_name.encode(), opts)
        kind = "kretprobe" if retprobe else "kprobe"
        return self._libbpf_link(ptr, f"{kind} {func_name}", log=log.text)

    def attach_uprobe(self, binary: str, func: str | int, *, pid: int = -1, retprobe: bool = False,
                      cookie: int = 0) -> Link:
        """Attach to a function of ``binary`` (a path, or a library name such as
        ``libc.so.6`` resolved through this process's maps and ldconfig) by name or
        by file offset; ``pid=-1`` means every process."""
        path = resolve_binary(binary)
        func_name = c_name = None
        offset = 0
        if isinstance(func, str):
            c_name = ffi.new("char[]", func.encode())
            func_name = func
        else:
            offset = int(func)
        opts = _libbpf.new_opts("struct bpf_uprobe_opts", retprobe=retprobe, bpf_cookie=cookie)
        if c_name is not None:
            opts.func_name = c_name
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach_uprobe_opts(self._loaded(), pid, path.encode(), offset, opts)
        kind = "uretprobe" if retprobe else "uprobe"
        return self._libbpf_link(ptr, f"{kind} {path}:{func_name or hex(offset)}", log=log.text)

    def attach_usdt(self, binary_or_pid: str | int, provider: str, name: str, *, pid: int = -1,
                    cookie: int = 0) -> UsdtLink:
        """Attach to the USDT probe ``provider:name`` (every site of it).

        ``binary_or_pid`` is a path, a library or executable name (``libfoo.so.1``,
        ``python3.11``), or a pid: then the probe is looked up in that process's binary
        and mapped libraries, and only that process fires it. ``pid`` limits a binary's
        probe to one process (-1: all). ``cookie`` is what ``bpf_usdt_cookie()`` returns.
        A missing probe raises an error listing the probes the binary has."""
        link = attach_usdt(self._loaded(), f"{self.type} program {self.name!r}", binary_or_pid,
                           provider, name, pid=pid, cookie=cookie, capability=self._capability())
        self._own(link)
        return link

    def attach_iter(self, *, map_fd: int | None = None) -> IterLink:
        """Attach an iterator (``SEC("iter/...")``); read its output with ``link.read()``."""
        if map_fd is None:
            opts = ffi.NULL
            keep: tuple[Any, ...] = ()
        else:
            info = ffi.new("union bpf_iter_link_info *")
            info.map.map_fd = map_fd
            opts = _libbpf.new_opts("struct bpf_iter_attach_opts", link_info=info,
                                    link_info_len=ffi.sizeof("union bpf_iter_link_info"))
            keep = (info,)
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach_iter(self._loaded(), opts)
        del keep
        return self._libbpf_link(ptr, f"iterator SEC({self.section})", IterLink,  # type: ignore[return-value]
                                 log=log.text)

    def attach_xdp(self, interface: str | int, mode: str | None = None) -> Link:
        """Attach to an interface; ``mode`` None lets the kernel choose (a bpf_link),
        or one of ``skb``/``generic``, ``drv``/``native``, ``hw`` (netlink)."""
        ifindex = _ifindex(interface)
        if mode is None:
            with _libbpf.capture() as log:
                ptr = lib.bpf_program__attach_xdp(self._loaded(), ifindex)
            return self._libbpf_link(ptr, f"XDP on {interface}", log=log.text)
        try:
            flags = XDP_MODES[mode] | _XDP_FLAGS_UPDATE_IF_NOEXIST
        except KeyError:
            raise ValueError(f"XDP mode must be one of {sorted(XDP_MODES)}, not {mode!r}") from None
        fd = self.fd
        with _libbpf.capture() as log:
            ret = lib.bpf_xdp_attach(ifindex, fd, flags, ffi.NULL)
        if ret < 0:
            raise self._attach_error(-ret, f"XDP ({mode} mode) on {interface}", log.text)
        return self._own(XdpLink(ifindex, fd, flags, f"{self.name} -> XDP {mode} on {interface}"))

    def attach_tc(self, interface: str | int, direction: str = "ingress", *, priority: int = 0,
                  handle: int = 0) -> Link:
        """Add a tc filter on the interface's clsact qdisc (created if absent)."""
        if direction not in _TC_POINTS:
            raise ValueError(f"tc direction must be 'ingress' or 'egress', not {direction!r}")
        ifindex = _ifindex(interface)
        hook = _libbpf.new_opts("struct bpf_tc_hook", ifindex=ifindex, attach_point=_TC_POINTS[direction])
        fd = self.fd
        with _libbpf.capture() as log:
            ret = lib.bpf_tc_hook_create(hook)
        if ret < 0 and ret != -errno.EEXIST:
            raise self._attach_error(-ret, f"tc {direction} hook on {interface}", log.text)
        created = ret == 0
        opts = _libbpf.new_opts("struct bpf_tc_opts", prog_fd=fd, handle=handle, priority=priority)
        with _libbpf.capture() as log:
            ret = lib.bpf_tc_attach(hook, opts)
        if ret < 0:
            if created:
                lib.bpf_tc_hook_destroy(hook)
            raise self._attach_error(-ret, f"tc {direction} on {interface}", log.text)
        return self._own(TcLink(hook, opts, f"{self.name} -> tc {direction} on {interface}"))

    def attach_cgroup(self, path: str) -> Link:
        """Attach to a cgroup v2 directory (a bpf_link: detached when closed)."""
        try:
            cgroup_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise BpfError(f"cannot open cgroup {path}: {exc.strerror}", exc.errno) from None
        try:
            with _libbpf.capture() as log:
                ptr = lib.bpf_program__attach_cgroup(self._loaded(), cgroup_fd)
        finally:
            os.close(cgroup_fd)  # the link holds its own reference to the cgroup
        return self._libbpf_link(ptr, f"cgroup {path}", log=log.text)

    def attach_socket(self, sock: socket.socket | int) -> Link:
        """Set the program as a socket filter (SO_ATTACH_BPF) on ``sock``."""
        fd = self.fd
        fileno = sock.fileno() if isinstance(sock, socket.socket) else int(sock)
        try:
            with socket.socket(fileno=os.dup(fileno)) as dup:
                dup.setsockopt(socket.SOL_SOCKET, 50, fd)  # SO_ATTACH_BPF
        except OSError as exc:
            raise self._attach_error(exc.errno or errno.EINVAL, f"socket fd {fileno}") from None
        return self._own(SocketLink(sock, f"{self.name} -> socket fd {fileno}"))

    def attach_perf_event(self, perf_fd: int) -> Link:
        """Attach to a perf event fd. The caller keeps its fd; the link holds a dup."""
        try:
            dup = os.dup(perf_fd)
        except OSError as exc:
            raise BpfError(f"attaching {self.name!r}: perf event fd {perf_fd} is not open", exc.errno) from None
        with _libbpf.capture() as log:
            ptr = lib.bpf_program__attach_perf_event(self._loaded(), dup)
        if ptr == ffi.NULL:
            err = ffi.errno
            os.close(dup)
            raise self._attach_error(err or errno.EINVAL, f"perf event fd {perf_fd}", log.text)
        return self._own(LibbpfLink(ptr, f"{self.name} -> perf event fd {perf_fd}"))

    # ---- running -----------------------------------------------------

    def test_run(self, data_in: bytes = b"", ctx_in: bytes | None = None, repeat: int = 1, *,
                 data_out_size: int | None = None, ctx_out_size: int | None = None,
                 flags: int = 0, cpu: int = 0) -> TestRunResult:
        """BPF_PROG_TEST_RUN: run the program in the kernel on ``data_in``/``ctx_in``.

        ``repeat`` is forced to 0 (and ``ctx_out`` left out) for the types whose
        test run the kernel refuses otherwise (raw tracepoints, tracing, syscall).
        ``duration_ns`` is the kernel's mean per run.
        """
        fd = self.fd
        no_repeat = self.prog_type.test_run_without_repeat
        if no_repeat:  # the kernel refuses repeat, data and ctx_out for these types
            repeat = 0
            if ctx_out_size is None:
                ctx_out_size = 0
        data_in = bytes(data_in)
        in_buf = ffi.from_buffer(data_in) if data_in else ffi.NULL
        out_size = data_out_size if data_out_size is not None else (len(data_in) + 4096 if data_in else 0)
        out_buf = ffi.new("char[]", out_size) if out_size else ffi.NULL
        opts = _libbpf.new_opts("struct bpf_test_run_opts", data_size_in=len(data_in), data_size_out=out_size,
                                repeat=repeat, flags=flags, cpu=cpu)
        opts.data_in = in_buf
        opts.data_out = out_buf
        ctx_in_buf = ctx_out_buf = ffi.NULL
        if ctx_in is not None:
            ctx_bytes = bytes(ctx_in)
            ctx_in_buf = ffi.from_buffer(ctx_bytes)
            opts.ctx_in = ctx_in_buf
            opts.ctx_size_in = len(ctx_bytes)
            size = ctx_out_size if ctx_out_size is not None else len(ctx_bytes)
            if size:
                ctx_out_buf = ffi.new("char[]", size)
                opts.ctx_out = ctx_out_buf
                opts.ctx_size_out = size
        ret = lib.bpf_prog_test_run_opts(fd, opts)
        if ret < 0:
            err = -ret
            if err == errno.ENOTSUP or err == _libbpf.ENOTSUPP:
                raise NotSupportedError(f"BPF_PROG_TEST_RUN of {self.type} program {self.name!r}: "
                                        f"the kernel cannot test-run this program type", err,
                                        feature="test_run")
            hint = ""
            if err == errno.EINVAL:
                hint = (": raw tracepoint/tracing/syscall programs take only ctx_in (no data, no ctx_out)"
                        if no_repeat else ": check data_in/ctx_in sizes for this program type")
            raise _libbpf.make_error(err, f"BPF_PROG_TEST_RUN of {self.type} program {self.name!r}{hint}",
                                     capability="CAP_BPF")
        data_out = bytes(ffi.buffer(out_buf, opts.data_size_out)) if out_size else b""
        ctx_out = bytes(ffi.buffer(ctx_out_buf, opts.ctx_size_out)) if ctx_out_buf != ffi.NULL else None
        return TestRunResult(retval=int(opts.retval), data_out=data_out, duration_ns=int(opts.duration),
                             ctx_out=ctx_out)


_TARGETLESS = {
    "xdp": "attach_xdp(interface)",
    "sched_cls": "attach_tc(interface, 'ingress'|'egress')",
    "socket_filter": "attach_socket(sock)",
    "perf_event": "attach_perf_event(perf_fd)",
}
_CGROUP_TYPES = {"cgroup_skb", "cgroup_sock", "cgroup_sock_addr", "cgroup_sysctl", "cgroup_device",
                 "cgroup_sockopt"}
# sections that name a target only after a "/": SEC("uprobe") alone names none
_BARE_SECTIONS = {
    "uprobe": "attach_uprobe(binary, function)", "uretprobe": "attach_uprobe(binary, function, retprobe=True)",
    "kprobe": "attach_kprobe(function)", "kretprobe": "attach_kprobe(function, retprobe=True)",
    "tracepoint": "attach_tracepoint(category, name)", "tp": "attach_tracepoint(category, name)",
    "raw_tracepoint": "attach_raw_tracepoint(name)", "raw_tp": "attach_raw_tracepoint(name)",
    "usdt": "attach_usdt(binary_or_pid, provider, name)",
}


def _explicit_verb(program_type: str, section: str) -> str | None:
    """The explicit attach call a program needs, or None when its SEC() is enough."""
    if program_type in _TARGETLESS:
        return _TARGETLESS[program_type]
    if program_type in _CGROUP_TYPES:
        return "attach_cgroup(path)"
    prefix, _, target = section.partition("/")
    if prefix.split(".", 1)[0] in _BARE_SECTIONS and not target:
        return _BARE_SECTIONS[prefix.split(".", 1)[0]]
    return None


def _ifindex(interface: str | int) -> int:
    if isinstance(interface, int):
        return interface
    index = _libbpf.if_nametoindex(interface)
    if index == 0:
        raise BpfError(f"no network interface named {interface!r} in this network namespace", errno.ENODEV)
    return index

