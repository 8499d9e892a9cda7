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

__all__ = ["BARS", "BARS_MIN", "extra_ratios", "plot", "ratios", "render", "to_json"]

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
    "lookup_keys_python_over_c": (("lookup_keys", "python", "array", None), ("lookup", "c", "array", None)),
    "lookup_keys_python_over_c_hash": (("lookup_keys", "python", "hash", None), ("lookup", "c", "hash", None)),
    "update_python_over_c_hash": (("update", "python", "hash", None), ("update", "c", "hash", None)),
    "gather_view_over_plain": (("gather", "mmap_view", "array", None), ("gather", "numpy_array", "array", None)),
}

# The issues' bars (this machine, --quick, medians of one run): a ratio must stay at or below
# its bar. BARS_MIN: ratios that must reach at least their bar (speed over the C consumer).
BARS = {"lookup_python_over_c": 1.50, "lookup_python_over_c_hash": 1.50, "update_python_over_c": 1.50,
        "update_python_over_c_hash": 1.50,
        "lookup_keys_python_over_c": 1.10, "lookup_keys_python_over_c_hash": 1.10,
        "load_python_over_c": 1.15, "cells_over_numpy_scalar": 0.50,
        "batch_python_over_c": 1.15, "mmap_copy_over_memcpy": 1.10, "mmap_scalar_over_numpy_scalar": 1.30}
# start-up (issue 23): a tool's first event within 3x its C twin's time, its peak RSS in MiB,
# and `pybpf prog show` in seconds
BARS.update({"startup_first_event_over_c_execsnoop": 3.0, "startup_first_event_over_c_opensnoop": 3.0,
             "startup_peak_rss_mib_execsnoop": 40.0, "startup_peak_rss_mib_opensnoop": 40.0,
             "startup_prog_show_s": 0.15})
BARS_MIN = {"ring_drain_speed_over_c_count_32": 1.0, "ring_drain_speed_over_c_count_64": 1.0,
            "ring_into_speed_over_c_copy_32": 1.0, "ring_into_speed_over_c_copy_64": 1.0}


def _sum(results: list[Result], case: str, impl: str, stat: str) -> float:
    rows = [r for r in results if (r.case, r.impl) == (case, impl) and r.samples]
    return sum(r.median if stat == "median" else min(r.samples) for r in rows)


def extra_ratios(results: list[Result], *, stat: str = "median") -> dict[str, float]:
    """Ratios of the size-independent cases (open+load, ring drain)."""
    out: dict[str, float] = {}
    py, c, parse = (_sum(results, "load", impl, stat) for impl in ("python", "c", "parse"))
    if py and c:
        # every bundled object opened and loaded once: pybpf's total time over C's
        out["load_python_over_c"] = py / c
        out["load_parse_share"] = parse / py  # pybpf's own pure parse, of its open+load
        per_object = sorted(
            (r.median if stat == "median" else min(r.samples)) / (o.median if stat == "median" else min(o.samples))
            for r in results if (r.case, r.impl) == ("load", "python") and r.samples
            for o in results if (o.case, o.impl, o.map_type) == ("load", "c", r.map_type) and o.samples)
        out["load_python_over_c_median_object"] = per_object[len(per_object) // 2]
    _startup_ratios(results, stat, out)
    for size in (32, 64):
        rows = {r.impl: (r.median if stat == "median" else min(r.samples)) for r in results
                if (r.case, r.value_size) == ("ring_drain", size) and r.samples}
        if "python" in rows:
            # records per second of drain() over the C consumer's: >= 1 is at least as fast
            for impl in ("c_count", "c_copy"):
                if impl in rows:
                    out[f"ring_drain_speed_over_{impl}_{size}"] = rows[impl] / rows["python"]
            if "python_into" in rows and "c_copy" in rows:
                # drain(into=preallocated) against libbpf's consumer copying each record out
                out[f"ring_into_speed_over_c_copy_{size}"] = rows["c_copy"] / rows["python_into"]
            if "python_borrow" in rows and "c_count" in rows:
                out[f"ring_borrow_speed_over_c_count_{size}"] = rows["c_count"] / rows["python_borrow"]
    return out


def _startup_ratios(results: list[Result], stat: str, out: dict[str, float]) -> None:
    """The start-up rows' ratios (pybpf.bench.startup): first event over C, peak RSS, prog show."""
    def get(case: str, impl: str, what: str) -> float | None:
        for r in results:
            if (r.case, r.impl, r.map_type) == (case, impl, what) and r.samples:
                return r.median if stat == "median" else min(r.samples)
        return None

    for tool in ("execsnoop", "opensnoop"):
        py, c = get("startup", "python", tool), get("startup", "c", tool)
        if py is not None and c is not None:
            out[f"startup_first_event_over_c_{tool}"] = py / c
        py_rss, c_rss = get("peak_rss", "python", tool), get("peak_rss", "c", tool)
        if py_rss is not None:
            out[f"startup_peak_rss_mib_{tool}"] = py_rss / 1024
            if c_rss:
                out[f"startup_peak_rss_over_c_{tool}"] = py_rss / c_rss
    py, c = get("startup", "python", "prog_show"), get("startup", "c", "prog_show")
    if py is not None:
        out["startup_prog_show_s"] = py / 1e9
        if c:
            out["startup_prog_show_over_bpftool"] = py / c


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
    # One element read, less the bare loop's own cost per element, over numpy's a[i] less the loop.
    loop = _find(results, ("loop", "python", "array", None), entries, value_size)
    numpy_scalar = _find(results, ("numpy_scalar", "python", "array", None), entries, value_size)
    for name, case in (("cells_over_numpy_scalar", "cells"), ("mmap_scalar_net_over_numpy_scalar", "mmap_scalar")):
        row = _find(results, (case, "python", "array", None), entries, value_size)
        if row is not None and loop is not None and numpy_scalar is not None:
            get = (lambda r: r.median) if stat == "median" else (lambda r: min(r.samples))
            out[name] = (get(row) - get(loop)) / (get(numpy_scalar) - get(loop))
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
        "ratios": {**ratios(results, entries, value_size), **extra_ratios(results)},
        # the least-disturbed passes
        "ratios_of_min": {**ratios(results, entries, value_size, stat="min"), **extra_ratios(results, stat="min")},
        "bars": BARS,
        "bars_min": BARS_MIN,
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
        if c["case"] in STARTUP_CASES:
            continue  # their own table below
        t = c["ns_per_elem"]
        table.add_row(c["case"], c["impl"], c["map_type"], str(c["entries"]), str(c["value_size"]),
                      "" if c["chunk"] is None else str(c["chunk"]), _ns(t["median"]), _ns(t["min"]),
                      _ns(t["max"]), "[green]ok[/]" if c["ok"] else "[red]MISMATCH[/]")
    console.print(table)
    _render_startup(report, console)
    ref = report["config"]["reference"]
    rt = Table(title=f"ratios, same run ({ref['entries']} entries x {ref['value_size']} B)")
    rt.add_column("ratio")
    rt.add_column("of medians", justify="right")
    rt.add_column("of minimums", justify="right")
    rt.add_column("bar (medians)", justify="right")
    rt.add_column("")
    for name, value in report["ratios"].items():
        bar, low = report["bars"].get(name), report.get("bars_min", {}).get(name)
        if bar is not None:
            shown, verdict = f"<= {bar:.2f}", "[green]met[/]" if value <= bar else "[red]over[/]"
        elif low is not None:
            shown, verdict = f">= {low:.2f}", "[green]met[/]" if value >= low else "[red]under[/]"
        else:
            shown, verdict = "", ""
        rt.add_row(name, f"{value:.2f}", f"{report['ratios_of_min'].get(name, float('nan')):.2f}", shown, verdict)
    console.print(rt)
    p = report["paths"]
    console.print(f"maps: {p['maps']}; per-key: {p['per_key']}; batch: {p['batch']}")


STARTUP_CASES = ("startup", "peak_rss")


def _render_startup(report: dict, console: Console) -> None:
    rows: dict[tuple[str, str, str], dict] = {(c["case"], c["impl"], c["map_type"]): c for c in report["cases"]
                                              if c["case"] in STARTUP_CASES}
    if not rows:
        return
    table = Table(title="start-up: whole processes, pybpf and C interleaved (median of the runs)",
                  caption="first event: from the start of the tool to its first line about an exec/open this "
                          "bench makes every 20 ms; peak RSS: VmHWM; prog show: start to exit")
    for col in ("what", "pybpf s", "C s", "ratio", "pybpf peak MiB", "C peak MiB", "check"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for what in ("execsnoop", "opensnoop", "prog_show"):
        py, c = rows.get(("startup", "python", what)), rows.get(("startup", "c", what))
        if py is None:
            continue
        py_s, c_s = py["ns_per_elem"]["median"] / 1e9, c["ns_per_elem"]["median"] / 1e9 if c else None
        py_rss, c_rss = rows.get(("peak_rss", "python", what)), rows.get(("peak_rss", "c", what))
        ok = all(r["ok"] for r in (py, c, py_rss, c_rss) if r is not None)
        table.add_row(what if what != "prog_show" else "prog show (vs bpftool)", f"{py_s:.3f}",
                      f"{c_s:.3f}" if c_s is not None else "-", f"{py_s / c_s:.2f}" if c_s else "-",
                      f"{py_rss['ns_per_elem']['median'] / 1024:.1f}" if py_rss else "-",
                      f"{c_rss['ns_per_elem']['median'] / 1024:.1f}" if c_rss else "-",
                      "[green]ok[/]" if ok else "[red]FAILED[/]")
    console.print(table)


def plot(report: dict, path: Path) -> None:
    """A log-scale bar chart of the reference size's medians (needs matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = report["config"]["reference"]
    rows = [c for c in report["cases"] if c["case"] not in STARTUP_CASES
            and (c["entries"], c["value_size"]) == (ref["entries"], ref["value_size"])]
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
