"""The exporter behind ``pybpf export``: load each config's object, attach, serve ``/metrics``.

Owns the lifetime of what it loads: every object is opened, given its rodata,
loaded and attached here (``perf_event`` programs to the perf events the config's
``[[object.perf_event]]`` opens on every CPU), and closed by :meth:`Exporter.close`
(perf events, links, maps and the libbpf object, in that order), which also stops
the HTTP server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

import pybpf
from pybpf.metrics.collector import BpfCollector, ObjectMetrics
from pybpf.metrics.server import MetricsApp, start_server
from pybpf.metrics.config import Config, PerfEventSpec, load_config

__all__ = ["Exporter"]


class Exporter:
    """Objects loaded from configs, one registry with their collector, and an optional HTTP server."""

    def __init__(self, configs: Iterable[str | Path | Config], deployments: Sequence[str | None] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = BpfCollector()
        self.objects: list[pybpf.Object] = []
        self.perf_events: list[Any] = []   # pybpf.perf.PerfEvents, each owning its fds and links
        self.deployments: list[Any] = []  # sources reading a running deployment's pins (--deployment DIR)
        self._server: Any = None
        self.app: MetricsApp | None = None  # the HTTP side, once serve() runs
        self._thread: threading.Thread | None = None
        try:
            for i, item in enumerate(configs):
                cfg = item if isinstance(item, Config) else load_config(item)
                directory = deployments[i] if i < len(deployments) else None
                if cfg.python is not None:   # Python stacks: its own source (pybpf.metrics.python)
                    from pybpf.metrics.python import PythonMetrics

                    pysource = PythonMetrics(cfg)
                    self.deployments.append(pysource)   # closed with the others
                    self.collector.add(pysource)  # type: ignore[arg-type]
                elif directory is None:
                    self.collector.add(self._load(cfg))
                else:  # the i-th config reads the deployment pinned in DIR instead of loading a copy
                    from pybpf.metrics.deployment import DeploymentMetrics

                    source = DeploymentMetrics(cfg, directory)
                    self.deployments.append(source)
                    self.collector.add(source)  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise
        self.registry.register(self.collector)

    def _load(self, cfg: Config) -> ObjectMetrics:
        obj = pybpf.open(cfg.object_path())
        self.objects.append(obj)
        for name, value in cfg.rodata.items():
            try:
                obj.rodata[name] = value
            except (KeyError, LookupError) as exc:
                raise cfg.error(("object", "rodata", name), f"no .rodata variable {name!r} in {cfg.object}"
                                f" ({', '.join(obj.rodata)})") from exc
            except (TypeError, ValueError, OverflowError) as exc:
                raise cfg.error(("object", "rodata", name), str(exc)) from exc
        metrics = None
        obj.load()
        metrics = ObjectMetrics(cfg, obj)  # checks maps/fields/globals before anything attaches
        if cfg.programs is None:
            obj.attach()
        else:
            for i, prog in enumerate(cfg.programs):
                if prog not in obj.programs:
                    raise cfg.error(("object", "programs", i), f"no program {prog!r} in {cfg.object}; "
                                    f"programs: {', '.join(obj.programs)}")
                obj.programs[prog].attach()
        for spec in cfg.perf_events:
            self._open_perf_event(cfg, obj, spec)
        return metrics

    def _open_perf_event(self, cfg: Config, obj: pybpf.Object, spec: PerfEventSpec) -> None:
        from pybpf import perf   # only configs that sample pay for it

        if spec.program not in obj.programs:
            raise cfg.error(spec.path + ("program",), f"no program {spec.program!r} in {cfg.object}; "
                            f"programs: {', '.join(obj.programs)}")
        try:
            events = perf.open_events(spec.event, frequency=spec.frequency, period=spec.period)
        except (ValueError, LookupError, pybpf.BpfError) as exc:
            raise cfg.error(spec.path, str(exc)) from exc
        self.perf_events.append(events)
        events.attach(obj.programs[spec.program])

    def exposition(self) -> bytes:
        """One scrape's text, as ``/metrics`` serves it."""
        return generate_latest(self.registry)

    def serve(self, addr: str = "127.0.0.1", port: int = 9435) -> int:
        """Start serving ``/metrics`` in a thread; returns the port (useful with ``port=0``)."""
        self.app = MetricsApp(self.registry)  # concurrent scrapes share one collection
        self._server, self._thread = start_server(self.app, addr, port)
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop the server (if any) and close every object (links first)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        while self.perf_events:
            self.perf_events.pop().close()
        while self.objects:
            self.objects.pop().close()
        while self.deployments:
            self.deployments.pop().close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
