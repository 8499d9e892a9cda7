"""``pybpf btf dump``: BTF as a C header (through libbpf's btf_dump) or as JSON.

C output is :func:`pybpf.cheader.dump_c`, byte for byte: ``pybpf btf dump
--kernel`` is the committed ``vmlinux/vmlinux.h`` when run on the kernel it
was generated from. JSON is encoded by :mod:`pybpf.btf.tojson` straight from
the raw type records (one line per type; :func:`type_json` is the same schema
as a dict, for one type). Every input but the kernel's is parsed purely first,
so a malformed file gets pybpf's one-line error before libbpf ever sees it.
"""

from __future__ import annotations

import dataclasses
import errno
import sys
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from pybpf.btf.tojson import write_json
from pybpf.btf.types import KERNEL_BTF_PATH as KERNEL_BTF
from pybpf.btf.types import Btf, BtfType
from pybpf.errors import BpfError, ObjectFormatError

from pybpf.cli.render import guarded, usage_error

__all__ = ["btf_app", "type_json", "closure"]

btf_app = typer.Typer(help="BPF Type Format: dump the kernel's or an object's types.",
                      no_args_is_help=True)


class Format(str, Enum):
    c = "c"
    json = "json"


# Attributes left at their defaults don't apply to a type's kind: JSON leaves them out.
_DEFAULTS = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
             for f in dataclasses.fields(BtfType)}


def type_json(t: BtfType) -> dict[str, Any]:
    """One type as JSON: ``id``, ``kind``, ``name`` and every attribute that applies to its kind."""
    out: dict[str, Any] = {"id": t.id, "kind": t.kind, "name": t.name}
    for f in dataclasses.fields(BtfType):
        value = getattr(t, f.name)
        if f.name in out or value == _DEFAULTS[f.name]:
            continue
        if f.name == "members":
            value = [{"name": n, "type": tid, "bit_offset": off, "bitfield_size": bf}
                     for n, tid, off, bf in value]
        elif f.name == "values":
            value = [{"name": n, "value": v} for n, v in value]
        elif f.name == "params":
            value = [{"name": n, "type": tid} for n, tid in value]
        elif f.name == "vars":
            value = [{"type": tid, "offset": off, "size": size} for tid, off, size in value]
        out[f.name] = value
    return out


def _refs(t: BtfType) -> list[int]:
    refs = [t.type or 0, t.index_type]
    refs += [tid for _n, tid, _o, _b in t.members]
    refs += [tid for _n, tid in t.params]
    refs += [tid for tid, _o, _s in t.vars]
    return [r for r in refs if r]


def closure(btf: Btf, root: int) -> list[int]:
    """``root`` and every type it refers to, transitively, in id order."""
    seen = {root}
    todo = [root]
    while todo:
        for ref in _refs(btf[todo.pop()]):
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return sorted(seen)


@btf_app.command("dump")
@guarded
def dump_command(
    ctx: typer.Context,
    file: Optional[Path] = typer.Argument(None, help="a raw BTF file or a .bpf.o", show_default=False),
    kernel: bool = typer.Option(False, "--kernel", help=f"the running kernel's BTF ({KERNEL_BTF})"),
    fmt: Format = typer.Option(Format.c, "--format", "-f", help="c (a header, via libbpf) or json"),
    type_name: Optional[str] = typer.Option(None, "--type", "-t",
                                            help="only this type and what it needs"),
) -> None:
    """Dump BTF as a C header or as JSON."""
    if kernel == (file is not None):
        usage_error(ctx, "give either a FILE or --kernel")
    path = KERNEL_BTF if kernel else str(file)
    if fmt is Format.c:
        from pybpf.cheader import dump_c  # libbpf: only for C output

        if not kernel:
            Btf.from_file(path)  # pure parse first: clean errors for malformed input
        try:
            text = dump_c(path, type_names=[type_name], guard=False) if type_name else dump_c(path)
        except BpfError as exc:
            if path in str(exc):
                raise
            why = " (a type cycle C cannot express)" if exc.errno == errno.ELOOP else ""
            raise ObjectFormatError(f"{path}: libbpf cannot write this BTF as C{why}: {exc}", exc.errno,
                                    path=path) from exc
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    btf = Btf.from_file(path)
    if type_name:
        try:
            ids: Any = closure(btf, btf.find(type_name))
        except KeyError:
            raise KeyError(f"no type named {type_name!r} in {path}") from None
    else:
        ids = range(1, len(btf))
    write_json(sys.stdout, btf, path, ids)  # encoded from the raw records, no dict per type
    sys.stdout.flush()


@btf_app.command("extract")
@guarded
def extract_command(
    image: Path = typer.Argument(..., help="a bzImage/vmlinuz, an ELF vmlinux, a .ko or raw BTF",
                                 show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the raw BTF"),
    base: Optional[Path] = typer.Option(None, "--base", help="the vmlinux BTF a module's split BTF builds on"),
) -> None:
    """Extract the BTF of a kernel image (gzip, xz, lzma, lz4, zstd, bzip2), vmlinux or module."""
    from pybpf.btf.extract import extract_btf
    raw = extract_btf(str(image), base=str(base) if base is not None else None)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(raw)
    tmp.replace(output)
    from pybpf.spec.minimize import type_count
    parsed = Btf.from_bytes(raw, base=Btf.from_bytes(extract_btf(str(base))) if base else None)
    sys.stderr.write(f"{output}: {len(raw)} bytes of BTF, {type_count(parsed)} types\n")


@btf_app.command("min")
@guarded
def min_command(
    objects: List[Path] = typer.Argument(..., help="the .bpf.o files whose relocations must resolve",
                                         show_default=False),
    full: Path = typer.Option(..., "--btf", help="the full target BTF (raw BTF or vmlinux)"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the minimal BTF"),
    checks: bool = typer.Option(False, "--checks", help="also keep what `pybpf check` reads (attach points, "
                                "helpers, map types, kfuncs), so it gives the same verdicts"),
) -> None:
    """A minimal BTF: only the types the objects' CO-RE relocations need (bpftool gen min_core_btf)."""
    from pybpf.cli.precheck import minimal_btf  # the same as `pybpf btf min` without typer (cli/offline.py)
    minimal_btf(objects, full, output, checks=checks)
