"""``pybpf export CONFIG... [--addr 127.0.0.1] [--port N]``: serve BPF maps as Prometheus metrics.

Each CONFIG is a TOML file (format in the README) or the name of a shipped tool's
config (``execsnoop``, ``runqlat``...). Loads and attaches every object, serves
``/metrics`` until SIGTERM or SIGINT, then detaches and closes everything.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, List

import typer

from pybpf.cli.render import err_console, fail, guarded

__all__ = ["export_command"]


@guarded
def export_command(
    configs: List[str] = typer.Argument(..., metavar="CONFIG...",
                                        help="exporter config files, or shipped tool names (execsnoop, runqlat, ...)"),
    addr: str = typer.Option("127.0.0.1", "--addr", help="address to listen on"),
    port: int = typer.Option(9435, "--port", help="port to listen on (0: any free port)"),
    once: bool = typer.Option(False, "--once", help="print one scrape to stdout and exit (no server)"),
    deployment: List[str] = typer.Option([], "--deployment", metavar="DIR",
                                         help="read the i-th CONFIG's maps from the deployment pinned in DIR "
                                              "(already running) instead of loading a copy (repeatable)"),
) -> None:
    """Serve BPF map contents as Prometheus metrics on http://ADDR:PORT/metrics."""
    from pybpf.metrics import ConfigError, Exporter

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            if len(deployment) > len(configs):
                fail(f"{len(deployment)} --deployment given for {len(configs)} CONFIG(s): one DIR per CONFIG, in order")
            exporter = Exporter(configs, deployments=deployment)
        except ConfigError as exc:
            fail(str(exc))
        with exporter:
            if once:
                sys.stdout.write(exporter.exposition().decode())
                return
            try:
                bound = exporter.serve(addr, port)
            except OSError as exc:
                fail(f"cannot listen on {addr}:{port}: {exc.strerror or exc}")
            names = ", ".join(src.config.file for src in exporter.collector.sources)
            err_console().print(f"serving http://{addr}:{bound}/metrics ({names})", soft_wrap=True,
                                markup=False, highlight=False)
            sys.stderr.flush()
            while not stop.wait(0.5):
                pass
        err_console().print("stopped", markup=False, highlight=False)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
