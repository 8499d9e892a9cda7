"""``pybpf deployment list|show|remove``: the deployments pinned on this machine's bpffs.

A deployment is a directory made by ``pybpf load OBJ --pin DIR`` (or
``Deployment.pin``, or ``pybpf agent``), found by its manifest. ``list`` finds
them on every bpffs mounted, ``show DIR`` decodes one with live entry and run
counts, ``remove DIR`` detaches it and unpins everything.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from pybpf.cli.render import console, guarded, print_json, table

__all__ = ["deployment_app"]

deployment_app = typer.Typer(help="Deployments pinned on bpffs: list, show, remove.", no_args_is_help=True,
                             add_completion=False)


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "-"


@deployment_app.command("list")
@guarded
def list_command(
    roots: list[Path] = typer.Argument(None, metavar="[ROOT...]", help="where to look (default: every bpffs mounted)"),
    as_json: bool = typer.Option(False, "--json", "-j", help="print JSON"),
) -> None:
    """Every deployment on the machine's bpffs, found by its manifest."""
    from pybpf.upgrade.deployments import find

    found = find([str(r) for r in roots] if roots else None)
    if as_json:
        print_json(found)
        return
    console().print(table("deployments", ["directory", "tool", "object", "version", "pinned", "hooks", "state"],
                          [(d["directory"], d.get("tool") or "-", d["object"] or "-", d["version"] or "-",
                            _when(d["pinned_at"]), ", ".join(d["hooks"]) or "-", d["state"]) for d in found]))


@deployment_app.command("show")
@guarded
def show_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="a deployment directory"),
    as_json: bool = typer.Option(False, "--json", "-j", help="print JSON"),
) -> None:
    """One deployment: its manifest decoded, maps with entries, programs with run counts (stats on)."""
    from pybpf.upgrade.deployments import show

    doc = show(str(directory))
    if as_json:
        print_json(doc)
        return
    out = console()
    out.print(f"{doc['directory']}: {doc['tool']} (object {doc['object']}, version {doc['version']}, pinned "
              f"{_when(doc['pinned_at'])}) {doc['state']}")
    out.print(table("maps", ["map", "type", "id", "max_entries", "entries"],
                    [(m["name"], m.get("type", "-"), m.get("id", "-"), m.get("max_entries", "-"),
                      m.get("entries", m.get("error", "-"))) for m in doc["maps"]]))
    out.print(table("programs", ["program", "type", "id", "run_cnt", "run_time_ns"],
                    [(p["name"], p.get("type", "-"), p.get("id", "-"),
                      f"{p['run_cnt']} (its dispatcher's)" if "counted_by" in p else p.get("run_cnt", "-"),
                      p.get("run_time_ns", "-")) for p in doc["programs"]]))
    out.print(table("attachments", ["program", "hook", "mode", "running program id"],
                    [(a["program"], a["hook"], a["mode"], a.get("program_id", a.get("error", "-")))
                     for a in doc["attachments"]]))


@deployment_app.command("remove")
@guarded
def remove_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="a deployment directory"),
    as_json: bool = typer.Option(False, "--json", "-j", help="print JSON"),
) -> None:
    """Detach a deployment, unpin its maps and programs, remove its directory."""
    from pybpf.upgrade.deployments import remove

    removed = remove(str(directory))
    if as_json:
        print_json({"directory": str(directory), "removed": removed})
        return
    console().print(f"removed {directory} ({len(removed)} pins; its hooks no longer run it)")
