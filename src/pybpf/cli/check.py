"""``pybpf check``: will objects load and attach on target kernels? Offline, as any user.

The typer command over :func:`pybpf.cli.precheck.run_check` (which :mod:`pybpf.cli.offline`
also calls, without typer, for a plain command line): attach targets, helpers,
map/program/attach types, kfuncs and CO-RE relocations, each read from the target's BTF.
Each target is a raw BTF, an ELF vmlinux, a kernel image (``btf extract``'s inputs) or a
BTFHub ``.btf.tar.xz``; ``--btf-dir`` takes every such file of a directory tree; ``--kernel``
adds the running kernel's ``/sys/kernel/btf``. Every target is parsed and validated once.
One object prints its findings per target; several print an objects x kernels matrix, then
what fails. Exit status 0 when no cell fails (``--strict``: and none is unknown), 1 otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pybpf.cli.precheck import NoTargets, run_check, targets_from
from pybpf.cli.render import guarded, usage_error

__all__ = ["check_command", "targets_from"]


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
    try:
        status = run_check(objects, btf, btf_dir, kernel=kernel, strict=strict, as_json=as_json, verbose=verbose)
    except NoTargets as e:
        usage_error(ctx, str(e))
    raise typer.Exit(status)
