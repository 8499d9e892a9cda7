"""``Program``: one BPF program of an ``Object``; attaches it and test-runs it.

A Program belongs to its Object (which owns the libbpf ``bpf_program``);
each ``attach*`` call returns a new ``Link`` the caller owns, and the Object
also closes any link still open when it closes.
"""

from __future__ import annotations

import errno
import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Concatenate, ContextManager, ParamSpec, Protocol, TypeVar

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.fd import FdRef
from pybpf.kernel import fs
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError, NotSupportedError
from pybpf.kinds import AttachType, ObjectState, ProgType
from pybpf.kernel.info import ProgramInfo, prog_info
from pybpf.link import (
    cgroup,
    explicit_usage,
    iterator,
    kprobe,
    lsm,
    netns,
    perf_event,
    raw_tracepoint,
    sockfilter,
    tc,
    trace,
    tracepoint,
    uprobe,
    usdt,
    xdp,
)
from pybpf.link.base import AttachTarget, Link, libbpf_link
from pybpf.link.usdt import parse_usdt_section



class ProgramOwner(Protocol):
    """What a program needs of the object it belongs to (``pybpf.Object`` is one)."""

    def check_open(self) -> None: ...

    def require_state(self, wanted: ObjectState, doing: str) -> None: ...

    def register_link(self, link: Link) -> None: ...

    def _guard(self, wanted: ObjectState | None = None, doing: str = "") -> ContextManager[Any]: ...

__all__ = ["Program", "TestRunResult"]

L = TypeVar("L", bound=Link)
P = ParamSpec("P")


def _verb(attach: Callable[Concatenate[AttachTarget, P], L]) -> Callable[Concatenate[Program, P], L]:
    """A ``Program`` method from an attach kind's ``attach(prog, ...)``: the link it returns
    is registered with the program's Object, which closes it if the caller does not."""
    @functools.wraps(attach)
    def verb(self: Program, *args: P.args, **kwargs: P.kwargs) -> L:
        # the object held: no close() in another thread frees libbpf's program (or gives its fd
        # back) while the kind attaches it
        with self._obj._guard(ObjectState.LOADED, f"attaching program {self.name}"):
            return self._own(attach(self, *args, **kwargs))
    return verb


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

    def __init__(self, obj: ProgramOwner, ptr: Any) -> None:
        self._obj = obj
        self._ptr = ptr
        self._ref: FdRef | None = None  # our copy of libbpf's fd, made on first use after load
        self.name: str = ffi.string(lib.bpf_program__name(ptr)).decode()
        self.section: str = ffi.string(lib.bpf_program__section_name(ptr)).decode()

    def __repr__(self) -> str:
        return f"<Program {self.name} type={self.type} section={self.section!r}>"

    # ---- description -------------------------------------------------

    def _live(self) -> Any:
        self._obj.check_open()
        return self._ptr

    def _loaded(self) -> Any:
        self._obj.require_state(ObjectState.LOADED, f"attaching program {self.name}")
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
        """libbpf's name of the expected attach type."""
        with self._obj._guard():
            return AttachType.name_of(lib.bpf_program__expected_attach_type(self._ptr))

    @property
    def insn_count(self) -> int:
        """Instructions after relocation (libbpf's view, before the verifier)."""
        with self._obj._guard():
            return int(lib.bpf_program__insn_cnt(self._ptr))

    @property
    def autoload(self) -> bool:
        """Whether ``load()`` loads this program."""
        with self._obj._guard() as _:
            return bool(lib.bpf_program__autoload(self._ptr))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        with self._obj._guard(ObjectState.OPEN, f"setting autoload of {self.name}"):
            _libbpf.check(lib.bpf_program__set_autoload(self._ptr, bool(value)), f"autoload of {self.name}")

    @property
    def fd(self) -> int:
        """The program's fd once loaded (valid until the object closes; do not close it)."""
        return self.fd_ref().fd

    def fd_ref(self) -> FdRef:
        """The owner of this program's own copy of libbpf's fd: calls hold it while they use
        the number (``with prog.fd_ref() as fd:``), so an Object.close() in another thread
        cannot give it back to the kernel meanwhile."""
        ref = self._ref
        if ref is not None and not ref.closing:
            return ref
        with self._obj._guard(ObjectState.LOADED, f"the fd of program {self.name}"):
            if self._ref is None:
                fd = lib.bpf_program__fd(self._ptr)
                if fd < 0:
                    raise BpfError(f"program {self.name} was not loaded (autoload is off)", errno.ENOENT)
                self._ref = FdRef.copy_of(fd, f"program {self.name}")
            return self._ref

    def release(self) -> None:
        """For Object.close(): the fd copy goes now, or when the last call using it returns."""
        if self._ref is not None:
            self._ref.close()

    @property
    def id(self) -> int:
        """The program's kernel id."""
        return self.info().id

    def info(self) -> ProgramInfo:
        """Kernel-side facts: id, tag, run_cnt, run_time_ns (when stats are enabled)..."""
        with self.fd_ref() as fd:
            return prog_info(fd)

    @property
    def run_cnt(self) -> int:
        """Runs counted by the kernel (with ``enable_stats()`` on)."""
        return self.info().run_cnt

    @property
    def run_time_ns(self) -> int:
        """Nanoseconds spent in the program (with ``enable_stats()`` on)."""
        return self.info().run_time_ns

    def pin(self, path: str) -> None:
        """Pin the program on bpffs at ``path``."""
        with self._obj._guard():
            fs.check_pin(lib.bpf_program__pin(self._ptr, os.fsencode(path)), f"pinning {self.name} at {path}",
                         path)

    def unpin(self, path: str) -> None:
        """Remove the program's pin at ``path``."""
        with self._obj._guard():
            _libbpf.check(lib.bpf_program__unpin(self._ptr, os.fsencode(path)), f"unpinning {self.name}")

    # ---- attaching ---------------------------------------------------

    def libbpf_program(self) -> Any:
        """The libbpf ``struct bpf_program *`` of this loaded program (for :mod:`pybpf.link`)."""
        return self._loaded()

    def _own(self, link: L) -> L:
        self._obj.register_link(link)
        return link

    @property
    def auto_attachable(self) -> bool:
        """Whether the SEC() name says where to attach (so ``attach()`` can work)."""
        return explicit_usage(self.prog_type, self.section) is None

    def attach(self) -> Link:
        """Attach according to the program's SEC() (libbpf's auto-attach)."""
        self._loaded()
        usage = explicit_usage(self.prog_type, self.section)
        if usage is not None:
            raise BpfError(f"program {self.name!r} (SEC({self.section!r})) has no target in its section; "
                           f"use {usage}", errno.EINVAL)
        if iterator.is_iterator(self):
            return self.attach_iter()
        usdt_target = parse_usdt_section(self.section)
        if usdt_target is not None:
            return self.attach_usdt(*usdt_target)
        if self.prog_type in (ProgType.TRACEPOINT, ProgType.KPROBE) \
                and not self.section.startswith(("kprobe", "kretprobe")):
            fs.ensure_tracefs()
        with self._obj._guard(ObjectState.LOADED, f"attaching program {self.name}"):
            with _libbpf.capture() as log:
                ptr = lib.bpf_program__attach(self._loaded())
            return self._own(libbpf_link(self, ptr, f"SEC({self.section})", log.text))

    # One verb per attach kind (pybpf/link/<kind>.py), each owned by this program's Object.
    attach_tracepoint = _verb(tracepoint.attach)
    attach_raw_tracepoint = _verb(raw_tracepoint.attach)
    attach_trace = _verb(trace.attach)
    attach_lsm = _verb(lsm.attach)
    attach_kprobe = _verb(kprobe.attach)
    attach_uprobe = _verb(uprobe.attach)
    attach_usdt = _verb(usdt.attach)
    attach_iter = _verb(iterator.attach)
    attach_xdp = _verb(xdp.attach)
    attach_tc = _verb(tc.attach)
    attach_cgroup = _verb(cgroup.attach)
    attach_socket = _verb(sockfilter.attach)
    attach_perf_event = _verb(perf_event.attach)
    attach_netns = _verb(netns.attach)

    # ---- running -----------------------------------------------------

    def test_run(self, data_in: bytes = b"", ctx_in: bytes | None = None, repeat: int = 1, *,
                 data_out_size: int | None = None, ctx_out_size: int | None = None,
                 flags: int = 0, cpu: int = 0) -> TestRunResult:
        """BPF_PROG_TEST_RUN: run the program in the kernel on ``data_in``/``ctx_in``.

        ``repeat`` is forced to 0 (and ``ctx_out`` left out) for the types whose
        test run the kernel refuses otherwise (raw tracepoints, tracing, syscall).
        ``duration_ns`` is the kernel's mean per run.
        """
        ref = self.fd_ref()
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
        with ref as fd:  # a close() meanwhile gives the fd back only once the run is over
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
