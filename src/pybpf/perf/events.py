"""Open perf events per CPU or per process, and run a BPF program on all of them.

Owns the perf event fds (``perf_event_open(2)``) of one event kind and the program
attachments made on them: :class:`PerfEvents` is their single owner, so one ``close()``
detaches every program and closes every fd. The attachment itself is the ``perf_event``
attach kind of :mod:`pybpf.link` (one libbpf link per fd).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Iterable, Sequence
import numpy as np

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.resource import Resource
from pybpf.errors import BpfError, ClosedError, InvalidArgumentError, NotSupportedError
from pybpf.link import perf_event as _perf_link
from pybpf.link.base import AttachTarget, Link
from pybpf.perf.attr import EventAttr, Hardware, PerfType, Software, event_by_name

__all__ = ["PerfEvents", "PerfLink", "online_cpus", "open_events"]

_PERF_FLAG_FD_CLOEXEC = 8
_IOC_ENABLE = 0x2400   # _IO('$', 0)
_IOC_DISABLE = 0x2401  # _IO('$', 1)
_MAX_RATE = "/proc/sys/kernel/perf_event_max_sample_rate"


def _parse_cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def online_cpus() -> list[int]:
    """The CPUs that are online now (``/sys/devices/system/cpu/online``)."""
    with open("/sys/devices/system/cpu/online") as f:
        return _parse_cpu_list(f.read())


def _threads(pid: int) -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        raise InvalidArgumentError(f"no process {pid}") from None


class PerfLink(Link):
    """One program attached to every fd of a :class:`PerfEvents` (one libbpf link per fd)."""

    def __init__(self, links: list[Link], description: str) -> None:
        super().__init__(description)
        self.links = links

    def _detach(self) -> None:
        first: BaseException | None = None
        for link in self.links:
            try:
                link.close()
            except BaseException as exc:  # close them all; report the first failure
                first = first or exc
        if first is not None:
            raise first


class PerfEvents(Resource):
    """The fds of one perf event opened on several CPUs or threads, and what runs on them.

    Made by :func:`open_events`. ``attach(prog)`` runs a ``perf_event`` BPF program on every
    fd; ``counts()`` reads the counters; ``close()`` detaches the programs and closes the fds.
    """

    def __init__(self, attr: EventAttr, targets: Sequence[tuple[int, int]], fds: Sequence[int]) -> None:
        self.attr = attr
        self.targets: tuple[tuple[int, int], ...] = tuple(targets)  # (pid, cpu) of each fd; -1 = any
        self._fds = list(fds)
        self._links: list[PerfLink] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._fds)} fds"
        return f"<PerfEvents {self.attr.describe()} {state}>"

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(f"perf events {self.attr.describe()}")

    @property
    def fds(self) -> tuple[int, ...]:
        """The perf event fds (owned here: do not close them)."""
        self._check()
        return tuple(self._fds)

    def attach(self, prog: AttachTarget) -> PerfLink:
        """Run ``prog`` (a loaded ``perf_event`` program) on every event; detach with the link's
        ``close()`` or by closing these events."""
        with self._lock:
            self._check()
            if not self.attr.sampling:
                raise InvalidArgumentError(
                    f"perf event {self.attr.describe()} counts without sampling, so it never runs a "
                    f"program: open it with frequency= or period=")
            links: list[Link] = []
            try:
                for fd in self._fds:
                    links.append(_perf_link.attach(prog, fd))
            except BaseException:
                for link in links:
                    link.close()
                raise
            link = PerfLink(links, f"{prog.name} -> {len(links)} x {self.attr.describe()}")
            self._links.append(link)
            link._on_close.append(self._forget)
            return link

    def _forget(self, link: Link) -> None:
        if link in self._links:
            self._links.remove(link)

    def counts(self) -> np.ndarray:
        """The counter of each fd (one uint64 per target, in ``targets`` order)."""
        with self._lock:
            self._check()
            out = np.empty(len(self._fds), np.uint64)
            for i, fd in enumerate(self._fds):
                out[i] = int.from_bytes(os.read(fd, 8), "little")
            return out

    def _ioctl(self, request: int) -> None:
        with self._lock:
            self._check()
            for fd in self._fds:
                fcntl.ioctl(fd, request, 0)

    def enable(self) -> None:
        """Start counting and sampling on every fd (attach already does it)."""
        self._ioctl(_IOC_ENABLE)

    def disable(self) -> None:
        """Stop counting and sampling on every fd (attached programs stop running)."""
        self._ioctl(_IOC_DISABLE)

    def close(self) -> None:
        """Detach every program attached here, then close every fd. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            links, self._links = self._links, []
            fds, self._fds = self._fds, []
        try:
            for link in links:
                link.close()
        finally:
            for fd in fds:
                _libbpf.close_fd(fd)


def _open_error(err: int, attr: EventAttr, pid: int, cpu: int) -> BpfError:
    where = (f"pid {pid}" if pid >= 0 else "every process") + (f" on CPU {cpu}" if cpu >= 0 else "")
    what = f"perf_event_open({attr.describe()}, {where})"
    if attr.event.type is PerfType.HARDWARE and err in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV):
        return NotSupportedError(f"{what}: this machine has no PMU for hardware event "
                                 f"{attr.event.perf_name!r} (a VM without a virtual PMU?); use a software "
                                 f"event such as cpu-clock", err, feature=f"perf:{attr.event.perf_name}")
    if err == errno.ESRCH:
        return InvalidArgumentError(f"{what}: no process {pid}")
    if err == errno.EINVAL and attr.frequency is not None:
        try:
            with open(_MAX_RATE) as f:
                limit = int(f.read())
        except (OSError, ValueError):
            limit = 0
        if limit and attr.frequency > limit:
            return InvalidArgumentError(f"{what}: {attr.frequency} Hz is above the kernel's limit "
                                        f"(kernel.perf_event_max_sample_rate = {limit})")
    if err == errno.EINVAL and cpu >= 0:
        return InvalidArgumentError(f"{what}: CPU {cpu} does not exist or is offline (online: "
                                    f"{','.join(map(str, online_cpus()))})")
    return _libbpf.make_error(err, what, capability="CAP_PERFMON")


def open_events(event: str | Hardware | Software, *, frequency: int | None = None, period: int | None = None,
                pid: int | None = None, cpus: Iterable[int] | None = None, inherit: bool | None = None,
                exclude_user: bool = False, exclude_kernel: bool = False, exclude_idle: bool = False,
                disabled: bool = False) -> PerfEvents:
    """Open ``event`` (``"cpu-clock"``, ``pybpf.perf.Software.CPU_CLOCK``...) on many targets.

    Without ``pid``: one fd per CPU (``cpus``, all online CPUs by default), for every process,
    as ``perf record -a``. With ``pid``: one fd per thread of that process, each on any CPU
    (or on each of ``cpus``), inherited by threads and children made later (``inherit``,
    default on). ``frequency`` (Hz) or ``period`` (events) make the event sample, which is
    what runs an attached program.
    """
    kind = event_by_name(event) if isinstance(event, str) else event
    attr = EventAttr(kind, frequency=frequency, period=period,
                     inherit=(pid is not None) if inherit is None else bool(inherit),
                     disabled=disabled, exclude_user=exclude_user, exclude_kernel=exclude_kernel,
                     exclude_idle=exclude_idle)
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
        raise InvalidArgumentError(f"pid must be a positive integer, not {pid!r}")
    cpu_list = online_cpus() if cpus is None and pid is None else ([-1] if cpus is None else list(cpus))
    for cpu in cpu_list:
        if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < -1:
            raise InvalidArgumentError(f"CPU numbers must be integers >= 0, not {cpu!r}")
    if not cpu_list:
        raise InvalidArgumentError("no CPU to open the perf event on")
    packed = attr.pack()
    threads = _threads(pid) if pid is not None else [-1]
    targets: list[tuple[int, int]] = []
    fds: list[int] = []
    try:
        for tid in threads:
            for cpu in cpu_list:
                try:
                    fd = _libbpf.perf_event_open(packed, tid, cpu, -1, _PERF_FLAG_FD_CLOEXEC)
                except BpfError as exc:
                    if exc.errno == errno.ESRCH and pid is not None and tid != pid:
                        break  # a thread that ended since we listed it
                    raise _open_error(exc.errno or errno.EINVAL, attr, tid, cpu) from None
                fds.append(fd)
                targets.append((tid, cpu))
    except BaseException:
        for fd in fds:
            _libbpf.close_fd(fd)
        raise
    return PerfEvents(attr, targets, fds)
