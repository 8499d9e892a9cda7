"""A module imported when it is first used, not when ``import`` names it (the ``pybpf tool`` process).

pybpf's modules import numpy at their top, as a library should; a tool's start uses
none of it (:mod:`pybpf.btf.plain` sets ``.rodata`` and decodes ring buffer records without
numpy), and numpy's import is the largest single cost of a start (~0.1 s of CPU and ~17 MiB).
:func:`defer_import` puts a stand-in module in ``sys.modules``: ``import numpy as np`` binds the
stand-in and costs nothing; the first attribute read (``np.ndarray``, ``np.dtype(...)``, an
``isinstance`` against a numpy type) imports numpy for real, copies its namespace into the
stand-in, and puts the real module in ``sys.modules``. Nothing changes for code that uses
numpy but when it pays. Only the ``pybpf`` command's tool path installs it (a library never
replaces modules behind its caller's back).

Python's own ``importlib.util.LazyLoader`` cannot serve: the import statement reads
``__spec__`` of a module already in ``sys.modules``, and that read is what LazyLoader loads on.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["defer_import"]

_lock = threading.RLock()


class _Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for a module until one of its attributes is read."""

    def __getattr__(self, name: str) -> Any:
        # only for names not in the stand-in's namespace: before the import, every name
        return getattr(_load(self), name)


def _load(stand_in: _Deferred) -> types.ModuleType:
    name = stand_in.__name__
    with _lock:
        real = sys.modules.get(name)
        if real is stand_in or real is None:
            sys.modules.pop(name, None)
            try:
                real = importlib.import_module(name)
            except BaseException:
                sys.modules.setdefault(name, stand_in)  # the next use tries (and fails) again
                raise
            vars(stand_in).update(vars(real))  # from now on a read of the stand-in is a dict lookup
        return real


def defer_import(name: str) -> bool:
    """Put a stand-in for module ``name`` in ``sys.modules`` (True), unless it is imported
    already or not installed (False: nothing changes)."""
    with _lock:
        if name in sys.modules:
            return False
        spec = importlib.util.find_spec(name)
        if spec is None:
            return False
        stand_in = _Deferred(name)
        # what the import machinery reads of a module in sys.modules, so that `import name` is free
        stand_in.__spec__ = spec
        stand_in.__loader__ = spec.loader
        stand_in.__file__ = spec.origin
        stand_in.__package__ = name
        sys.modules[name] = stand_in
        return True
