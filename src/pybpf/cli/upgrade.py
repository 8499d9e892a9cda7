"""``pybpf upgrade DIR NEW.o``: replace the version pinned in DIR by a new object.

DIR was made by ``pybpf load OBJ --pin DIR`` (or ``Deployment.pin``). The new
object is loaded and verified while the old version keeps running; pinned maps
are reused (or migrated by BTF member name when their value struct changed),
every attachment is switched atomically, and DIR then describes the new
version. On any failure the old version keeps running, untouched.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

import pybpf
from pybpf.cli.render import EXIT_ERROR, console, err_console, guarded, print_json, table
from pybpf.errors import VerifierError

__all__ = ["upgrade_command"]


@guarded
def upgrade_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="a bpffs directory made by `load --pin`"),
    new_path: Path = typer.Argument(..., metavar="NEW", help="the new version (.bpf.o)"),
    no_migrate: bool = typer.Option(False, "--no-migrate",
                                    help="refuse to migrate maps whose layout changed (reuse only)"),
    as_json: bool = typer.Option(False, "--json", help="print what was done as JSON"),
) -> None:
    """Upgrade the version pinned in DIR to NEW without losing an event or a counter."""
    if not new_path.exists():
        raise FileNotFoundError(2, "no such BPF object", str(new_path))
    try:
        deployment = pybpf.upgrade(directory, new_path, migrate=not no_migrate)
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
    out.print(table(f"maps of {doc['object']}", ["map", "action", "why", "entries"],
                    [(m["name"], m["action"], m["why"] or "-", m["entries"]) for m in report.maps]))
    out.print(table("attachments switched", ["attachment"], [(s,) for s in report.switched]))
    out.print(f"loaded and verified in {report.load_s * 1e3:.1f} ms; verified -> switched in "
              f"{report.verified_to_switched_s * 1e6:.0f} µs (migration {report.migrate_s * 1e6:.0f} µs, "
              f"switch {report.switch_s * 1e6:.0f} µs)")
