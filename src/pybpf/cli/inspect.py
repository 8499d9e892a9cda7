"""``pybpf inspect``: what a ``.bpf.o`` (or a BTF blob) contains, without the kernel.

Pure parsing through :mod:`pybpf.spec.elf` and :mod:`pybpf.btf.types`: no bpf() syscall,
no root. :func:`describe` builds the JSON document (keys ``programs``,
``maps``, ``globals``, ``core_relocations``, ``btf``) and the tables are drawn
from that same document, so both always agree.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Group

from pybpf.btf.types import Btf
from pybpf.errors import BpfError, ObjectFormatError
from pybpf.spec.elf import MapSpec, ObjectSpec

from pybpf.cli.render import JSON_FLAG, console, guarded, json_wanted, plain, print_json, short, table, usage_error

__all__ = ["describe", "describe_btf", "inspect_command"]


def _type_name(btf: Btf | None, type_id: int) -> str | None:
    return btf.c_name(type_id) if btf is not None and type_id else None


def _map(spec: ObjectSpec, m: MapSpec) -> dict[str, Any]:
    return {
        "name": m.name,
        "type": m.type,
        "key_type": _type_name(spec.btf, m.key_type_id),
        "key_size": m.key_size,
        "value_type": _type_name(spec.btf, m.value_type_id),
        "value_size": m.value_size,
        "max_entries": m.max_entries,
        "flags": m.flag_names,
        "pinning": m.pinning,
        "inner": _map(spec, m.inner) if m.inner is not None else None,
        "internal": m.internal,
        "section": m.section,
    }


def _initial_value(btf: Btf | None, type_id: int, initial: bytes) -> Any:
    """The initial bytes decoded through the variable's BTF type, or None if they can't be."""
    if btf is None:
        return None
    try:
        dtype = btf.dtype(type_id)
        if dtype.itemsize != len(initial):
            return None
        array = np.frombuffer(initial, dtype=dtype.base if dtype.shape else dtype)
        return array.reshape(dtype.shape) if dtype.shape else array[0]
    except (BpfError, ValueError, TypeError):
        return None  # e.g. a type numpy can't express: the hex bytes still say it all


def describe_btf(btf: Btf | None) -> dict[str, Any]:
    """Type and kind counts of a BTF, for ``inspect``'s output."""
    kinds = btf.kind_counts() if btf is not None else {}
    return {"types": sum(kinds.values()), "kinds": kinds}


def describe(spec: ObjectSpec) -> dict[str, Any]:
    """The JSON document of ``pybpf inspect --json``."""
    btf = spec.btf
    return {
        "file": spec.path,
        "name": spec.name,
        "license": spec.license,
        "programs": [{
            "name": p.name,
            "section": p.section,
            "type": p.prog_type,
            "expected_attach_type": p.expected_attach_type,
            "attach_target": p.attach_target,
            "insns": p.insn_count,
            "license": p.license,
            "sleepable": p.sleepable,
        } for p in spec.programs],
        "maps": [_map(spec, m) for m in spec.maps],
        "globals": [{
            "section": g.section,
            "name": g.name,
            "type": g.type_name,
            "offset": g.offset,
            "size": g.size,
            "linkage": g.linkage,
            "initial": g.initial.hex(),
            "value": _initial_value(btf, g.type_id, g.initial),
        } for g in spec.globals],
        "core_relocations": [{
            "program": r.program,
            "section": r.section,
            "insn": r.insn_index,
            "kind": r.kind,
            "type": _type_name(btf, r.type_id),
            "access": r.access,
            "path": r.path,
        } for r in spec.core_relocations],
        "struct_ops": [{
            "name": o.name,
            "ops_type": o.ops_type,
            "section": o.section,
            "link": o.link,
            "size": o.size,
            "programs": o.programs,
            "data": o.data,
        } for o in spec.struct_ops],
        "btf": describe_btf(btf),
    }


def _kinds_table(title: str, btf: dict[str, Any]) -> Any:
    rows = sorted(btf["kinds"].items(), key=lambda kv: -kv[1])
    return table(title, ["kind", "count"], rows, caption=f"{btf['types']} types")


def _render(doc: dict[str, Any]) -> Group:
    progs = table("programs", ["name", "section", "type", "attach type", "target", "insns", "license"],
                  [(p["name"], p["section"], p["type"] or "unknown to libbpf", p["expected_attach_type"],
                    p["attach_target"], p["insns"], p["license"]) for p in doc["programs"]])
    maps = table("maps", ["name", "type", "key", "value", "max_entries", "flags", "pinning", "inner"],
                 [(m["name"], m["type"], f"{m['key_type'] or '?'} ({m['key_size']} B)",
                   f"{m['value_type'] or '?'} ({m['value_size']} B)", m["max_entries"], m["flags"],
                   m["pinning"], m["inner"]["type"] if m["inner"] else None) for m in doc["maps"]])
    globs = table("globals", ["section", "name", "type", "offset", "size", "initial value"],
                  [(g["section"], g["name"], g["type"], g["offset"], g["size"],
                    short(g["value"]) if g["value"] is not None
                    else "(__kconfig: set by libbpf at load)" if g["section"] == ".kconfig" else "0x" + g["initial"])
                   for g in doc["globals"]])
    relos = table("CO-RE relocations", ["program", "insn", "kind", "access path", "raw"],
                  [(r["program"], r["insn"], r["kind"], r["path"], r["access"])
                   for r in doc["core_relocations"]])
    parts: list[Any] = [f"[bold]{plain(doc['file'] or doc['name'])}[/]  license: {plain(doc['license'] or '-')}",
                        progs, maps, globs, relos]
    if doc["struct_ops"]:  # one row per member the object sets
        parts.insert(3, table("struct_ops maps", ["name", "ops type", "section", "member", "set to"],
                              [(o["name"], o["ops_type"], o["section"], member, value)
                               for o in doc["struct_ops"]
                               for member, value in [*((k, f"program {v}") for k, v in o["programs"].items()),
                                                     *((k, short(v)) for k, v in o["data"].items())]]))
    parts.append(_kinds_table("BTF", doc["btf"]) if doc["btf"]["types"] else "BTF: none")
    return Group(*parts)


@guarded
def inspect_command(
    ctx: typer.Context,
    obj: Optional[Path] = typer.Argument(None, help="a BPF object (.bpf.o)", show_default=False),
    btf: Optional[Path] = typer.Option(None, "--btf", help="summarise a BTF blob instead, "
                                       "e.g. /sys/kernel/btf/vmlinux"),
    as_json: bool = JSON_FLAG(help="print JSON (keys: programs, maps, struct_ops, globals, "
                                 "core_relocations, btf)"),
) -> None:
    """What a BPF object contains: programs, maps, globals, CO-RE relocations, BTF (no root needed)."""
    as_json = json_wanted(as_json)
    if (obj is None) == (btf is None):
        usage_error(ctx, "give either an object file or --btf FILE (not both)")
    if btf is not None:
        start = time.perf_counter()
        parsed = Btf.from_file(btf)
        summary = describe_btf(parsed)
        seconds = time.perf_counter() - start
        if as_json:
            print_json({"file": str(btf), "btf": summary, "seconds": round(seconds, 4)})
        else:
            console().print(_kinds_table(f"{btf}: BTF", summary))
            console().print(f"parsed {summary['types']} types in {seconds:.3f} s")
        return
    assert obj is not None
    spec = ObjectSpec.from_file(obj)
    if spec.btf is None:  # pybpf is CO-RE only: without BTF there is nothing typed to show
        raise ObjectFormatError(f"{obj}: no .BTF section: not a CO-RE BPF object (compile with clang -g)",
                                path=str(obj))
    doc = describe(spec)
    if as_json:
        print_json(doc)
    else:
        console().print(_render(doc))
