"""``pybpf prog list|show`` and ``pybpf map list|show|dump``: what the kernel holds now.

Like ``bpftool prog/map``, read through :mod:`pybpf.kernel.info` (ids and
``BPF_OBJ_GET_INFO_BY_FD``) and :class:`pybpf.Map` (``Map.from_id`` and
``lookup_batch``, typed from the map's BTF). Needs CAP_SYS_ADMIN. ``list`` and ``show``
are :mod:`pybpf.cli.kernelview`'s (which the entry point also runs without typer);
these are their typer commands, with help and usage errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import typer

import pybpf
from pybpf.cli import kernelview
from pybpf.cli.kernelview import maps, programs
from pybpf.cli.render import JSON_FLAG, console, guarded, json_wanted, jsonable, print_json, short, table, usage_error

if TYPE_CHECKING:  # numpy loads with `map dump`, not with `prog show`
    import numpy as np

__all__ = ["prog_app", "map_app", "programs", "maps", "map_entries"]

prog_app = typer.Typer(help="BPF programs loaded in the kernel.", no_args_is_help=True)
map_app = typer.Typer(help="BPF maps in the kernel.", no_args_is_help=True)

_PROG_REF = "[id ID | name NAME | tag TAG | pinned PATH]"
_MAP_REF = "[id ID | name NAME | pinned PATH]"


def _reference(ctx: typer.Context, words: list[str], kinds: tuple[str, ...], what: str) -> tuple[str, str] | None:
    try:
        return kernelview.reference(words, kinds, what)
    except kernelview.BadReference as exc:
        usage_error(ctx, str(exc))


def _show(ctx: typer.Context, noun: str, words: list[str] | None, as_json: bool) -> None:
    try:
        kernelview.show(noun, words, json_wanted(as_json))
    except kernelview.BadReference as exc:
        usage_error(ctx, str(exc))


@prog_app.command("list")
@guarded
def prog_list(ctx: typer.Context, as_json: bool = JSON_FLAG()) -> None:
    """Every program loaded in the kernel."""
    _show(ctx, "prog", None, as_json)


@prog_app.command("show")
@guarded
def prog_show(ctx: typer.Context,
              ref: Optional[list[str]] = typer.Argument(None, metavar=_PROG_REF, show_default=False),
              as_json: bool = JSON_FLAG()) -> None:
    """Programs by id, name, tag or pin (as bpftool); with none, every program.

    JSON: one object for ``id``/``pinned``/a bare id, a list otherwise."""
    _show(ctx, "prog", ref or [], as_json)


@map_app.command("list")
@guarded
def map_list(ctx: typer.Context, as_json: bool = JSON_FLAG()) -> None:
    """Every map in the kernel."""
    _show(ctx, "map", None, as_json)


@map_app.command("show")
@guarded
def map_show(ctx: typer.Context,
             ref: Optional[list[str]] = typer.Argument(None, metavar=_MAP_REF, show_default=False),
             as_json: bool = JSON_FLAG()) -> None:
    """Maps by id, name or pin (as bpftool); with none, every map.

    JSON: one object for ``id``/``pinned``/a bare id, a list otherwise."""
    _show(ctx, "map", ref or [], as_json)


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
        opened = [pybpf.Map.from_id(m.id) for m in kernelview.select_maps(selected)]
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
