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
from typing import TYPE_CHECKING, Any, Callable, Concatenate, ContextManager, ParamSpec, Protocol, TypeVar

from pybpf.text import LazyPattern
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.fd import FdRef
from pybpf.kernel import fs
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError, NotSupportedError
from pybpf.kinds import AttachType, ObjectState, ProgType
from pybpf.link import (
    explicit_usage,
    is_iterator_section,
    kind_module,
    parse_uprobe_multi_section,
    parse_usdt_section,
    section_types,
)
from pybpf.link.base import AttachTarget, Link, libbpf_link

if TYPE_CHECKING:  # the verbs' signatures; at run time each kind's file is imported by its first call
    from pybpf.kernel.info import ProgramInfo
    from pybpf.link import (cgroup, iterator, kprobe, lsm, netns, perf_event, raw_tracepoint, sockfilter, tc, tcx,
                            trace, tracepoint, uprobe, uprobe_multi, usdt, xdp)



class ProgramOwner(Protocol):
    """What a program needs of the object it belongs to (``pybpf.Object`` is one)."""

    def check_open(self) -> None: ...

    def require_state(self, wanted: ObjectState, doing: str) -> None: ...

    def register_link(self, link: Link) -> None: ...

    def _guard(self, wanted: ObjectState | None = None, doing: str = "") -> ContextManager[Any]: ...

    def _verifier_logs(self) -> dict[str, str]: ...

__all__ = ["LOG_LEVEL_STATS", "Program", "TestRunResult", "VerifierStats", "parse_verifier_stats"]

_TEST_RUN_TRACING = {"trace_fentry", "trace_fexit", "modify_return"}

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


class _LazyVerb:
    """A ``Program`` verb whose attach kind's file (``pybpf.link.<module>``) is imported by the
    verb's first use: the class then holds ``_verb(<module>.attach)`` itself, with its docstring
    and signature."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        cls = owner if owner is not None else type(obj)
        real = _verb(kind_module(self.module).attach)
        holder = next(c for c in cls.__mro__ if c.__dict__.get(self.name) is self)
        setattr(holder, self.name, real)  # from now on a plain method (another thread's is the same)
        return real if obj is None else real.__get__(obj, cls)


_STATS = LazyPattern(r"processed (\d+) insns \(limit (\d+)\) max_states_per_insn (\d+) total_states (\d+) "
                     r"peak_states (\d+) mark_read (\d+)")
_VERIFY_TIME = LazyPattern(r"verification time (\d+) usec")
_STACK_DEPTH = LazyPattern(r"stack depth ([\d+]+)")
LOG_LEVEL_STATS = 4  # BPF_LOG_STATS: only the verifier's statistics


@dataclass(frozen=True)
class VerifierStats:
    """What the verifier reported about one program (``load(log_level=...)``, see ``Program.verifier_stats``).

    ``stack_depth`` has one entry per subprogram (the kernel's ``stack depth 8+0``).
    """

    insns_processed: int
    insn_limit: int
    max_states_per_insn: int
    total_states: int
    peak_states: int
    mark_read: int
    verification_time_us: int | None
    stack_depth: tuple[int, ...]


def parse_verifier_stats(log: str) -> VerifierStats | None:
    """The statistics lines of a verifier log (``processed N insns ...``), or None if it has none."""
    found = _STATS.findall(log)
    if not found:
        return None
    insns, limit, max_states, total, peak, mark_read = (int(v) for v in found[-1])
    when = _VERIFY_TIME.findall(log)
    depth = _STACK_DEPTH.findall(log)
    return VerifierStats(insns_processed=insns, insn_limit=limit, max_states_per_insn=max_states,
                         total_states=total, peak_states=peak, mark_read=mark_read,
                         verification_time_us=int(when[-1]) if when else None,
                         stack_depth=tuple(int(d) for d in depth[-1].split("+") if d) if depth else ())


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
        if lib.bpf_program__type(ptr) == ProgType.UNSPEC:
            self._adopt_newer_section()

    def __repr__(self) -> str:
        return f"<Program {self.name} type={self.type} section={self.section!r}>"

    def _adopt_newer_section(self) -> None:
        """Give a program whose SEC() this libbpf does not know (``uprobe.multi/...``,
        ``tcx/ingress`` in libbpf 1.1) the type and expected attach type its attach kind declares."""
        known = section_types(self.section)
        if known is not None:
            prog_type, attach_type = known
            _libbpf.check(lib.bpf_program__set_type(self._ptr, int(prog_type)), f"type of {self.name}")
            _libbpf.check(lib.bpf_program__set_expected_attach_type(self._ptr, int(attach_type)),
                          f"expected attach type of {self.name}")

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
            return ProgType.of(lib.bpf_program__type(self._ptr), ProgType.UNSPEC)

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
    def log_level(self) -> int:
        """The verifier log level used at load: 0 none, 1 and 2 the instruction log, 4 statistics (ORed)."""
        return int(lib.bpf_program__log_level(self._live()))

    @log_level.setter
    def log_level(self, value: int) -> None:
        self._obj.require_state(ObjectState.OPEN, f"setting the log level of {self.name}")
        _libbpf.check(lib.bpf_program__set_log_level(self._ptr, int(value)), f"log level of {self.name}")

    @property
    def verifier_log(self) -> str:
        """The verifier's log of this program's load ('' unless it was loaded with a log level)."""
        self._live()
        return self._obj._verifier_logs().get(self.name, "")

    @property
    def verifier_stats(self) -> VerifierStats | None:
        """The verifier's statistics of this program's load (load with ``log_level=4``, or any
        log level: the instruction log ends with them); None without a verifier log."""
        return parse_verifier_stats(self.verifier_log)

    def set_attach_target(self, target_prog_fd: int, func_name: str | None) -> None:
        """Before load: what an fentry/fexit/freplace/tp_btf program attaches to (libbpf's
        ``bpf_program__set_attach_target``). ``target_prog_fd`` 0 means a kernel function or
        tracepoint (``func_name`` in the kernel's BTF); a BPF program's fd for freplace or fentry on
        a BPF program; ``func_name`` None keeps the name from the SEC() and sets only the fd."""
        self._obj.require_state(ObjectState.OPEN, f"setting the attach target of {self.name}")
        if target_prog_fd < 0:
            raise ValueError(f"target_prog_fd must be 0 (the kernel) or a program fd, not {target_prog_fd}")
        c_name = _libbpf.c_str(func_name)
        with _libbpf.capture() as log:
            ret = lib.bpf_program__set_attach_target(self._ptr, int(target_prog_fd), c_name)
        if ret < 0:
            err = -ret
            where = f"{func_name or ''}{f' of program fd {target_prog_fd}' if target_prog_fd else ''}"
            reason = _reason(log.text)
            if err == errno.ESRCH and not target_prog_fd:  # libbpf says nothing more
                reason = (f"failed to find kernel BTF type ID of {func_name!r}: the kernel has no such "
                          f"function or tracepoint in its BTF")
            raise _libbpf.make_error(err, f"setting the attach target of {self.name!r} to {where}"
                                          + (f": {reason}" if reason else ""), log=log.text)

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
                    raise BpfError(f"program {self.name} was not loaded (autoload is off)")
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
            from pybpf.kernel.info import prog_info  # on the first info read

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
        if self.prog_type is ProgType.STRUCT_OPS:
            spec = getattr(self._obj, "file_spec", None)
            owner = next((o.name for o in getattr(spec, "struct_ops", ()) if self.name in o.programs.values()), "NAME")
            raise BpfError(f"struct_ops program {self.name!r} runs as a member of its struct_ops map: register the "
                           f"map with obj.maps[{owner!r}].attach_struct_ops()")
        usage = explicit_usage(self.prog_type, self.section)
        if usage is not None:
            raise BpfError(f"program {self.name!r} (SEC({self.section!r})) has no target in its section; "
                           f"use {usage}")
        if is_iterator_section(self.prog_type, self.section):
            return self.attach_iter()
        usdt_target = parse_usdt_section(self.section)
        if usdt_target is not None:
            return self.attach_usdt(*usdt_target)
        multi_target = parse_uprobe_multi_section(self.section)
        if multi_target is not None:  # libbpf 1.1 does not know these sections
            binary, pattern, retprobe = multi_target
            return self.attach_uprobe_multi(binary, pattern, retprobe=retprobe)
        if self.prog_type in (ProgType.TRACEPOINT, ProgType.KPROBE) \
                and not self.section.startswith(("kprobe", "kretprobe")):
            fs.ensure_tracefs()
        with self._obj._guard(ObjectState.LOADED, f"attaching program {self.name}"):
            with _libbpf.capture() as log:
                ptr = lib.bpf_program__attach(self._loaded())
            return self._own(libbpf_link(self, ptr, f"SEC({self.section})", log.text))

    # One verb per attach kind (pybpf/link/<kind>.py), each owned by this program's Object; a kind's
    # file is imported by its verb's first use (the registry, pybpf.link.KINDS, declares them all).
    if TYPE_CHECKING:
        attach_tracepoint = _verb(tracepoint.attach)
        attach_raw_tracepoint = _verb(raw_tracepoint.attach)
        attach_trace = _verb(trace.attach)
        attach_lsm = _verb(lsm.attach)
        attach_kprobe = _verb(kprobe.attach)
        attach_uprobe = _verb(uprobe.attach)
        attach_uprobe_multi = _verb(uprobe_multi.attach)
        attach_usdt = _verb(usdt.attach)
        attach_iter = _verb(iterator.attach)
        attach_xdp = _verb(xdp.attach)
        attach_tc = _verb(tc.attach)
        attach_tcx = _verb(tcx.attach)
        attach_cgroup = _verb(cgroup.attach)
        attach_socket = _verb(sockfilter.attach)
        attach_perf_event = _verb(perf_event.attach)
        attach_netns = _verb(netns.attach)
    else:
        attach_tracepoint = _LazyVerb("tracepoint")
        attach_raw_tracepoint = _LazyVerb("raw_tracepoint")
        attach_trace = _LazyVerb("trace")
        attach_lsm = _LazyVerb("lsm")
        attach_kprobe = _LazyVerb("kprobe")
        attach_uprobe = _LazyVerb("uprobe")
        attach_uprobe_multi = _LazyVerb("uprobe_multi")
        attach_usdt = _LazyVerb("usdt")
        attach_iter = _LazyVerb("iterator")
        attach_xdp = _LazyVerb("xdp")
        attach_tc = _LazyVerb("tc")
        attach_tcx = _LazyVerb("tcx")
        attach_cgroup = _LazyVerb("cgroup")
        attach_socket = _LazyVerb("sockfilter")
        attach_perf_event = _LazyVerb("perf_event")
        attach_netns = _LazyVerb("netns")

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
                                        f"{self.type} programs have no test run (the kernel implements "
                                        f"BPF_PROG_TEST_RUN only for some program types); attach it and "
                                        f"trigger the event instead", err, feature="test_run")
            attach_type = self.expected_attach_type
            if err == errno.EFAULT and self.type == "tracing" and attach_type not in _TEST_RUN_TRACING:
                kind = "tp_btf" if attach_type == "trace_raw_tp" else attach_type
                raise NotSupportedError(
                    f"BPF_PROG_TEST_RUN of {kind} program {self.name!r}: the kernel test-runs tracing programs "
                    f"only for fentry/fexit/fmod_ret (on its own test functions) and answers EFAULT for "
                    f"{kind}; attach it and trigger the tracepoint, or test a raw_tracepoint program with "
                    f"ctx_in", err, feature="test_run")
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


def _reason(log: str) -> str:
    """libbpf's own explanation in a captured log: its last line, without the prefix."""
    lines = [line.removeprefix("libbpf: ").strip() for line in log.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
