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
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import typer

import pybpf
from pybpf.kernel import info
from pybpf.errors import BpfError

from pybpf.cli.render import JSON_FLAG, console, guarded, json_wanted, jsonable, print_json, short, table, usage_error

if TYPE_CHECKING:  # numpy loads with `map dump`, not with `prog show`
    import numpy as np

__all__ = ["prog_app", "map_app", "programs", "maps", "map_entries"]

prog_app = typer.Typer(help="BPF programs loaded in the kernel.", no_args_is_help=True)
map_app = typer.Typer(help="BPF maps in the kernel.", no_args_is_help=True)

T = TypeVar("T")


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


# ---- selecting programs and maps the way bpftool does -------------------------------------

_PROG_REF = "[id ID | name NAME | tag TAG | pinned PATH]"
_MAP_REF = "[id ID | name NAME | pinned PATH]"


def _reference(ctx: typer.Context, words: list[str], kinds: tuple[str, ...], what: str) -> tuple[str, str] | None:
    """``[]`` (all), ``[ID]``, or ``[KIND, VALUE]`` as bpftool takes them (``id 5``, ``name hist``)."""
    if not words:
        return None
    if len(words) == 1 and words[0].isdigit():
        return "id", words[0]
    if len(words) == 2 and words[0] in kinds:
        kind, value = words
        if kind == "id" and not (value.isdigit() and int(value) > 0):
            usage_error(ctx, f"{what} id must be a positive number, got {value!r}")
        return kind, value
    usage_error(ctx, f"give a {what} as {' | '.join(f'{k} {k.upper()}' for k in kinds)}, or a bare id; "
                     f"got {' '.join(words)!r}")


def _name_matches(kernel_name: str, wanted: str) -> bool:
    # the kernel keeps 15 characters of a name (BPF_OBJ_NAME_LEN)
    return kernel_name == wanted or (len(kernel_name) == 15 and wanted.startswith(kernel_name))


def _select_programs(ref: tuple[str, str] | None) -> list[info.ProgramInfo]:
    if ref is None:
        return programs()
    kind, value = ref
    if kind == "id":
        return [_by_id(info.open_prog_by_id, info.prog_info, int(value))]
    if kind == "pinned":
        return [_by_id(lambda _p: info.open_pinned(value, "program"), info.prog_info, 0)]
    found = [p for p in programs() if (_name_matches(p.name, value) if kind == "name" else p.tag == value.lower())]
    if not found:
        raise KeyError(f"no program with {kind} {value!r} is loaded")
    return found


def _select_maps(ref: tuple[str, str] | None) -> list[info.MapInfo]:
    if ref is None:
        return maps()
    kind, value = ref
    if kind == "id":
        return [_by_id(info.open_map_by_id, info.map_info, int(value))]
    if kind == "pinned":
        return [_by_id(lambda _p: info.open_pinned(value, "map"), info.map_info, 0)]
    found = [m for m in maps() if _name_matches(m.name, value)]
    if not found:
        raise KeyError(f"no map named {value!r} in the kernel")
    return found


@prog_app.command("list")
@guarded
def prog_list(as_json: bool = JSON_FLAG()) -> None:
    """Every program loaded in the kernel."""
    found = programs()
    if json_wanted(as_json):
        print_json([_prog_json(p) for p in found])
    else:
        console().print(table(f"{len(found)} programs", _PROG_COLUMNS, map(_prog_row, found)))


@prog_app.command("show")
@guarded
def prog_show(ctx: typer.Context,
              ref: Optional[list[str]] = typer.Argument(None, metavar=_PROG_REF, show_default=False),
              as_json: bool = JSON_FLAG()) -> None:
    """Programs by id, name, tag or pin (as bpftool); with none, every program.

    JSON: one object for ``id``/``pinned``/a bare id, a list otherwise."""
    selected = _reference(ctx, ref or [], ("id", "name", "tag", "pinned"), "program")
    found = _select_programs(selected)
    single = selected is not None and selected[0] in ("id", "pinned")
    if json_wanted(as_json):
        print_json(_prog_json(found[0]) if single else [_prog_json(p) for p in found])
    elif single:
        p = found[0]
        rows = [(k, short(v, 100)) for k, v in _prog_json(p).items()]
        console().print(table(f"program {p.id} {p.name}", ["field", "value"], rows))
    else:
        console().print(table(f"{len(found)} programs", _PROG_COLUMNS, map(_prog_row, found)))


_MAP_COLUMNS = ["id", "type", "name", "key B", "value B", "max_entries", "flags", "memlock B", "btf id"]


def _map_row(m: info.MapInfo) -> tuple[Any, ...]:
    return (m.id, m.type, m.name, m.key_size, m.value_size, m.max_entries, m.flag_names, m.memlock,
            m.btf_id or None)


@map_app.command("list")
@guarded
def map_list(as_json: bool = JSON_FLAG()) -> None:
    """Every map in the kernel."""
    found = maps()
    if json_wanted(as_json):
        print_json([_map_json(m) for m in found])
    else:
        console().print(table(f"{len(found)} maps", _MAP_COLUMNS, map(_map_row, found)))


@map_app.command("show")
@guarded
def map_show(ctx: typer.Context,
             ref: Optional[list[str]] = typer.Argument(None, metavar=_MAP_REF, show_default=False),
             as_json: bool = JSON_FLAG()) -> None:
    """Maps by id, name or pin (as bpftool); with none, every map.

    JSON: one object for ``id``/``pinned``/a bare id, a list otherwise."""
    selected = _reference(ctx, ref or [], ("id", "name", "pinned"), "map")
    found = _select_maps(selected)
    single = selected is not None and selected[0] in ("id", "pinned")
    if json_wanted(as_json):
        print_json(_map_json(found[0]) if single else [_map_json(m) for m in found])
    elif single:
        m = found[0]
        rows = [(k, short(v, 100)) for k, v in _map_json(m).items()]
        console().print(table(f"map {m.id} {m.name}", ["field", "value"], rows))
    else:
        console().print(table(f"{len(found)} maps", _MAP_COLUMNS, map(_map_row, found)))


def map_entries(handle: pybpf.Map) -> tuple[str, np.ndarray | list[Any], np.ndarray | list[Any]]:
    """(method, keys, values) of every entry: one batch pass where the kernel batches this map."""
    lookup_batch = getattr(handle, "lookup_batch", None)
    if lookup_batch is not None:
        keys, values = lookup_batch()
        return ("batch" if getattr(handle, "batch_supported", True) else "per-key", keys, values)
    pairs = list(handle.items())  # a Map without batch support: iterate key by key
    return "per-key", [k for k, _ in pairs], [v for _, v in pairs]


def _dump(handle: pybpf.Map) -> dict[str, Any]:
    method, keys, values = map_entries(handle)
    return {
        "id": handle.id, "name": handle.name, "type": handle.type,
        "key_dtype": str(handle.key_dtype), "value_dtype": str(handle.value_dtype),
        "key_type": handle.key_type_name, "value_type": handle.value_type_name,
        "method": method, "count": len(keys),
        "entries": [{"key": jsonable(k), "value": jsonable(v)} for k, v in zip(keys, values)]}


@map_app.command("dump")
@guarded
def map_dump(ctx: typer.Context,
             ref: list[str] = typer.Argument(..., metavar=_MAP_REF.strip("[]"), show_default=False),
             as_json: bool = JSON_FLAG(),
             limit: int = typer.Option(0, "--limit", min=0, help="show at most this many entries "
                                       "(0: all); JSON always has all")) -> None:
    """Every entry of a map, keys and values typed from the map's BTF.

    ``name`` may match several maps: each is dumped (JSON: a list of dumps then, one dump otherwise)."""
    selected = _reference(ctx, ref, ("id", "name", "pinned"), "map")
    assert selected is not None
    kind, value = selected
    if kind == "id":
        opened = [pybpf.Map.from_id(int(value))]
    elif kind == "pinned":
        opened = [pybpf.Map.from_pin(value)]
    else:
        opened = [pybpf.Map.from_id(m.id) for m in _select_maps(selected)]
    docs = []
    for handle in opened:
        with handle:
            docs.append(_dump(handle))
    if json_wanted(as_json):
        print_json(docs[0] if len(docs) == 1 else docs)
        return
    for doc in docs:
        shown = doc["entries"][:limit] if limit else doc["entries"]
        console().print(table(
            f"map {doc['id']} {doc['name']} ({doc['type']}): {doc['count']} entries",
            [f"key ({doc['key_type'] or doc['key_dtype']})", f"value ({doc['value_type'] or doc['value_dtype']})"],
            [(short(e["key"], 40), short(e["value"], 100)) for e in shown],
            caption=f"read with {'BPF_MAP_LOOKUP_BATCH' if doc['method'] == 'batch' else 'one lookup per key'}"
                    + (f"; {len(shown)} of {doc['count']} shown" if len(shown) < doc["count"] else "")))
