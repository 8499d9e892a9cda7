"""The ``pybpf`` command: inspect objects, dump BTF, load and run programs, list the kernel's.

A thin typer app over the public API (``pybpf``, ``pybpf.spec.elf``, ``pybpf.btf.types``,
``pybpf.kernel.info``, ``pybpf.cheader``): whatever a command shows, a program can
get from the library too. Each command lives in its own module; this one
only wires them together and holds the global ``--debug`` switch.
"""

from __future__ import annotations

import typer

from pybpf.cli.btf import btf_app
from pybpf.cli.build import build_command
from pybpf.cli.check import check_command
from pybpf.cli.demo import demo_command
from pybpf.cli.gen import gen_command
from pybpf.cli.inspect import inspect_command
from pybpf.cli.kernel import map_app, prog_app
from pybpf.cli.render import fail, guarded, set_debug
from pybpf.cli.run import load_command, test_run_command
from pybpf.cli.tool import TOOL_CONTEXT, tool_command
from pybpf.cli.usdt import usdt_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="pybpf",
    help="CO-RE eBPF from Python: inspect, load, run and watch BPF objects.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks only with --debug, and then plain
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error"),
) -> None:
    set_debug(debug)


app.command("inspect")(inspect_command)
app.command("check")(check_command)
app.command("load")(load_command)
app.command("test-run")(test_run_command)
app.command("demo")(demo_command)
app.command("build")(build_command)
app.command("gen")(gen_command)
app.command("tool", context_settings=TOOL_CONTEXT)(guarded(tool_command))
app.add_typer(btf_app, name="btf")
app.add_typer(prog_app, name="prog")
app.add_typer(map_app, name="map")
app.add_typer(usdt_app, name="usdt")

try:
    from pybpf.bench import bench_command
except ImportError as _bench_missing:  # the harness is optional at install time
    _why = str(_bench_missing)

    @app.command("bench")
    @guarded
    def _bench_unavailable() -> None:
        """Benchmarks (needs the benchmark harness, pybpf.bench)."""
        fail(f"pybpf bench needs the benchmark harness (pybpf.bench): {_why}")
else:
    app.command("bench")(guarded(bench_command))


def main() -> None:
    """Entry point of the ``pybpf`` console script."""
    app()
