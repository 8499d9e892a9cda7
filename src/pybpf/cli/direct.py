"""What the commands answered without typer share (:mod:`pybpf.cli.toolrun`,
:mod:`pybpf.cli.kernelview`): reporting an error exactly as the ``pybpf`` command group would.

The direct paths import neither typer nor rich to start; an error is rare, so it pays for
them only then: it goes through :func:`pybpf.cli.render.guarded`, as inside the group.
"""

from __future__ import annotations

import sys
from typing import NoReturn

__all__ = ["report"]


def report(exc: BaseException) -> NoReturn:
    """Exit as the ``pybpf`` command group would after ``exc`` escaped a command."""
    import typer

    from pybpf.cli.render import _CLICK_EXCEPTION, guarded

    def again() -> None:
        raise exc

    try:
        guarded(again)()
    except typer.Exit as stop:
        sys.exit(stop.exit_code)
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except _CLICK_EXCEPTION as error:
        error.show()  # type: ignore[attr-defined]
        sys.exit(error.exit_code)  # type: ignore[attr-defined]
    raise exc  # guarded() lets it through (--debug, PYBPF_DEBUG=1): the traceback
