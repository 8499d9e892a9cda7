"""``pybpf prog list|show`` and ``pybpf map list|show|dump``: what the kernel holds now.

Like ``bpftool prog/map``, read through :mod:`pybpf.kernel.info` (ids and
``BPF_OBJ_GET_INFO_BY_FD``) and :class:`pybpf.Map` (``Map.from_id`` and
``lookup_batch``, typed from the map's BTF). Needs CAP_SYS_ADMIN.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import typer

import pybpf
from pybpf.kernel import info
from pybpf.errors import BpfError

from pybpf.cli.render import console, guarded, jsonable, print_json, short, table

__all__ = ["prog_app", "map_app", "programs", "maps", "map_entries"]

prog_app = typer.Typer(help="BPF programs loaded in the kernel.", no_args_is_help=True)
map_app = typer.Typer(help="BPF maps in the kernel.", no_args_is_help=True)

T = TypeVar("T")
_JSON = typer.Option(False, "--json", help="print JSON")


def _by_id(open_fd: Callable[[int], int], read: Callable[[int], T], item_id: int) -> T:
    fd = open_fd(item_id)
    try:
        return read(fd)
    finally:
        os.close(fd)


def _all(ids: Iterator[int], open_fd: Callable[[int], int], read: Callable[[int], T]) -> list[T]:
    found = []
    for item_id in ids:
        try:
            found.append(_by_id(open_fd, read, item_id))
        except BpfError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: unloaded between listing and opening
                raise
    return found


def programs() -> list[info.ProgramInfo]:
    """Every program the kernel holds, by id."""
    return _all(info.program_ids(), info.open_prog_by_id, info.prog_info)


def maps() -> list[info.MapInfo]:
    """Every map the kernel holds, by id."""
    return _all(info.map_ids(), info.open_map_by_id, info.map_info)


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="seconds")


def _prog_json(p: info.ProgramInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(p), "map_ids": list(p.map_ids), "loaded_at_iso": _when(p.loaded_at)}


def _map_json(m: info.MapInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(m), "flag_names": m.flag_names}


def _stats(p: info.ProgramInfo) -> str | None:
    if not p.run_cnt:
        return None  # stats off (BPF_ENABLE_STATS) or never run
    return f"{p.run_cnt:,} runs, {p.run_time_ns / p.run_cnt:,.0f} ns/run"


_PROG_COLUMNS = ["id", "type", "name", "tag", "loaded at", "uid", "xlated B", "jited B", "memlock B", "maps",
                 "run stats"]


def _prog_row(p: info.ProgramInfo) -> tuple[Any, ...]:
    return (p.id, p.type, p.name, p.tag, _when(p.loaded_at), p.uid, p.xlated_len, p.jited_len, p.memlock,
            list(p.map_ids), _stats(p))


@prog_app.command("list")
@guarded
def prog_list(as_json: bool = _JSON) -> None:
    """Every program loaded in the kernel."""
    found = programs()
    if as_json:
        print_json([_prog_json(p) for p in found])
    else:
        console().print(table(f"{len(found)} programs", _PROG_COLUMNS, map(_prog_row, found)))


@prog_app.command("show")
@guarded
def prog_show(prog_id: int = typer.Argument(..., metavar="ID", min=1), as_json: bool = _JSON) -> None:
    """One program by id."""
    p = _by_id(info.open_prog_by_id, info.prog_info, prog_id)
    if as_json:
        print_json(_prog_json(p))
        return
    rows = [(k, short(v, 100)) for k, v in _prog_json(p).items()]
    console().print(table(f"program {p.id} {p.name}", ["field", "value"], rows))


_MAP_COLUMNS = ["id", "type", "name", "key B", "value B", "max_entries", "flags", "memlock B", "btf id"]


def _map_row(m: info.MapInfo) -> tuple[Any, ...]:
    return (m.id, m.type, m.name, m.key_size, m.value_size, m.max_entries, m.flag_names, m.memlock,
            m.btf_id or None)


@map_app.command("list")
@guarded
def map_list(as_json: bool = _JSON) -> None:
    """Every map in the kernel."""
    found = maps()
    if as_json:
        print_json([_map_json(m) for m in found])
    else:
        console().print(table(f"{len(found)} maps", _MAP_COLUMNS, map(_map_row, found)))


@map_app.command("show")
@guarded
def map_show(map_id: int = typer.Argument(..., metavar="ID", min=1), as_json: bool = _JSON) -> None:
    """One map by id."""
    m = _by_id(info.open_map_by_id, info.map_info, map_id)
    if as_json:
        print_json(_map_json(m))
        return
    rows = [(k, short(v, 100)) for k, v in _map_json(m).items()]
    console().print(table(f"map {m.id} {m.name}", ["field", "value"], rows))


def map_entries(handle: pybpf.Map) -> tuple[str, np.ndarray | list[Any], np.ndarray | list[Any]]:
    """(method, keys, values) of every entry: one batch pass where the kernel batches this map."""
    lookup_batch = getattr(handle, "lookup_batch", None)
    if lookup_batch is not None:
        keys, values = lookup_batch()
        return ("batch" if getattr(handle, "batch_supported", True) else "per-key", keys, values)
    pairs = list(handle.items())  # a Map without batch support: iterate key by key
    return "per-key", [k for k, _ in pairs], [v for _, v in pairs]


@map_app.command("dump")
@guarded
def map_dump(map_id: int = typer.Argument(..., metavar="ID", min=1), as_json: bool = _JSON,
             limit: int = typer.Option(0, "--limit", min=0, help="show at most this many entries "
                                       "(0: all); JSON always has all")) -> None:
    """Every entry of a map, keys and values typed from the map's BTF."""
    with pybpf.Map.from_id(map_id) as handle:
        method, keys, values = map_entries(handle)
        doc: dict[str, Any] = {
            "id": map_id, "name": handle.name, "type": handle.type,
            "key_dtype": str(handle.key_dtype), "value_dtype": str(handle.value_dtype),
            "key_type": handle.key_type_name, "value_type": handle.value_type_name,
            "method": method, "count": len(keys),
            "entries": [{"key": jsonable(k), "value": jsonable(v)} for k, v in zip(keys, values)]}
    if as_json:
        print_json(doc)
        return
    shown = doc["entries"][:limit] if limit else doc["entries"]
    console().print(table(
        f"map {map_id} {doc['name']} ({doc['type']}): {doc['count']} entries",
        [f"key ({doc['key_type'] or doc['key_dtype']})", f"value ({doc['value_type'] or doc['value_dtype']})"],
        [(short(e["key"], 40), short(e["value"], 100)) for e in shown],
        caption=f"read with {'BPF_MAP_LOOKUP_BATCH' if method == 'batch' else 'one lookup per key'}"
                + (f"; {len(shown)} of {doc['count']} shown" if len(shown) < doc["count"] else "")))
