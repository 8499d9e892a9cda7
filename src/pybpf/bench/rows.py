"""One row of a benchmark report (``Result``) and one timed implementation (``Impl``).

Shared by the case runners (``pybpf.bench.cases``, ``pybpf.bench.extra``) and the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

from pybpf.bench.cbuild import Sample

__all__ = ["ALL", "Impl", "Result"]

ALL = 0  # chunk value meaning "the whole map in one call"


@dataclass
class Result:
    """One case's timings (Python and C samples) and their checks."""
    case: str
    impl: str
    map_type: str
    entries: int
    value_size: int
    chunk: int | None = None
    samples: list[float] = field(default_factory=list)  # ns per element, one per timed pass
    elems_per_pass: int = 0
    checksum: int | None = None
    expected: int | None = None

    @property
    def ok(self) -> bool:
        """Whether every sample's checksum matched the expected one."""
        return self.checksum is not None and self.checksum == self.expected

    @property
    def median(self) -> float:
        """The median nanoseconds per element of the Python samples."""
        return median(self.samples)

    def to_json(self) -> dict:
        """The case as the JSON report stores it."""
        return {
            "case": self.case, "impl": self.impl, "map_type": self.map_type, "entries": self.entries,
            "value_size": self.value_size,
            "chunk": None if self.chunk is None else ("all" if self.chunk == ALL else self.chunk),
            "ns_per_elem": {"median": self.median, "min": min(self.samples), "max": max(self.samples)},
            "repeats": len(self.samples), "elems_per_pass": self.elems_per_pass,
            "checksum": self.checksum, "expected_checksum": self.expected, "ok": self.ok,
        }


@dataclass
class Impl:
    """One implementation of a case: how to run (and warm up, close) it, and its result row."""
    result: Result
    run: Callable[[], Sample]
    close: Callable[[], None] = lambda: None
    warm: Callable[[], object] | None = None  # a cheaper warm-up pass than run()
    checksums: set[int] = field(default_factory=set)


