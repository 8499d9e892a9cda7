"""``Resource``: the one lifecycle every owner of a kernel resource shares.

An owner (``Object``, ``Map``, ``Link``, ``RingBuffer``, ``StatsHandle``...) has exactly
one ``close()`` (idempotent), ``closed``, and context-manager use.  The finaliser is a
safety net, not the plan: an owner that is garbage-collected while still open warns with
``ResourceWarning`` (which the test suite turns into an error) and then closes.
"""

from __future__ import annotations

import sys
import warnings
from abc import ABC, abstractmethod
from typing import TypeVar

__all__ = ["Resource"]

_R = TypeVar("_R", bound="Resource")


class Resource(ABC):
    """Base of every pybpf type that owns something in the kernel."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once ``close()`` has run (or the resource was never fully made)."""

    @abstractmethod
    def close(self) -> None:
        """Release the resource. Idempotent."""

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            closed = self.closed
        except Exception:  # a constructor that failed half-way: nothing of ours to release
            return
        if closed:
            return
        if sys.is_finalizing():
            # Interpreter exit: imports, warnings and even repr() may fail now (sys.meta_path
            # is None); release quietly, never print a traceback at exit.
            try:
                self.close()
            except BaseException:
                pass
            return
        try:
            try:
                text = repr(self)
            except Exception:
                text = f"<{type(self).__name__}>"
            warnings.warn(f"{text} was never closed; closing it now", ResourceWarning, stacklevel=2)
        finally:  # even when warnings are errors: release it
            try:
                self.close()
            except Exception:
                pass
