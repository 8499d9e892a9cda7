"""``pybpf gen OBJ -o MODULE.py``: write a typed Python module for a BPF object (a skeleton).

The generator is :func:`pybpf.spec.codegen.generate` (pure: no kernel needed); this
command only writes its output, atomically, and says what it wrote.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import typer

from pybpf.cli.render import guarded
from pybpf.spec.codegen import generate

__all__ = ["gen_command"]


@guarded
def gen_command(
    obj: Path = typer.Argument(..., help="the .bpf.o to generate a module for"),
    output: Path | None = typer.Option(None, "-o", "--output", help="the module to write (default: stdout)"),
    by_path: bool = typer.Option(False, "--path", help="refer to the object by its absolute path instead of "
                                 "embedding its bytes"),
    class_name: str | None = typer.Option(None, "--class", help="name of the object's class "
                                             "(default: the object name in CamelCase)"),
) -> None:
    """Generate a typed module: dtypes, record classes, one attribute per map, global and program."""
    source = generate(obj, embed=not by_path, class_name=class_name)
    if output is None:
        sys.stdout.write(source)
        return
    directory = output.parent if str(output.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
    typer.echo(f"wrote {output} ({len(source.encode())} bytes)", err=True)
