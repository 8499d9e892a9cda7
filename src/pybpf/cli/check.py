"""``pybpf check``: will objects load and attach on target kernels? Offline, as any user.

A thin renderer over :mod:`pybpf.spec.check`: attach targets, helpers, map/program/attach
types, kfuncs and CO-RE relocations, each read from the target's BTF. Each target is a raw
BTF, an ELF vmlinux, a kernel image (``btf extract``'s inputs) or a BTFHub ``.btf.tar.xz``;
``--btf-dir`` takes every such file of a directory tree; ``--kernel`` adds the running
kernel's ``/sys/kernel/btf``. Every target is parsed and validated once. One object prints
its findings per target; several print an objects x kernels matrix, then what fails.
Exit status 0 when no cell fails (``--strict``: and none is unknown), 1 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from pybpf.spec.check import matrix
from pybpf.spec.core import Target, load_target

from pybpf.cli.render import console, guarded, table, usage_error
from pybpf.text import visible

__all__ = ["check_command", "targets_from"]

_BTF_SUFFIXES = (".btf", ".btf.tar.xz", ".tar.xz")
_SHOWN = {"ok": "ok", "fails": "FAILS", "unknown": "unknown"}


def targets_from(files: list[Path], directory: Optional[Path]) -> list[Target]:
    """The target BTFs named by ``--btf`` files and the files under ``--btf-dir``."""
    out = [load_target(str(p)) for p in files]
    if directory is not None:
        if not directory.is_dir():
            raise FileNotFoundError(2, "no such directory", str(directory))
        for root, dirs, names in os.walk(directory):
            dirs.sort()
            for n in sorted(names):
                if n.endswith(_BTF_SUFFIXES):
                    out.append(load_target(os.path.join(root, n)))
    return out


def _value(r: dict[str, Any]) -> str:
    if r["fatal"]:
        return "FAILS"
    if r["poisoned"]:
        return "poisoned (dead code)" if r["dead_code"] else "poisoned"
    return str(r["value"])


def _cell(t: dict[str, Any]) -> str:
    bad = sum(p["verdict"] == t["verdict"] for p in t["programs"] if p["autoload"])
    shown = _SHOWN[t["verdict"]]
    return shown if t["verdict"] == "ok" or not bad else f"{shown} ({bad})"


def _details(out: Any, doc: dict[str, Any], verbose: bool, single: bool) -> None:
    """Per target: the verdict of each program, then what fails or is unknown (with --all,
    every finding and relocation). Several objects: only the cells that are not ok."""
    for t in doc["targets"]:
        if t["verdict"] == "ok" and not verbose and not single:
            continue
        verdicts = ", ".join(f"{p['name']}: {p['verdict']}" for p in t["programs"]) or "no programs"
        where = t["btf"] if single else f"{os.path.basename(doc['object'])} on {t['label']}"
        out.print(visible(f"{where}: {_SHOWN[t['verdict']]} ({verdicts})"), soft_wrap=True, markup=False)
        for f in t["findings"]:
            if f["verdict"] != "ok" or verbose:
                out.print(visible(f"  {f['verdict']}: {_message(f)}"), soft_wrap=True, markup=False)
        for p in t["programs"]:
            for f in p["findings"]:
                if f["verdict"] != "ok" or verbose or f["missing"]:
                    out.print(visible(f"  {p['name']}: {f['verdict']}: {_message(f)}"), soft_wrap=True,
                              markup=False)
        if verbose:
            rows = [(p["name"], r["insn"], r["kind"], r["path"], r["access"], _value(r), r["reason"] or "")
                    for p in t["programs"] for r in p["relocations"]]
            if rows:
                out.print(table(None, ["program", "insn", "kind", "access", "spec", "value", "why"], rows))


def _message(f: dict[str, Any]) -> str:
    where = ""
    if f["insn"] is not None:
        fn = f" of `{f['function']}`" if f["function"] and f["function"] != f["program"] else ""
        where = f" at instruction {f['insn']}{fn}" + (f" ({f['line']})" if f["line"] else "")
    text = f"{f['what']}{where}" + (f": {f['missing']}" if f["missing"] else "")
    return text + (f"; {f['fix']}" if f["fix"] else "")


@guarded
def check_command(
    ctx: typer.Context,
    objects: List[Path] = typer.Argument(..., help="one or more .bpf.o", exists=False, show_default=False),
    btf: List[Path] = typer.Option([], "--btf", help="a target BTF / vmlinux / kernel image (repeatable)"),
    btf_dir: Optional[Path] = typer.Option(None, "--btf-dir", help="every *.btf[.tar.xz] under DIR"),
    kernel: bool = typer.Option(False, "--kernel", help="the running kernel (/sys/kernel/btf)"),
    strict: bool = typer.Option(False, "--strict", help="count what BTF cannot tell (unknown) as failing"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    verbose: bool = typer.Option(False, "--all", "-a", help="every finding and relocation, not only failing ones"),
) -> None:
    """Check that objects will load and attach on target kernels, from their BTF (no kernel, no root)."""
    targets = targets_from(btf, btf_dir)
    if not targets and not kernel:
        usage_error(ctx, "give at least one --btf FILE, --btf-dir DIR or --kernel")
    doc = matrix([str(o) for o in objects], targets, kernel=kernel, strict=strict)
    if as_json:  # plain data already: compact, like bpftool -j (a fleet's document is large)
        sys.stdout.write(json.dumps(doc["objects"][0] if len(objects) == 1 else doc) + "\n")
    else:
        out = console()
        if len(objects) > 1:
            labels = [t["label"] for t in doc["targets"]]
            rows = [[os.path.basename(d["object"])] + [_cell(t) for t in d["targets"]] for d in doc["objects"]]
            out.print(table(None, ["object"] + labels, rows))
        for d in doc["objects"]:
            _details(out, d, verbose, len(objects) == 1)
    raise typer.Exit(0 if doc["ok"] else 1)
