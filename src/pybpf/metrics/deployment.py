"""The exporter's source for a deployment that is already running: its maps read through its pins.

``pybpf export CONFIG --deployment DIR`` serves CONFIG's metrics from the maps
pinned in DIR instead of loading its own copy of the object, so restarting the
exporter resets no counter. Before each scrape the map pins are checked (their
inodes: an upgrade renames new pins into place) and reopened when they changed,
so an upgrade from another process is followed; an upgrade merges what the
old version counted before the new pins appear, so counters never go down.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
from prometheus_client.core import Metric

import pybpf
from pybpf.metrics.collector import ObjectMetrics
from pybpf.metrics.config import Config
from pybpf.upgrade.manifest import check_directory, pin_path, read_manifest

__all__ = ["DeploymentMetrics", "PinnedObject"]


class _PinnedSection:
    """Globals of a pinned data section, read like ``Object.bss`` (a live view where it is mmapable)."""

    def __init__(self, m: pybpf.Map | None) -> None:
        self.map = m
        self._view: np.ndarray | None = None
        if m is not None and "MMAPABLE" in m.flag_names:
            self._view = m.view()

    def _names(self) -> tuple[str, ...]:
        return tuple(self.map.value_dtype.names or ()) if self.map is not None else ()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __getitem__(self, name: str) -> Any:
        if self.map is None:
            raise KeyError(name)
        record = self._view[0] if self._view is not None else self.map.lookup(bytes(self.map.key_size))
        return record[name]

    def dtype_of(self, name: str) -> np.dtype:
        """The dtype of variable ``name``."""
        assert self.map is not None
        return self.map.value_dtype[name]


class PinnedObject:
    """What the collector reads of an Object (``maps``, ``bss``, ``data``, ``rodata``), from DIR's pins."""

    def __init__(self, directory: str) -> None:
        manifest = read_manifest(directory)
        if manifest is None:
            raise pybpf.BpfError(f"{directory} holds no pybpf deployment: deploy one with "
                                 f"`pybpf load OBJ --pin {directory}` or `pybpf agent`")
        self.name = manifest["object"]
        self.maps: dict[str, pybpf.Map] = {}
        sections: dict[str, pybpf.Map] = {}
        self.pins: dict[str, str] = {}
        try:
            for entry in manifest["maps"]:
                path = pin_path(directory, entry["pin"])
                handle = pybpf.Map.from_pin(path)
                self.pins[entry["pin"]] = path
                if entry.get("section"):
                    sections[entry["section"]] = handle
                else:
                    self.maps[entry["name"]] = handle
        except BaseException:
            for m in [*self.maps.values(), *sections.values()]:
                m.close()
            raise
        self._sections = sections
        self.bss, self.data, self.rodata = (_PinnedSection(sections.get(s)) for s in (".bss", ".data", ".rodata"))

    def close(self) -> None:
        """Close the map handles (views already handed out stay valid)."""
        for m in [*self.maps.values(), *self._sections.values()]:
            m.close()


def _fingerprint(directory: str) -> tuple[Any, ...]:
    manifest = read_manifest(directory) or {}
    inodes: list[int | None] = []
    for entry in manifest.get("maps", []):
        try:
            inodes.append(os.stat(pin_path(directory, entry["pin"])).st_ino)
        except OSError:
            inodes.append(None)
    return (manifest.get("version"), tuple(inodes))


class DeploymentMetrics:
    """One config's metrics over the deployment pinned in ``directory``, reopened after an upgrade."""

    def __init__(self, cfg: Config, directory: str) -> None:
        self.config = cfg
        self.directory = os.path.abspath(directory)
        check_directory(self.directory)
        self._lock = threading.Lock()
        self._object: PinnedObject | None = None
        self._metrics: ObjectMetrics | None = None
        self._seen: tuple[Any, ...] = ()
        self._open()

    def _open(self) -> None:
        seen = _fingerprint(self.directory)
        obj = PinnedObject(self.directory)
        try:
            metrics = ObjectMetrics(self.config, cast(Any, obj))  # the collector reads it as an Object
        except BaseException:
            obj.close()
            raise
        if self._object is not None:
            self._object.close()
        self._object, self._metrics, self._seen = obj, metrics, seen

    def collect(self) -> Iterator[Metric]:
        """This config's metric families, from the maps DIR pins now."""
        with self._lock:
            if _fingerprint(self.directory) != self._seen:
                self._open()
            metrics = self._metrics
        assert metrics is not None
        yield from metrics.collect()

    def read_paths(self) -> dict[str, str]:
        """How each metric is read."""
        assert self._metrics is not None
        return self._metrics.read_paths()

    def close(self) -> None:
        """Close the handles (the deployment keeps running)."""
        with self._lock:
            if self._object is not None:
                self._object.close()
                self._object = None
