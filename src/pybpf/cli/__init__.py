"""The ``pybpf`` command: inspect objects, dump BTF, load and run programs, list the kernel's.

A thin typer app over the public API (``pybpf``, ``pybpf.spec.elf``, ``pybpf.btf.types``,
``pybpf.kernel.info``, ``pybpf.cheader``): whatever a command shows, a program can
get from the library too. Each command lives in its own module; this one
only wires them together and holds the global ``--debug`` switch.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer.core


__all__ = ["COMMANDS", "SUMMARIES", "app", "load_command", "main"]

# Command name -> (module, attribute[, context settings attribute]): a typer app (a command
# group) or a command function.
# A command's module is imported only when that command runs (or help lists it), so a
# command pays only for what it needs: `pybpf inspect` never loads libbpf.
COMMANDS: dict[str, tuple[str, ...]] = {
    "inspect": ("pybpf.cli.inspect", "inspect_command"),
    "check": ("pybpf.cli.check", "check_command"),
    "load": ("pybpf.cli.run", "load_command"),
    "test-run": ("pybpf.cli.run", "test_run_command"),
    "demo": ("pybpf.cli.demo", "demo_command"),
    "build": ("pybpf.cli.build", "build_command"),
    "gen": ("pybpf.cli.gen", "gen_command"),
    "btf": ("pybpf.cli.btf", "btf_app"),
    "prog": ("pybpf.cli.kernel", "prog_app"),
    "map": ("pybpf.cli.kernel", "map_app"),
    "usdt": ("pybpf.cli.usdt", "usdt_app"),
    "tool": ("pybpf.cli.tool", "tool_command", "TOOL_CONTEXT"),
    "export": ("pybpf.cli.export", "export_command"),
    "bench": ("pybpf.cli.benchcmd", "bench_command"),
    "upgrade": ("pybpf.cli.upgrade", "upgrade_command"),
    "deployment": ("pybpf.cli.deployment", "deployment_app"),
    "agent": ("pybpf.cli.agent", "agent_command"),
    "features": ("pybpf.cli.features", "features_command"),
}


# What `pybpf --help` shows for each command, so that listing them imports none of them
# (tests/test_startup.py checks each is its command's own first help line: keep them in step).
SUMMARIES: dict[str, str] = {
    "inspect": "What a BPF object contains: programs, maps, globals, CO-RE relocations, BTF (no root needed).",
    "check": "Check that objects will load and attach on target kernels, from their BTF (no kernel, no root).",
    "load": "Load (and attach) a BPF object, then watch its maps and globals live (or stream a ring buffer).",
    "test-run": "Run one program with BPF_PROG_TEST_RUN and show its return value and output.",
    "demo": "Count every system call live with a bundled BPF program; the table reads it without syscalls.",
    "build": "Compile BPF C into a stripped CO-RE .bpf.o (clang -target bpf -mcpu=v3, pybpf's headers).",
    "gen": "Generate a typed module: dtypes, record classes, one attribute per map, global and program.",
    "btf": "BPF Type Format: dump the kernel's or an object's types.",
    "prog": "BPF programs loaded in the kernel.",
    "map": "BPF maps in the kernel.",
    "usdt": "USDT (SystemTap SDT) probes of binaries and processes.",
    "tool": "Run a tool shipped with pybpf (execsnoop, opensnoop, syscount, runqlat, tcpstates, ...).",
    "export": "Serve BPF map contents as Prometheus metrics on http://ADDR:PORT/metrics.",
    "upgrade": "Upgrade the version pinned in DIR to NEW; migrated counters are merged exactly.",
    "deployment": "Deployments pinned on bpffs: list, show, remove.",
    "agent": "Deploy several tools, serve all their metrics, upgrade a tool when its object file changes.",
    "features": "What pybpf runs on here: libbpf (version, optional APIs), kernel, capabilities, binding.",
    "bench": "Benchmark map access: syscall lookups vs batch lookups vs mmap views, Python next to C.",
}


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


def main() -> None:
    """Entry point of the ``pybpf`` console script."""
    import sys

    from pybpf.cli.argv import normalize_argv

    argv = normalize_argv(sys.argv[1:])
    if len(argv) >= 2 and argv[0] == "tool":
        # a tool's start-up: straight to its function when its command line is plain (toolrun.py)
        from pybpf.cli import toolrun

        if toolrun.run(argv[1], argv[2:]):
            return
    app(args=argv, prog_name="pybpf")
