"""The benchmark cases, run with Python and C passes interleaved.

Each case gets its own freshly created and filled map(s); paths that only
read share that map, paths that write get one each. Every repetition runs
every implementation once, alternating which goes first, after ``warmup``
untimed repetitions. A ``Result`` keeps the per-pass ns/element and what the
path returned (checksum), next to the checksum the pattern predicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pybpf.bench import extra, pyops, startup
from pybpf.bench.rows import ALL, Impl, Result
from pybpf.bench.cbuild import CBaseline
from pybpf.bench.subjects import checksum, create_map, fill, pattern, read_all

__all__ = ["FULL", "QUICK", "Config", "Result", "run_all"]

WARM_KEYS = 1024  # per-key cases warm up on this many keys: their state needs no full pass


@dataclass(frozen=True)
class Config:
    """What one benchmark run measures: map sizes, repetitions, which cases."""
    entries: tuple[int, ...]
    value_sizes: tuple[int, ...]
    repeats: int = 3          # timed repeats of the one-syscall-per-element cases (seconds each at 1M)
    fast_repeats: int = 11    # timed repeats of the batch cases (tens of milliseconds each)
    memory_repeats: int = 201  # timed repeats of the mmap/numpy cases: short passes (~0.1-0.3 ms),
    #                            many of them, so the median dodges a shared VM's noisy neighbours
    warmup: int = 1
    chunks: tuple[int, ...] = (1, 64, 4096, ALL)
    copy_bytes: int = 2 << 20       # bytes copied per pass in the copy cases (far above timer resolution)
    scalar_reads: int = 5_000       # element reads per pass in the scalar cases
    gather_elems: int = 65536       # elements gathered per pass
    reference: tuple[int, int] = (65536, 8)  # (entries, value_size) the headline ratios use
    load_objects: tuple[str, ...] = extra.LOAD_OBJECTS  # bundled objects the open+load case loads
    ring_bytes: int = 16 << 20                          # ring size of the ring_drain case
    startup_runs: int = 3                               # runs of each start-up row (0: none)


QUICK = Config(entries=(65536,), value_sizes=(8,))
FULL = Config(entries=(1024, 65536, 1 << 20), value_sizes=(8, 64), repeats=5, fast_repeats=15, startup_runs=5)


class Runner:
    """Creates maps, builds implementations and interleaves their passes."""

    def __init__(self, config: Config, binary: Path, progress: Callable[[str], None]) -> None:
        self.config = config
        self.binary = binary
        self.progress = progress
        self.results: list[Result] = []

    def c(self, op: str, fd: int, entries: int, value_size: int, *, chunk: int = 1, inner: int = 1) -> tuple:
        proc = CBaseline(self.binary, op, fd, entries, value_size, chunk=chunk, inner=inner)
        return proc.run, proc.close

    def c_keyed(self, op: str, fd: int, entries: int, value_size: int, **kw: int) -> dict:
        """A per-key C baseline that warms up on WARM_KEYS keys."""
        proc = CBaseline(self.binary, op, fd, entries, value_size, **kw)
        return {"run": proc.run, "close": proc.close, "warm": lambda: proc.warm(WARM_KEYS)}

    def interleave(self, impls: list[Impl], *, slow: bool = False, memory: bool = False) -> None:
        cfg = self.config
        repeats = cfg.repeats if slow else cfg.memory_repeats if memory else cfg.fast_repeats
        try:
            for rep in range(cfg.warmup + repeats):
                for impl in impls if rep % 2 == 0 else reversed(impls):
                    if rep < cfg.warmup and impl.warm is not None:
                        impl.warm()
                        continue
                    sample = impl.run()
                    if sample.count != impl.result.elems_per_pass:
                        raise RuntimeError(f"{impl.result.case}/{impl.result.impl} handled {sample.count} "
                                           f"elements, expected {impl.result.elems_per_pass}")
                    impl.checksums.add(sample.checksum)
                    if rep >= cfg.warmup:
                        impl.result.samples.append(sample.ns / sample.count)
        finally:
            for impl in impls:
                impl.close()
        for impl in impls:
            # A path whose passes disagree with each other gets no checksum: it is not ok.
            impl.result.checksum = impl.checksums.pop() if len(impl.checksums) == 1 else None
            self.results.append(impl.result)

    # ---- the cases ---------------------------------------------------------

    def lookup(self, map_type: str, n: int, vs: int) -> None:
        expected = checksum(pattern(n, vs))
        with create_map(map_type, n, vs, "bench_lookup") as m:
            fill(m, n, vs)
            py = Result("lookup", "python", map_type, n, vs, elems_per_pass=n, expected=expected)
            c = Result("lookup", "c", map_type, n, vs, elems_per_pass=n, expected=expected)
            floor = Result("lookup", "cffi_floor", map_type, n, vs, elems_per_pass=n, expected=expected)
            keys = Result("lookup_keys", "python", map_type, n, vs, elems_per_pass=n, expected=expected)
            self.interleave([Impl(py, pyops.lookup(m, n), warm=pyops.lookup(m, min(n, WARM_KEYS))),
                             Impl(floor, pyops.lookup_cffi_floor(m, n, vs)),
                             Impl(keys, pyops.lookup_keys(m, n)),
                             Impl(c, **self.c_keyed("lookup", m.fd, n, vs))], slow=True)

    def batch(self, map_type: str, n: int, vs: int, chunk: int) -> None:
        expected = checksum(pattern(n, vs))
        size = n if chunk == ALL else chunk
        with create_map(map_type, n, vs, "bench_batch") as m:
            fill(m, n, vs)
            py = Result("batch", "python", map_type, n, vs, chunk, elems_per_pass=n, expected=expected)
            c = Result("batch", "c", map_type, n, vs, chunk, elems_per_pass=n, expected=expected)
            self.interleave([Impl(py, pyops.batch(m, n, vs, size)),
                             Impl(c, *self.c("batch", m.fd, n, vs, chunk=size))], slow=chunk == 1)

    def memory(self, n: int, vs: int) -> None:
        """mmap_scalar/numpy_scalar, mmap_copy/memcpy and gather on one mmapable array."""
        cfg = self.config
        values = pattern(n, vs)
        with create_map("array", n, vs, "bench_mmap") as m:
            fill(m, n, vs)
            view = m.view()
            plain = view.copy()  # a plain numpy array of the same dtype and size
            reads = cfg.scalar_reads
            idx = [i % n for i in range(reads)]
            scalar_expected = checksum(np.ascontiguousarray(values[idx]))
            per_element = [
                Impl(Result("mmap_scalar", "python", "array", n, vs, elems_per_pass=reads,
                            expected=scalar_expected), pyops.scalar(view, reads)),
                Impl(Result("numpy_scalar", "python", "array", n, vs, elems_per_pass=reads,
                            expected=scalar_expected), pyops.scalar(plain, reads)),
                Impl(Result("loop", "python", "array", n, vs, elems_per_pass=reads, expected=reads),
                     pyops.loop(reads)),
            ]
            cells = m.cells() if vs == 8 else None  # one u64 per element: cells[i] is the whole value
            if cells is not None:
                per_element.append(Impl(Result("cells", "python", "array", n, vs, elems_per_pass=reads,
                                               expected=scalar_expected), pyops.cells(cells, n, reads)))
            self.interleave(per_element, memory=True)
            inner = max(1, math.ceil(cfg.copy_bytes / (n * vs)))
            whole = checksum(values)
            copies = [("mmap_copy", "python", pyops.copy(view, inner), lambda: None),
                      ("memcpy", "python", pyops.copy(plain, inner), lambda: None),
                      ("mmap_copy", "c", *self.c("mmap_copy", m.fd, n, vs, inner=inner)),
                      ("memcpy", "c", *self.c("memcpy", -1, n, vs, inner=inner))]
            self.interleave([Impl(Result(case, impl, "array", n, vs, elems_per_pass=n * inner, expected=whole),
                                  run, close) for case, impl, run, close in copies], memory=True)
            rng = np.random.default_rng(0)
            indices = rng.integers(0, n, size=min(n, cfg.gather_elems))
            inner = max(1, math.ceil(cfg.gather_elems / len(indices)))
            gathered = checksum(np.ascontiguousarray(values[indices]))
            per_pass = len(indices) * inner
            self.interleave([
                Impl(Result("gather", "mmap_view", "array", n, vs, elems_per_pass=per_pass,
                            expected=gathered), pyops.gather(view, indices, inner)),
                Impl(Result("gather", "numpy_array", "array", n, vs, elems_per_pass=per_pass,
                            expected=gathered), pyops.gather(plain, indices, inner)),
            ], memory=True)
            del view, plain, cells

    def update(self, map_type: str, n: int, vs: int) -> None:
        expected = checksum(pattern(n, vs))
        maps = [create_map(map_type, n, vs, f"bench_update{i}") for i in range(4)]
        try:
            for m in maps:  # every pass replaces existing keys; zeros, so the result shows the writes
                fill(m, n, vs, zero=True)
            rows = [Result("update", "python", map_type, n, vs, elems_per_pass=n, expected=expected),
                    Result("update", "c", map_type, n, vs, elems_per_pass=n, expected=expected),
                    Result("update_batch", "python", map_type, n, vs, ALL, elems_per_pass=n, expected=expected),
                    Result("update_batch", "c", map_type, n, vs, ALL, elems_per_pass=n, expected=expected)]
            impls = [Impl(rows[0], pyops.update(maps[0], n, vs), warm=pyops.update(maps[0], min(n, WARM_KEYS), vs)),
                     Impl(rows[1], **self.c_keyed("update", maps[1].fd, n, vs)),
                     Impl(rows[2], pyops.update_batch(maps[2], n, vs)),
                     Impl(rows[3], *self.c("update_batch", maps[3].fd, n, vs, chunk=n))]
            self.interleave(impls, slow=True)
            # What a writer returned is what it left in its map.
            for row, m in zip(rows, maps):
                row.checksum = checksum(read_all(m, n, vs)) if row.checksum is not None else None
        finally:
            for m in maps:
                m.close()

    def plan(self) -> Iterator[tuple[str, Callable[[], None]]]:
        cfg = self.config
        for n in cfg.entries:
            for vs in cfg.value_sizes:
                at = f"{n} entries x {vs} B"
                for map_type in ("array", "hash"):
                    yield f"lookup {map_type}, {at}", partial(self.lookup, map_type, n, vs)
                for map_type in ("array", "hash"):
                    for chunk in cfg.chunks:
                        if map_type == "hash" and chunk == 1:
                            continue  # a hash bucket with 2+ keys makes chunk 1 fail with ENOSPC
                        label = "all" if chunk == ALL else chunk
                        yield f"batch {map_type} chunk {label}, {at}", partial(self.batch, map_type, n, vs, chunk)
                yield f"mmap view, {at}", partial(self.memory, n, vs)
                for map_type in ("array", "hash"):
                    yield f"update {map_type}, {at}", partial(self.update, map_type, n, vs)
        if cfg.load_objects:
            yield "open+load of the bundled objects", partial(extra.load_cases, self)
        if cfg.ring_bytes:
            yield "ring buffer drain", partial(extra.ring_cases, self)
        if cfg.startup_runs:
            yield "start-up: tools to their first event, prog show", partial(startup.startup_cases, self)


def run_all(config: Config, binary: Path, progress: Callable[[str], None] = lambda s: None) -> list[Result]:
    """Run every case of ``config``, Python and C interleaved, reporting progress."""
    runner = Runner(config, binary, progress)
    steps = list(runner.plan())
    for i, (label, step) in enumerate(steps, 1):
        progress(f"[{i}/{len(steps)}] {label}")
        step()
    return runner.results
