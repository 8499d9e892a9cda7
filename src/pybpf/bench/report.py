"""Ratios, JSON, the rich tables and the optional plot of one benchmark run.

Ratios divide medians from the same run (never figures from different runs),
which is what holds on a noisy machine. Headline ratios use the config's
reference size; ``ratios_by_config`` has them for every size measured.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pybpf.bench.cases import ALL, Config, Result

__all__ = ["BARS", "plot", "ratios", "render", "to_json"]

# name -> (numerator, denominator); each side is (case, impl, map_type, chunk)
RATIOS: dict[str, tuple[tuple, tuple]] = {
    "lookup_python_over_c": (("lookup", "python", "array", None), ("lookup", "c", "array", None)),
    "lookup_python_over_c_hash": (("lookup", "python", "hash", None), ("lookup", "c", "hash", None)),
    "lookup_cffi_floor_over_c": (("lookup", "cffi_floor", "array", None), ("lookup", "c", "array", None)),
    "lookup_python_over_cffi_floor": (("lookup", "python", "array", None),
                                      ("lookup", "cffi_floor", "array", None)),
    "batch_python_over_c": (("batch", "python", "array", ALL), ("batch", "c", "array", ALL)),
    "batch_python_over_c_chunk_1": (("batch", "python", "array", 1), ("batch", "c", "array", 1)),
    "batch_python_over_c_chunk_64": (("batch", "python", "array", 64), ("batch", "c", "array", 64)),
    "batch_python_over_c_chunk_4096": (("batch", "python", "array", 4096), ("batch", "c", "array", 4096)),
    "batch_python_over_c_hash": (("batch", "python", "hash", ALL), ("batch", "c", "hash", ALL)),
    "mmap_copy_over_memcpy": (("mmap_copy", "python", "array", None), ("memcpy", "python", "array", None)),
    "mmap_copy_over_memcpy_c": (("mmap_copy", "c", "array", None), ("memcpy", "c", "array", None)),
    "mmap_scalar_over_numpy_scalar": (("mmap_scalar", "python", "array", None),
                                      ("numpy_scalar", "python", "array", None)),
    "syscall_over_mmap_scalar": (("lookup", "python", "array", None), ("mmap_scalar", "python", "array", None)),
    "syscall_c_over_mmap_scalar": (("lookup", "c", "array", None), ("mmap_scalar", "python", "array", None)),
    "whole_map_lookup_over_mmap_copy": (("batch", "python", "array", ALL), ("mmap_copy", "python", "array", None)),
    "update_python_over_c": (("update", "python", "array", None), ("update", "c", "array", None)),
    "update_batch_python_over_c": (("update_batch", "python", "array", ALL), ("update_batch", "c", "array", ALL)),
    "gather_view_over_plain": (("gather", "mmap_view", "array", None), ("gather", "numpy_array", "array", None)),
}

# The bars (this machine, --quick, medians of one run).
BARS = {"lookup_python_over_c": 1.30, "batch_python_over_c": 1.15, "mmap_copy_over_memcpy": 1.10,
        "mmap_scalar_over_numpy_scalar": 1.30}


def _find(results: list[Result], spec: tuple, entries: int, value_size: int) -> Result | None:
    case, impl, map_type, chunk = spec
    for r in results:
        if (r.case, r.impl, r.map_type, r.chunk, r.entries, r.value_size) == \
                (case, impl, map_type, chunk, entries, value_size) and r.samples:
            return r
    return None


def ratios(results: list[Result], entries: int, value_size: int, *, stat: str = "median") -> dict[str, float]:
    """The named ratios at one size, of medians (or of minimums: ``stat="min"``)."""
    out = {}
    for name, (num, den) in RATIOS.items():
        a, b = _find(results, num, entries, value_size), _find(results, den, entries, value_size)
        if a is not None and b is not None:
            out[name] = a.median / b.median if stat == "median" else min(a.samples) / min(b.samples)
    return out


def _configs(results: list[Result]) -> list[tuple[int, int]]:
    return sorted({(r.entries, r.value_size) for r in results})


def to_json(results: list[Result], config: Config, machine: dict, paths: dict) -> dict:
    """The whole run as JSON: results, ratios, configuration, machine."""
    entries, value_size = config.reference
    if (entries, value_size) not in _configs(results):
        entries, value_size = _configs(results)[0]
    return {
        "machine": machine,
        "config": {**asdict(config), "reference": {"entries": entries, "value_size": value_size}},
        "paths": paths,
        "cases": [r.to_json() for r in results],
        "ratios": ratios(results, entries, value_size),
        "ratios_of_min": ratios(results, entries, value_size, stat="min"),  # the least-disturbed passes
        "bars": BARS,
        "ratios_by_config": {f"{n}x{vs}": ratios(results, n, vs) for n, vs in _configs(results)},
        "all_ok": all(r.ok for r in results),
    }


def _ns(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def render(report: dict, console: Console) -> None:
    """Print the run's tables (and ratios) to ``console``."""
    m = report["machine"]
    table = Table(title=f"pybpf bench on {m['hostname']}: kernel {m['kernel']}, libbpf {m['libbpf']}, "
                        f"{m['cpu']} x{m['cpus']}, {m['python']}",
                  caption="ns per element over the timed repeats (Python and C interleaved); "
                          "check: the values the path returned match the map's contents")
    for col in ("case", "impl", "map", "entries", "value B", "chunk"):
        table.add_column(col, no_wrap=True)
    for col in ("median ns", "min", "max"):
        table.add_column(col, justify="right")
    table.add_column("check")
    for c in report["cases"]:
        t = c["ns_per_elem"]
        table.add_row(c["case"], c["impl"], c["map_type"], str(c["entries"]), str(c["value_size"]),
                      "" if c["chunk"] is None else str(c["chunk"]), _ns(t["median"]), _ns(t["min"]),
                      _ns(t["max"]), "[green]ok[/]" if c["ok"] else "[red]MISMATCH[/]")
    console.print(table)
    ref = report["config"]["reference"]
    rt = Table(title=f"ratios, same run ({ref['entries']} entries x {ref['value_size']} B)")
    rt.add_column("ratio")
    rt.add_column("of medians", justify="right")
    rt.add_column("of minimums", justify="right")
    rt.add_column("bar (medians)", justify="right")
    rt.add_column("")
    for name, value in report["ratios"].items():
        bar = report["bars"].get(name)
        verdict = "" if bar is None else ("[green]met[/]" if value <= bar else "[red]over[/]")
        rt.add_row(name, f"{value:.2f}", f"{report['ratios_of_min'][name]:.2f}",
                   "" if bar is None else f"<= {bar:.2f}", verdict)
    console.print(rt)
    p = report["paths"]
    console.print(f"maps: {p['maps']}; per-key: {p['per_key']}; batch: {p['batch']}")


def plot(report: dict, path: Path) -> None:
    """A log-scale bar chart of the reference size's medians (needs matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = report["config"]["reference"]
    rows = [c for c in report["cases"]
            if (c["entries"], c["value_size"]) == (ref["entries"], ref["value_size"])]
    labels = [" ".join(str(x) for x in (c["case"], c["impl"], c["map_type"],
                                         "" if c["chunk"] is None else f"chunk {c['chunk']}")).strip()
              for c in rows]
    medians = [c["ns_per_elem"]["median"] for c in rows]
    errors = [[m - c["ns_per_elem"]["min"] for m, c in zip(medians, rows)],
              [c["ns_per_elem"]["max"] - m for m, c in zip(medians, rows)]]
    colors = ["tab:orange" if c["impl"] == "c" else "tab:blue" for c in rows]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.5))
    ax.barh(labels, medians, xerr=errors, color=colors)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("ns per element (median, min-max); orange = C baseline")
    m = report["machine"]
    ax.set_title(f"pybpf bench: {ref['entries']} entries x {ref['value_size']} B, "
                 f"kernel {m['kernel']}, {m['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
