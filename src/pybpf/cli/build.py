"""``pybpf build``: compile a user's BPF C into a CO-RE object with pybpf's flags.

A thin layer over :func:`pybpf.toolchain.build` (``pybpf.build``): clang with
``-g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_<arch>`` against
``pybpf.include_dir()``, then ``llvm-strip -g``. clang's diagnostics go to
stderr as clang printed them; a missing clang is said plainly (exit 1).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from pybpf.errors import BuildError, CompilerNotFoundError
from pybpf.toolchain import build, cflags, find_clang

from pybpf.cli.render import console, fail, guarded

__all__ = ["build_command"]


@guarded
def build_command(
    source: Path = typer.Argument(..., help="BPF C source (X.bpf.c)", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="object to write (default: X.bpf.o)",
                                          show_default=False),
    include: list[Path] = typer.Option([], "--include", "-I",
                                       help="more include directories, searched before pybpf's"),
    define: list[str] = typer.Option([], "--define", "-D", help="NAME or NAME=VALUE"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="print the clang command"),
) -> None:
    """Compile BPF C into a stripped CO-RE .bpf.o (clang -target bpf -mcpu=v3, pybpf's headers)."""
    try:
        if verbose:
            console().print(" ".join([find_clang(), *cflags(include_dirs=include)]), soft_wrap=True,
                            markup=False, highlight=False)
        out = build(source, output, include_dirs=include, defines=define)
    except CompilerNotFoundError as exc:
        fail(str(exc))
    except BuildError as exc:
        if exc.stderr:
            sys.stderr.write(exc.stderr if exc.stderr.endswith("\n") else exc.stderr + "\n")
        fail(exc.message.splitlines()[0])
    console().print(str(out), markup=False, highlight=False)
