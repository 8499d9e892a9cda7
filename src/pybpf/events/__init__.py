"""Kernel -> user events: ring buffers (with a numpy reader), perf buffers, user ring buffers.

Importing the package registers each reader for its map type (``Map.ring_buffer()``,
``len()`` messages), since maps sit below events and never import them.
"""

from pybpf.events import perfbuf, ringbuf, userringbuf  # noqa: F401 (they register themselves)
