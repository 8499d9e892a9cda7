"""``pybpf upgrade DIR NEW.o``: replace the version pinned in DIR by a new object.

DIR was made by ``pybpf load OBJ --pin DIR`` (or ``Deployment.pin``). The new
object is loaded and verified while the old version keeps running; pinned maps
are reused, or migrated by BTF member name when their value struct changed
(what the old version counts until it stops is merged in exactly), every
attachment is switched atomically, and DIR then describes the new version. On
any failure before the switch the old version keeps running, untouched; an
upgrade killed after it is finished by the next one. ``--dry-run`` prints the
plan and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from rich.text import Text

import pybpf
from pybpf.cli.render import EXIT_ERROR, console, err_console, guarded, print_json, table
from pybpf.errors import VerifierError

__all__ = ["upgrade_command"]


def _last_values(specs: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, field = spec.rpartition(":")
        if not sep or not name or not field:
            raise typer.BadParameter(f"{spec!r}: expected MAP:FIELD (e.g. stats:last_seen, .bss:state)",
                                     param_hint="--last-value")
        out.setdefault(name, []).append(field)
    return out


@guarded
def upgrade_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="a bpffs directory made by `load --pin`"),
    new_path: Path = typer.Argument(..., metavar="NEW", help="the new version (.bpf.o)"),
    no_migrate: bool = typer.Option(False, "--no-migrate",
                                    help="refuse to migrate maps whose layout changed (reuse only)"),
    last_value: List[str] = typer.Option([], "--last-value", metavar="MAP:FIELD",
                                         help="a field holding a last value, not a count (repeatable; "
                                              ".bss:NAME for a global)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would be done, change nothing"),
    lock_timeout: float = typer.Option(30.0, "--lock-timeout", metavar="S",
                                       help="wait this long for another upgrade of DIR to finish"),
    as_json: bool = typer.Option(False, "--json", help="print what was done (or the plan) as JSON"),
) -> None:
    """Upgrade the version pinned in DIR to NEW; migrated counters are merged exactly."""
    if not new_path.exists():
        raise FileNotFoundError(2, "no such BPF object", str(new_path))
    lasts = _last_values(last_value)
    if dry_run:
        from pybpf.upgrade.core import plan

        doc = plan(str(directory), new_path, migrate=not no_migrate, last_value=lasts)
        _print_plan(doc, as_json)
        return
    try:
        deployment = pybpf.upgrade(directory, new_path, migrate=not no_migrate, last_value=lasts,
                                   lock_timeout=lock_timeout)
    except VerifierError as exc:
        from pybpf.cli.run import verifier_report  # the same report `pybpf load` prints
        err = err_console()
        err.print(verifier_report(exc))
        err.print(Text("error: ", style="bold red") + Text(
            f"{new_path}: the verifier rejected program {exc.program!r}; the running version is untouched"),
            soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    with deployment:
        report = deployment.report
        assert report is not None
        doc = {"directory": str(directory), "object": deployment.object.name if deployment.object else None,
               **report.as_dict()}
    if as_json:
        print_json(doc)
        return
    out = console()
    out.print(table(f"maps of {doc['object']}", ["map", "action", "why", "entries", "merged after the switch"],
                    [(m["name"], m["action"], m["why"] or "-", m["entries"], _merged(m)) for m in report.maps]))
    out.print(table("attachments switched", ["attachment"], [(s,) for s in report.switched]))
    out.print(f"loaded and verified in {report.load_s * 1e3:.1f} ms; copy -> switch {report.window_s * 1e3:.1f} ms "
              f"(migration {report.migrate_s * 1e3:.1f} ms, switch {report.switch_s * 1e6:.0f} µs); "
              f"wait for old runs {report.wait_s * 1e3:.1f} ms, merge {report.merge_s * 1e3:.1f} ms")
    _warn(report.warnings)


def _merged(m: dict) -> str:  # type: ignore[type-arg]
    merged = m.get("merged")
    if merged is None:
        return "-" if m["action"] != "migrate" else "NOT EXACT"
    done = f"{merged['entries']} entries, {merged['applied']} fields"
    return done if m.get("exact", True) else f"{done}; NOT EXACT (see the warnings)"


def _warn(warnings: list[str]) -> None:
    err = err_console()
    for w in warnings:
        err.print(Text("warning: ", style="bold yellow") + Text(w), soft_wrap=True)


def _print_plan(doc: dict, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        print_json(doc)
        return
    out = console()
    old = f"{doc['from']} version {doc['from_version']}" if doc.get("from_version") else doc["from"]
    old += f" ({doc['from_source']})" if doc.get("from_source") else ""
    new = doc["to"] + (f" ({doc['to_source']})" if doc.get("to_source") else "")
    out.print(Text(f"plan: {old} -> {new} in {doc['directory']} (nothing changed)"))
    out.print(table("maps", ["map", "action", "why", "exact"],
                    [(m["name"], m["action"], m["why"], "yes" if m.get("exact", True) else "NO")
                     for m in doc["maps"]]))
    out.print(table("attachments", ["program", "hook", "switch"],
                    [(a["program"], a["hook"], a["switch"]) for a in doc["attachments"]]))
    _warn(doc["warnings"])
