"""pybpf's loggers, and ``logging`` imported only by a process that uses it.

``import logging`` brings traceback, linecache, tokenize, textwrap, string and weakref: ~6 ms
of a tool's start, for lines nobody shows unless the program configured logging, which it
does by importing it. So the start path (libbpf's print callback, ``pybpf.open``) asks
:func:`active` whether ``logging`` is imported at all before it makes a record, and every
pybpf logger comes from :func:`logger`, which gives the ``pybpf`` logger its ``NullHandler``
(a library's manners: no "No handlers" fallback on stderr) before the first record.
Pure: stdlib only.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["DEBUG", "INFO", "WARNING", "active", "logger"]

# logging's level numbers (fixed by its documentation), usable without importing it
DEBUG, INFO, WARNING = 10, 20, 30

_ready = False


def logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` (a ``pybpf...`` name), the ``pybpf`` logger's NullHandler added once."""
    global _ready
    import logging

    if not _ready:
        logging.getLogger("pybpf").addHandler(logging.NullHandler())
        _ready = True
    return logging.getLogger(name)


def active(name: str) -> logging.Logger | None:
    """The logger ``name`` when this process has imported ``logging`` (and so may have configured
    it), else None: then no handler or level exists that would show a record."""
    if "logging" not in sys.modules:
        return None
    return logger(name)
