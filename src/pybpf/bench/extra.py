"""Bench cases beyond per-map element access: object open+load, and ring buffer draining.

* ``load`` (per bundled object): ``pybpf.open(path).load()`` then ``close()``, against
  C's ``bpf_object__open_file`` + ``bpf_object__load`` + ``bpf_object__close``; ``parse`` is
  pybpf's own pure ELF/BTF parse of the same file (``ObjectSpec``), timed alone
  as on a first open (its BTF validation uncached; the python rows, after the
  warm-up, re-open bytes already validated), so the report shows its share. ns per object; checksum = programs loaded.
* ``ring_drain`` (32 and 64 B records): a ``SEC("syscall")`` program fills a
  ring (``ringbuf_bench.bpf.o``), then one consumer reads it, only the read
  timed: ``RingBuffer.drain()`` (python), libbpf's ``ring_buffer__consume``
  with a counting callback (c_count: the C callback consumer) and with one that
  copies every record into an array, as drain does (c_copy); python_into is
  ``drain(into=array)``, copying into one preallocated array as c_copy does; python_borrow is
  the zero-copy ``RingBuffer.borrow()`` (records counted, as c_count does). ns
  per record; checksum 1 = the pass read exactly the records its fill wrote.
"""

from __future__ import annotations

import functools
import os
import struct
import time

import numpy as np

import pybpf
from pybpf.bench.cbuild import CBaseline, Sample
from pybpf.bench.rows import Impl, Result
from pybpf.spec import elf
from pybpf.spec.elf import ObjectSpec

__all__ = ["LOAD_OBJECTS", "load_cases", "ring_cases"]

LOAD_OBJECTS = ("counters", "events_exec", "maps_test", "net", "probes", "ringbuf_bench", "ringbuf_events",
                "ringbuf_user", "syscount")
RING_RECORD_SIZES = (32, 64)
clock = time.perf_counter_ns


def _programs_loaded(obj: pybpf.Object) -> int:
    return sum(1 for p in obj.programs.values() if p.autoload and p.fd >= 0)


def _py_load(path: str):  # type: ignore[no-untyped-def]
    def run() -> Sample:
        # open + load + close, as the C pass times them (the count is taken in between, untimed)
        t0 = clock()
        obj = pybpf.open(path)
        obj.load()
        t1 = clock()
        progs = _programs_loaded(obj)
        t2 = clock()
        obj.close()
        return Sample(t1 - t0 + clock() - t2, progs, 1)
    return run


def _py_parse(path: str, progs: int):  # type: ignore[no-untyped-def]
    with open(path, "rb") as f:
        data = f.read()

    def run() -> Sample:
        elf._VALIDATED.clear()  # a first open's parse: BTF validation included (re-opens skip it)
        t0 = clock()
        ObjectSpec(data, path=path)
        return Sample(clock() - t0, progs, 1)
    return run


def load_cases(runner) -> None:  # type: ignore[no-untyped-def]
    """One ``load`` row pair (+ ``parse``) per bundled object that this kernel loads."""
    for name in runner.config.load_objects:
        try:
            path = pybpf.bundled(name)
            with pybpf.open(path) as obj:
                obj.load()
                progs = _programs_loaded(obj)
        except (FileNotFoundError, pybpf.BpfError):
            continue  # not built, or refused by this kernel: nothing to compare
        os.environ["PYBPF_BENCH_OBJECT"] = path
        try:
            proc = CBaseline(runner.binary, "load", -1, 1, 8)
        finally:
            del os.environ["PYBPF_BENCH_OBJECT"]
        rows = [Result("load", impl, name, 1, 0, elems_per_pass=1, expected=progs)
                for impl in ("python", "c", "parse")]
        runner.interleave([Impl(rows[0], _py_load(path)), Impl(rows[1], proc.run, proc.close),
                           Impl(rows[2], _py_parse(path, progs))])


def ring_cases(runner) -> None:  # type: ignore[no-untyped-def]
    """The ``ring_drain`` rows for 32 and 64 B records on one ring of ``config.ring_bytes``."""
    with pybpf.open(pybpf.bundled("ringbuf_bench")) as obj:
        obj.maps["bench"].max_entries = runner.config.ring_bytes
        obj.load()
        for size in RING_RECORD_SIZES:
            _ring_case(runner, obj, size)


def _ring_case(runner, obj: pybpf.Object, size: int) -> None:  # type: ignore[no-untyped-def]
    fill_prog, bss, ring_map = obj.programs["fill"], obj.bss, obj.maps["bench"]
    stride = 8 + size
    count = runner.config.ring_bytes // stride - 1
    state = {"expected": 0}

    def fill() -> None:
        first, before = int(bss["next_seq"]), int(bss["written"])
        fill_prog.test_run(ctx_in=struct.pack("II", count, size), ctx_out_size=0)
        if int(bss["written"]) - before != count:
            raise RuntimeError(f"ring fill wrote {int(bss['written']) - before} of {count} records")
        state["expected"] = count * first + count * (count - 1) // 2

    with ring_map.ring_buffer(dtype=f"rec{size}") as rb:
        def drain() -> Sample:
            fill()
            t0 = clock()
            batch = rb.drain()
            ns = clock() - t0
            right = int(batch["seq"].sum()) == state["expected"]
            return Sample(ns, int(right), len(batch))

        into = np.empty(count, rb.dtype)
        into.fill(0)  # paged in once, as the C consumer's output array is

        def drain_into() -> Sample:
            fill()
            t0 = clock()
            batch = rb.drain(into=into)
            ns = clock() - t0
            right = int(batch["seq"].sum()) == state["expected"]
            return Sample(ns, int(right), len(batch))

        def borrow() -> Sample:
            fill()
            t0 = clock()
            with rb.borrow() as batch:
                got = len(batch)
                del batch  # no view left: the block gives the space back at once
            ns = clock() - t0
            return Sample(ns, int(got == count), got)

        def c_pass(proc: CBaseline) -> Sample:
            fill()
            s = proc.run()
            return Sample(s.ns, int(s.checksum == state["expected"]), s.count)

        impls = []
        for impl in ("python", "python_into", "python_borrow", "c_count", "c_copy"):
            # checksum 1: the pass read exactly the records its fill wrote (sum of seq)
            row = Result("ring_drain", impl, "ringbuf", count, size, elems_per_pass=count, expected=1)
            if impl.startswith("python"):
                impls.append(Impl(row, {"python": drain, "python_into": drain_into, "python_borrow": borrow}[impl]))
                continue
            proc = CBaseline(runner.binary, "ring_count" if impl == "c_count" else "ring_copy",
                             ring_map.fd, count, stride)
            impls.append(Impl(row, functools.partial(c_pass, proc), proc.close))
        runner.interleave(impls)
