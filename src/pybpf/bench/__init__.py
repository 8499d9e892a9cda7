"""``pybpf bench``: syscall lookups vs batch lookups vs mmap views, Python next to C.

Every case runs on its own fresh map, Python and C passes interleaved in one
run, and reports ns per element (median, min, max) plus ratios of medians.
``run(config)`` returns the report as a dict (the JSON schema); the typer
command ``bench_command`` prints it, and can write the JSON and a plot.
"""

from __future__ import annotations

import json as _json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from pybpf._sys import fast
from pybpf.bench import cases
from pybpf.bench import report
from pybpf.bench.cases import FULL, QUICK, Config
from pybpf.bench.cbuild import BuildError, build
from pybpf.bench.machine import describe
from pybpf.bench.pyops import batch_path
from pybpf.bench.subjects import created_with

__all__ = ["FULL", "QUICK", "Config", "bench_command", "run"]

PLOT_HINT = "the plot needs matplotlib: pip install 'pybpf[bench]' (or pip install matplotlib)"


def run(config: Config, progress=lambda message: None) -> dict:
    """Run every case of ``config``; the report dict (as written by ``--json``)."""
    binary = build()
    results = cases.run_all(config, binary, progress)
    paths = {"maps": created_with(), "per_key": "m[k] / m[k] = v (one bpf_map_*_elem each; lookup_keys: Map.lookup(keys))",
             "c_helpers": fast.MODE,
             "batch": batch_path(), "c_binary": str(binary)}
    return report.to_json(results, config, describe(), paths)


def bench_command(
    quick: bool = typer.Option(False, "--quick", help="64K entries, 8-byte values, few repeats (< 30 s)"),
    json: Path | None = typer.Option(None, "--json", help="write the full report as JSON here"),  # noqa: B008
    plot: Path | None = typer.Option(None, "--plot", help="a bar chart (PNG) here; needs matplotlib"),  # noqa: B008
    upgrade: bool = typer.Option(False, "--upgrade", help="instead: the dispatcher's per-event overhead vs a "
                                 "direct attach, switch and upgrade times (pybpf.bench.upgrade)"),
) -> None:
    """Benchmark map access: syscall lookups vs batch lookups vs mmap views, Python next to C."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # keep the table readable when piped or logged
    if upgrade:
        _upgrade_bench(console, json, quick)
        return
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            console.print(f"[red]--plot: {escape(PLOT_HINT)}[/]")
            raise typer.Exit(2)
    try:
        with console.status("building the C baselines") as status:
            build()
            result = run(QUICK if quick else FULL, lambda msg: status.update(msg))
    except BuildError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1)
    report.render(result, console)
    if json is not None:
        json.write_text(_json.dumps(result, indent=2) + "\n")
        console.print(f"JSON written to {json}")
    if plot is not None:
        report.plot(result, plot)
        console.print(f"plot written to {plot}")
    if not result["all_ok"]:
        console.print("[red]some paths returned values that do not match the map's contents[/]")
        raise typer.Exit(1)


def _upgrade_bench(console: Console, json: Path | None, quick: bool) -> None:
    from rich.table import Table

    from pybpf.bench import upgrade as upgrade_bench
    sizes = {"calls": 50_000, "rounds": 5, "switches": 500, "upgrades": 10} if quick else {}
    with console.status("timing the dispatcher, link updates and upgrades"):
        result = upgrade_bench.run(**sizes)
    out = Table(title="upgrade machinery (medians; rounds interleaved in one run)", title_justify="left")
    out.add_column("case")
    out.add_column("cost")
    for case, cost in upgrade_bench.render_rows(result):
        out.add_row(case, cost)
    console.print(out)
    if json is not None:
        json.write_text(_json.dumps(result, indent=2) + "\n")
        console.print(f"JSON written to {json}")
