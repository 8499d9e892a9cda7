"""What ``pybpf check`` and ``pybpf btf min`` do, without typer: both start here.

The typer commands (:mod:`pybpf.cli.check`, :mod:`pybpf.cli.btf`) and the direct path
(:mod:`pybpf.cli.offline`, which reads these plain command lines itself) call the same two
functions, so both print the same bytes and exit with the same status. Only a human table
loads rich (and the typer app's renderer); ``--json`` and ``btf min`` load neither.

``check``: attach targets, helpers, map/program/attach types, kfuncs/ksyms, struct_ops and
CO-RE relocations of each object on each target, from the target's BTF (a raw BTF, an ELF
vmlinux, a kernel image or a BTFHub ``.btf.tar.xz``; ``--btf-dir`` takes every such file of a
tree, ``--kernel`` the running kernel's ``/sys/kernel/btf``). Every target is parsed and
validated once. One object prints its findings per target; several print an objects x
kernels matrix, then what fails. ``btf min``: bpftool's ``gen min_core_btf``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from pybpf.spec.core import Target, load_target

__all__ = ["NoTargets", "minimal_btf", "run_check", "targets_from"]

_BTF_SUFFIXES = (".btf", ".btf.tar.xz", ".tar.xz")
_SHOWN = {"ok": "ok", "fails": "FAILS", "unknown": "unknown"}


class NoTargets(Exception):
    """``check`` was given no target (no --btf, an empty --btf-dir, no --kernel): a usage error."""


def targets_from(files: Sequence[str | os.PathLike[str]], directory: str | os.PathLike[str] | None) -> list[Target]:
    """The target BTFs named by ``--btf`` files and the files under ``--btf-dir``."""
    out = [load_target(os.fspath(p)) for p in files]
    if directory is not None:
        if not os.path.isdir(directory):
            raise FileNotFoundError(2, "no such directory", os.fspath(directory))
        for root, dirs, names in os.walk(directory):
            dirs.sort()
            for n in sorted(names):
                if n.endswith(_BTF_SUFFIXES):
                    out.append(load_target(os.path.join(root, n)))
    return out


def run_check(objects: Sequence[str | os.PathLike[str]], btf: Sequence[str | os.PathLike[str]],
              btf_dir: str | os.PathLike[str] | None, *, kernel: bool = False, strict: bool = False,
              as_json: bool = False, verbose: bool = False) -> int:
    """Check ``objects`` on the targets, print the result; the exit status (0: no cell fails)."""
    from pybpf.spec.check import matrix

    targets = targets_from(btf, btf_dir)
    if not targets and not kernel:
        raise NoTargets("give at least one --btf FILE, --btf-dir DIR or --kernel")
    doc = matrix([os.fspath(o) for o in objects], targets, kernel=kernel, strict=strict)
    if as_json:  # plain data already: compact, like bpftool -j (a fleet's document is large)
        import json

        sys.stdout.write(json.dumps(doc["objects"][0] if len(objects) == 1 else doc) + "\n")
        sys.stdout.flush()
    else:
        from pybpf.cli.render import console, table  # rich: only for people

        out = console()
        if len(objects) > 1:
            labels = [t["label"] for t in doc["targets"]]
            rows = [[os.path.basename(d["object"])] + [_cell(t) for t in d["targets"]] for d in doc["objects"]]
            out.print(table(None, ["object"] + labels, rows))
        for d in doc["objects"]:
            _details(out, d, verbose, len(objects) == 1)
    return 0 if doc["ok"] else 1


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
    from pybpf.cli.render import table
    from pybpf.text import visible

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


def minimal_btf(objects: Sequence[str | os.PathLike[str]], full: str | os.PathLike[str],
                output: str | os.PathLike[str], *, checks: bool = False) -> None:
    """``btf min``: write the minimal BTF of ``full`` for ``objects`` to ``output`` (through a
    temporary file renamed into place), validated, and say on stderr what it holds."""
    from pybpf.btf.types import Btf
    from pybpf.btf.validate import validate_btf
    from pybpf.spec.minimize import minimize, type_count

    out = os.fspath(output)
    src = Btf.from_file(os.fspath(full))
    result = minimize([os.fspath(o) for o in objects], src, checks=checks)
    # libbpf trusts the BTF it is given (btf_custom_path): what we write keeps the kernel's rules
    validate_btf(Btf.from_bytes(result.data, name=out), fast=False)  # small: per type, no numpy
    tmp = os.path.join(os.path.dirname(out), os.path.basename(out) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(result.data)
    os.replace(tmp, out)
    sys.stderr.write(f"{out}: {len(result.data)} bytes, {result.types} types for {result.relocations} "
                     f"relocations (full: {len(src._data)} bytes, {type_count(src)} types)\n")
