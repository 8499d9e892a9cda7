"""``pybpf tool NAME ARGS...``: run one of the tools shipped in :mod:`pybpf.tools`.

Tools are discovered (``pybpf.tools.tool_names()``), not listed here: each is a
module with a typer app ``app``, which gets every argument after NAME.
"""

from __future__ import annotations

from typing import Optional

import typer

from pybpf.cli.render import fail

__all__ = ["tool_command"]


def tool_command(
    ctx: typer.Context,
    name: Optional[str] = typer.Argument(None, help="the tool (none: list them)"),
) -> None:
    """Run a tool shipped with pybpf (execsnoop, opensnoop, syscount, runqlat, tcpstates, ...)."""
    from pybpf import tools

    if name in (None, "-h", "--help", "--list"):
        typer.echo("usage: pybpf tool NAME [ARGS...]   (pybpf tool NAME --help for a tool's options)\n")
        for tool in tools.tool_names():
            typer.echo(f"  {tool:<12} {tools.tool_summary(tool)}")
        return
    try:
        app = tools.load_tool(name)
    except LookupError as exc:
        fail(str(exc), code=2)
    app(args=list(ctx.args), prog_name=f"pybpf tool {name}")


TOOL_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True,
                "allow_interspersed_args": False, "help_option_names": []}
