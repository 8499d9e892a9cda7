"""``pybpf bench``: the benchmark harness (:mod:`pybpf.bench`), or why it is unavailable."""

from __future__ import annotations

from pybpf.cli.render import fail, guarded

__all__ = ["bench_command"]

try:
    from pybpf.bench import bench_command as _bench
except ImportError as _missing:  # the harness is optional at install time
    _why = str(_missing)

    @guarded
    def bench_command() -> None:
        """Benchmarks (needs the benchmark harness, pybpf.bench)."""
        fail(f"pybpf bench needs the benchmark harness (pybpf.bench): {_why}")
else:
    bench_command = guarded(_bench)
