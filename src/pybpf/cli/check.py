"""``pybpf check``: an object's CO-RE relocations against target kernels, offline.

A thin renderer over :func:`pybpf.check` (:mod:`pybpf.spec.core`): no kernel, no root.
Each target is a raw BTF, an ELF vmlinux, a kernel image (``btf extract``'s inputs)
or a BTFHub ``.btf.tar.xz``; ``--btf-dir`` takes every such file of a directory
tree; ``--kernel`` adds the running kernel's ``/sys/kernel/btf``. Exit status 0
when every program is fine on every target, 1 otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from pybpf.btf.extract import extract_btf
from pybpf.btf.types import Btf
from pybpf.errors import ObjectFormatError
from pybpf.spec.core import Target, check, load_target

from pybpf.cli.render import console, guarded, plain, print_json, table, usage_error
from pybpf.text import visible

__all__ = ["check_command", "targets_from"]

_BTF_SUFFIXES = (".btf", ".btf.tar.xz", ".tar.xz")


def _target(path: str) -> Target:
    """A target from any file ``btf extract`` reads, or a BTFHub tarball."""
    if path.endswith((".tar.xz", ".tar.gz", ".tar")):
        return load_target(path)
    try:
        return load_target(path)
    except ObjectFormatError:
        return Target(path, Btf.from_bytes(extract_btf(path), name=path))


def targets_from(files: list[Path], directory: Optional[Path]) -> list[Target]:
    """The target BTFs named by ``--btf`` files and the files under ``--btf-dir``."""
    out = [_target(str(p)) for p in files]
    if directory is not None:
        if not directory.is_dir():
            raise FileNotFoundError(2, "no such directory", str(directory))
        for root, _dirs, names in sorted(os.walk(directory)):
            for n in sorted(names):
                if n.endswith(_BTF_SUFFIXES):
                    out.append(_target(os.path.join(root, n)))
    return out


def _value(r: dict[str, Any]) -> str:
    if r["fatal"]:
        return "FAILS"
    if r["poisoned"]:
        return "poisoned (dead code)" if r["dead_code"] else "poisoned"
    return str(r["value"])


@guarded
def check_command(
    ctx: typer.Context,
    obj: Path = typer.Argument(..., help="a .bpf.o", exists=False, show_default=False),
    btf: List[Path] = typer.Option([], "--btf", help="a target BTF / vmlinux / kernel image (repeatable)"),
    btf_dir: Optional[Path] = typer.Option(None, "--btf-dir", help="every *.btf[.tar.xz] under DIR"),
    kernel: bool = typer.Option(False, "--kernel", help="the running kernel (/sys/kernel/btf)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    verbose: bool = typer.Option(False, "--all", "-a", help="list every relocation, not only failing ones"),
) -> None:
    """Check that an object's CO-RE relocations resolve on target kernels (no kernel, no root)."""
    targets = targets_from(btf, btf_dir)
    if not targets and not kernel:
        usage_error(ctx, "give at least one --btf FILE, --btf-dir DIR or --kernel")
    report = check(str(obj), targets, kernel=kernel)
    if as_json:
        print_json(report)
    else:
        out = console()
        for t in report["targets"]:
            rows = []
            for p in t["programs"]:
                for r in p["relocations"]:
                    if verbose or (not r["ok"] and not r["dead_code"]):
                        rows.append((p["name"], r["insn"], r["kind"], r["path"], r["access"], _value(r),
                                     r["reason"] or ""))
            verdicts = ", ".join(f"{p['name']}: {p['verdict']}" for p in t["programs"]) or "no programs"
            out.print(f"[bold]{plain(t['btf'])}[/]: {'ok' if t['ok'] else 'NOT OK'} ({plain(verdicts)})")
            if rows:
                out.print(table(None, ["program", "insn", "kind", "access", "spec", "value", "why"], rows))
            for p in t["programs"]:
                if p["reason"]:
                    out.print(visible(f"  {p['name']}: {p['reason']}"), soft_wrap=True, markup=False)
    raise typer.Exit(0 if all(t["ok"] for t in report["targets"]) else 1)
