"""``pybpf usdt list``: the USDT probes of a binary, or of every file a process maps.

Pure: the notes are read with pyelftools (:mod:`pybpf.spec.usdt`), so it needs no
kernel and no privileges beyond reading the files (and ``/proc/PID/maps``).
"""

from __future__ import annotations

import typer

from pybpf.cli.render import console, guarded, print_json, table, usage_error
from pybpf.spec.usdt import UsdtProbe, process_probes, read_probes

__all__ = ["list_command", "usdt_app"]

usdt_app = typer.Typer(help="USDT (SystemTap SDT) probes of binaries and processes.",
                       no_args_is_help=True)


def _args_text(probe: UsdtProbe) -> str:
    return ", ".join(f"{arg.c_type} {arg.spec.rpartition('@')[2]}" for arg in probe.args) or "-"


@usdt_app.command("list")
@guarded
def list_command(
    ctx: typer.Context,
    binary: str | None = typer.Argument(None, help="an ELF file (executable or shared library)"),
    pid: int | None = typer.Option(None, "--pid", help="every file this process maps"),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """List USDT probes: provider, name, address, semaphore and decoded argument specs."""
    if (binary is None) == (pid is None):
        usage_error(ctx, "give either a BINARY or --pid PID")
    probes = read_probes(binary) if binary is not None else process_probes(pid)  # type: ignore[arg-type]
    if as_json:
        print_json({"binary": binary, "pid": pid, "probes": [p.to_dict() for p in probes]})
        return
    source = binary if binary is not None else f"process {pid}"
    rows = [(p.path, p.provider, p.name, hex(p.address), hex(p.semaphore) if p.semaphore else None,
             _args_text(p)) for p in probes]
    console().print(table(f"{len(probes)} USDT probes in {source}",
                          ["file", "provider", "name", "address", "semaphore", "arguments"], rows))
