"""``PerfBuffer``: samples from a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` map, through libbpf.

A PerfBuffer owns one libbpf ``perf_buffer`` (a perf event and its ring per
CPU) and the EventSource epoll/eventfd pair that lets ``close()`` end a wait
cleanly.  Waiting happens on pybpf's own epoll, never inside
``perf_buffer__poll``, so ``close()`` from another thread cannot free the
buffer under a running C call; samples are then taken with
``perf_buffer__consume``.  Samples lost because a CPU's ring was full are
counted per CPU in ``lost``.
"""

from __future__ import annotations

import errno
import select
from collections.abc import Callable
from typing import Any

import numpy as np

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError, RecordFormatError
from pybpf.events.base import EventSource, check_map, record_dtype
from pybpf.kinds import MapType
from pybpf.maps.map import Map, register_stream_reader

__all__ = ["PerfBuffer"]


class PerfBuffer(EventSource):
    """Reader of a perf event array: ``read()``/``drain()`` return a numpy record array
    (with a ``dtype``) or a list of bytes; ``poll()`` queues them for the next
    ``drain()`` (libbpf's meaning) and returns their count; ``cpus`` holds the CPU
    of each sample of the last batch; ``lost[cpu]`` counts samples the kernel dropped.
    ``pages``: ring pages per CPU (a power of two)."""

    def __init__(self, map: Map, dtype: Any = None, *, pages: int = 8,
                 callback: Callable[[int, Any], Any] | None = None) -> None:
        self._closed = True
        check_map(map, "perf_event_array", "PerfBuffer")
        if pages <= 0 or pages & (pages - 1):
            raise ValueError(f"pages must be a power of two, not {pages}")
        self.name = map.name
        self._what = f"perf buffer {map.name}"
        self.dtype = record_dtype(map, dtype, "PerfBuffer")
        self._callback = callback
        self._samples: list[bytes] = []
        self._held: list[tuple[Any, np.ndarray]] = []   # batches queued by poll()
        self._sample_cpus: list[int] = []
        self._error: BaseException | None = None
        self.cpus = np.empty(0, np.int32)
        self.lost = np.zeros(_libbpf.num_possible_cpus(), np.uint64)
        self._sample_cb = ffi.callback("void(void *, int, void *, __u32)", self._on_sample)
        self._lost_cb = ffi.callback("void(void *, int, __u64)", self._on_lost)
        super().__init__()
        with _libbpf.capture() as log:
            pb = lib.perf_buffer__new(map.fd, pages, self._sample_cb, self._lost_cb, ffi.NULL, ffi.NULL)
        if pb == ffi.NULL:
            err = ffi.errno or errno.EINVAL
            self._release()
            raise _libbpf.make_error(err, f"perf_buffer__new for {self._what}", log=log.text,
                                     capability="CAP_PERFMON")
        self._pb = pb
        self._epoll.register(int(lib.perf_buffer__epoll_fd(pb)), select.EPOLLIN)
        self._closed = False

    def __repr__(self) -> str:
        return f"<PerfBuffer {self.name} dtype={self.dtype}{' closed' if self._closed else ''}>"

    @property
    def lost_total(self) -> int:
        """Samples the kernel dropped, over all CPUs."""
        return int(self.lost.sum())

    def _on_sample(self, ctx: Any, cpu: int, data: Any, size: int) -> None:
        try:
            raw = ffi.buffer(data, size)[:]
            if self.dtype is not None:
                # perf pads raw samples so that size + 4 is a multiple of 8
                if not 0 <= size - self.dtype.itemsize < 8:
                    raise RecordFormatError(f"{self._what}: a {size}-byte sample does not match dtype "
                                            f"{self.dtype} ({self.dtype.itemsize} bytes)")
                raw = raw[:self.dtype.itemsize]
            if self._callback is not None:
                self._callback(cpu, np.frombuffer(raw, self.dtype)[0] if self.dtype is not None else raw)
            else:
                self._samples.append(raw)
                self._sample_cpus.append(cpu)
        except BaseException as exc:  # never unwind into C; re-raised after the consume
            if self._error is None:
                self._error = exc

    def _on_lost(self, ctx: Any, cpu: int, count: int) -> None:
        if 0 <= cpu < len(self.lost):
            self.lost[cpu] += count

    def _consume(self) -> None:
        ret = lib.perf_buffer__consume(self._pb)
        error, self._error = self._error, None
        if error is not None:
            raise error
        _libbpf.check(ret, f"consuming {self._what}")

    def drain(self) -> Any:
        """Every sample available now (queued by ``poll()`` first): records or a list of bytes."""
        return self._drain(fresh=False)

    def _queue(self, found: Any) -> None:
        self._held.append((found, self.cpus))

    def _drain(self, fresh: bool) -> Any:
        self._enter()
        try:
            if self._held and not fresh:
                batch, self.cpus = self._held.pop(0)
                return batch
            self._consume()
            samples, self._samples = self._samples, []
            self.cpus = np.array(self._sample_cpus, np.int32)
            self._sample_cpus = []
            if self.dtype is None:
                return samples
            return np.frombuffer(b"".join(samples), self.dtype)
        finally:
            self._leave()

    def consume(self) -> int:
        """Callback mode: hand every available sample to the callback; returns how many."""
        self._enter()  # a closed buffer says so before anything else
        if self._callback is None:
            self._leave()
            raise BpfError(f"{self._what} has no callback: use drain() or poll()")
        try:
            calls = [0]
            callback = self._callback

            def counting(cpu: int, record: Any) -> None:
                calls[0] += 1
                callback(cpu, record)

            self._callback = counting
            try:
                self._consume()
            finally:
                self._callback = callback
            return calls[0]
        finally:
            self._leave()

    def _take(self, fresh: bool = False) -> Any:
        return self.consume() if self._callback is not None else self._drain(fresh)

    def _empty(self) -> Any:
        if self._callback is not None:
            return 0
        return np.empty(0, self.dtype) if self.dtype is not None else []

    def _free(self) -> None:
        pb = getattr(self, "_pb", ffi.NULL)
        if pb != ffi.NULL:
            lib.perf_buffer__free(pb)
            self._pb = ffi.NULL


register_stream_reader(MapType.PERF_EVENT_ARRAY, "pybpf.PerfBuffer", PerfBuffer)
