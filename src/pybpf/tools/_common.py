"""Plumbing shared by the shipped tools: open/load/attach, the event loop, JSON lines.

Owns what is the same in every tool module of :mod:`pybpf.tools` and is not worth
a public API: a stop flag set by SIGINT/SIGTERM (tools end cleanly and print their
summary, as libbpf-tools' do on Ctrl-C), loading a bundled object with rodata
settings and attaching its programs, and printing one JSON object per line.
The helpers a tool *author* needs (C strings, histograms, decoders) are public in
:mod:`pybpf.toolkit`.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

import pybpf
from pybpf.events.base import EventSource

__all__ = ["Stop", "emit_json", "fail", "loaded", "ready_message", "run_events"]


class Stop:
    """Set by SIGINT or SIGTERM (or a duration running out); restores the handlers on exit."""

    def __init__(self, duration: float | None = None) -> None:
        self.event = threading.Event()
        self.deadline = None if not duration else time.monotonic() + duration
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handler(self, signum: int, frame: Any) -> None:
        self.event.set()

    @property
    def stopped(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.event.set()
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (less if the deadline comes first); True when stopping."""
        if self.deadline is not None:
            seconds = min(seconds, max(self.deadline - time.monotonic(), 0.0))
        self.event.wait(seconds)
        return self.stopped


def fail(message: str) -> None:
    """One line on stderr and exit 1 (as the pybpf CLI does)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


@contextmanager
def loaded(name: str, rodata: Mapping[str, Any] | None = None, programs: list[str] | None = None,
           before_attach: Callable[[pybpf.Object], None] | None = None) -> Iterator[pybpf.Object]:
    """Open the bundled object ``name``, set rodata, load, attach (all or ``programs``).

    ``before_attach(obj)`` runs between load and attach (fill filter maps there).
    """
    obj = pybpf.open(pybpf.bundled(name))
    try:
        for key, value in (rodata or {}).items():
            obj.rodata[key] = value
        obj.load()
        if before_attach is not None:
            before_attach(obj)
        if programs is None:
            obj.attach()
        else:
            for prog in programs:
                obj.programs[prog].attach()
        yield obj
    finally:
        obj.close()


def run_events(rb: EventSource, handle: Callable[[np.ndarray], None], stop: Stop,
               ready: Callable[[], None] | None = None) -> None:
    """Feed ring buffer batches to ``handle`` until ``stop``; what is left is drained last."""
    if ready is not None:
        ready()
    while not stop.stopped:
        batch = rb.read(0.1)
        if len(batch):
            handle(batch)
    batch = rb.read(0)
    if len(batch):
        handle(batch)


def emit_json(doc: Any) -> None:
    """One JSON object on one line of stdout, flushed (for pipes and ``jq``)."""
    print(json.dumps(doc, default=_plain), flush=True)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def ready_message(text: str) -> None:
    """The 'Tracing ... Ctrl-C to end' line, on stderr so stdout stays data."""
    print(text, file=sys.stderr, flush=True)
