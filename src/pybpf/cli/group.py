"""The ``pybpf`` typer app: the command group, its lazy commands and the global options.

Everything a command line needs that the direct paths (:mod:`pybpf.cli.toolrun`,
:mod:`pybpf.cli.kernelview`) do not answer: help, every other command, and every error
typer reports. Commands are listed in :data:`pybpf.cli.COMMANDS` and imported when they run.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer.core

from pybpf.cli import COMMANDS, SUMMARIES

__all__ = ["app", "load_command"]


def load_command(cmd_name: str) -> Any:
    """Import command ``cmd_name``'s module and build its click command."""
    from pybpf.cli.render import guarded  # rich and the error plumbing: once a command runs

    module_name, attr, *context_attr = COMMANDS[cmd_name]
    module = importlib.import_module(module_name)
    target: Any = getattr(module, attr)
    if isinstance(target, typer.Typer):
        command: Any = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        context = getattr(module, context_attr[0]) if context_attr else None
        single.command(cmd_name, context_settings=context)(target if context is None else guarded(target))
        command = typer.main.get_command(single)
    command.name = cmd_name
    return command


class _LazyGroup(typer.core.TyperGroup):
    """A command group that imports a command's module on first use."""

    _listing = False

    # (typer may bundle its own click: the context and commands are typed loosely here)
    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        known = super().get_command(ctx, cmd_name)
        if known is not None or cmd_name not in COMMANDS:
            return known
        if self._listing and cmd_name in SUMMARIES:  # `pybpf --help`: the summary, no import
            return typer.core.TyperCommand(cmd_name, help=SUMMARIES[cmd_name])
        command = load_command(cmd_name)
        self.add_command(command, cmd_name)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="pybpf",
    cls=_LazyGroup,
    help="CO-RE eBPF from Python: inspect, load, run and watch BPF objects.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks only with --debug, and then plain
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _global_options(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error"),
    as_json: bool = typer.Option(False, "--json", "-j", help="JSON output for every command (as bpftool -j)"),
    version: bool = typer.Option(False, "--version", "-V",
                                 help="pybpf, libbpf, kernel and Python versions; the compiled extension in use"),
) -> None:
    from pybpf.cli.render import set_debug, set_json

    set_debug(debug)
    set_json(as_json)
    if version:
        from pybpf.cli.features import version_info, version_text
        from pybpf.cli.render import print_json

        if as_json:
            print_json(version_info())
        else:
            print(version_text())
        raise typer.Exit()
    if ctx.invoked_subcommand is None:  # options alone (`pybpf --debug`): the help, as with no argument
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


