"""``FdRef``: the owner of one fd that calls in several threads may be using when its
owner closes it (a Map's copy of its fd, a Program's copy of libbpf's program fd).

cffi releases the GIL during every syscall, so ``Map.close()`` in one thread
can run while another thread is inside ``bpf_map_lookup_elem(fd, ...)``. If
close released the fd number right away, the kernel could hand the same number
to a new map and the in-flight call (or the next one that already read the
number) would write into that unrelated map. So a call registers itself
(``enter``/``leave``), and ``close`` only marks the ref; the fd is closed when
the last call in flight leaves.

The registration is a ``list.append``/``list.pop`` (atomic under the GIL) and
two attribute reads: cheap enough for the per-key path. The order makes it
safe: a caller appends, then checks ``closing``; the closer sets ``closing``,
then checks for callers. One of the two always sees the other.

Every use of the number goes through the ref (``with ref as fd:`` or ``holding_fd``), never
through a number read earlier: ``fd`` attributes handed to users are for their own calls.
In a ``fork()``ed child the calls in flight were other threads' and are forgotten
(``pybpf._sys.forksafe``), so the child can still close the fd.
"""

from __future__ import annotations

import fcntl
import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pybpf._sys.forksafe import on_fork_child
from pybpf.errors import ClosedError

__all__ = ["FdRef", "holding_fd"]

F = TypeVar("F", bound=Callable[..., Any])


class FdRef:
    """An owned fd, closed once its owner has closed it and no call is using it."""

    __slots__ = ("fd", "what", "users", "closing", "_lock", "__weakref__")

    def __init__(self, fd: int, what: str) -> None:
        self.fd = fd
        self.what = what
        self.users: list[None] = []  # one entry per call in flight
        self.closing = False
        self._lock = threading.Lock()
        on_fork_child(self, FdRef._after_fork)

    @classmethod
    def copy_of(cls, fd: int, what: str) -> FdRef:
        """Own a copy of an fd someone else owns (libbpf's, closed with its object)."""
        return cls(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), what)

    @staticmethod
    def _after_fork(ref: FdRef) -> None:
        ref.users = []  # the child has none of the threads that were in calls
        ref._lock = threading.Lock()
        if ref.closing:
            ref.finish()

    def enter(self) -> int:
        """Register a call; the returned fd stays valid until ``leave()``."""
        self.users.append(None)
        if self.closing:
            self.leave()
            raise ClosedError(self.what)
        return self.fd

    def leave(self) -> None:
        self.users.pop()
        if self.closing and not self.users:
            self.finish()

    def close(self) -> None:
        """Close now, or as soon as the last call in flight leaves."""
        self.closing = True
        if not self.users:
            self.finish()

    def finish(self) -> None:
        with self._lock:  # the closer and a last leaver may both get here
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    def __enter__(self) -> int:
        return self.enter()

    def __exit__(self, *exc: object) -> None:
        self.leave()


def holding_fd(method: F) -> F:
    """Run a Map method with the map's fd held for the whole call (see FdRef)."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        ref = self.fd_ref()
        ref.enter()
        try:
            return method(self, *args, **kwargs)
        finally:
            ref.leave()
    return wrapper  # type: ignore[return-value]
