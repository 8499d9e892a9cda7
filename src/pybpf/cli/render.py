"""Output and error plumbing shared by every ``pybpf`` command.

Commands print either rich tables (for people) or JSON (for scripts) through
the helpers here, and run inside :func:`guarded`, which turns the errors a
user can cause (bad files, bad ids, verifier rejections, missing privileges)
into a one-line ``error: ...`` on stderr and a non-zero exit. ``--debug``
(or ``PYBPF_DEBUG=1``) lets the exception through with its traceback.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from pybpf.cli.argv import normalize_argv  # re-exported; the entry point imports pybpf.cli.argv itself
from pybpf.cli.jsonout import jsonable, print_json, short  # re-exported: JSON needs neither typer nor rich
from pybpf.errors import BpfError
from pybpf.text import visible

__all__ = ["EXIT_ERROR", "EXIT_BUG", "JSON_FLAG", "console", "err_console", "fail", "guarded", "json_wanted",
           "jsonable", "normalize_argv", "plain", "print_json", "set_debug", "set_json", "short", "table", "usage_error"]

EXIT_ERROR = 1     # the user's input or the system refused: the message says why
EXIT_BUG = 70      # EX_SOFTWARE: an exception pybpf did not expect (a bug)

_debug = os.environ.get("PYBPF_DEBUG") == "1"

# What a user can cause; anything else escaping a command is a pybpf bug.
USER_ERRORS: tuple[type[BaseException], ...] = (BpfError, OSError, KeyError, ValueError, TypeError,
                                                OverflowError)

F = TypeVar("F", bound=Callable[..., Any])

# typer bundles its own click in newer versions: take click's classes from typer itself.
_USAGE_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__
                                         if c.__name__ == "ClickException")


def set_debug(enabled: bool) -> None:
    """Show full tracebacks of errors (``--debug``)."""
    global _debug
    _debug = enabled or os.environ.get("PYBPF_DEBUG") == "1"


# ---- --json / -j -----------------------------------------------------------------------

_json = False  # the global `pybpf -j ...` / `pybpf --json ...`


def set_json(enabled: bool) -> None:
    """Set by the global ``pybpf -j``/``--json``: every command prints JSON."""
    global _json
    _json = enabled


def json_wanted(flag: bool) -> bool:
    """A command's own ``--json``/``-j``, or the global one given before the command."""
    return flag or _json


def JSON_FLAG(help: str = "print JSON") -> Any:  # noqa: N802 - used like a constant in signatures
    """The ``--json``/``-j`` flag of a command (a plain flag, as in bpftool)."""
    return typer.Option(False, "--json", "-j", help=help)


def _plain_flags() -> None:
    """Help shows a flag as ``--json``, not ``--json <bool>`` (typer labels every option with its type)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - another typer layout: its own display stays
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_pybpf_plain_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> Any:
        if getattr(self, "is_flag", False) and getattr(self, "metavar", None) is None:
            return None
        return original(self, ctx)

    display_type_rich._pybpf_plain_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_plain_flags()


def debug_enabled() -> bool:
    return _debug


def _width() -> int | None:
    # Piped output (CI logs, CliRunner) would otherwise be cut at 80 columns.
    if sys.stdout.isatty():
        return None
    try:
        return max(int(os.environ.get("COLUMNS", "")), 40)
    except ValueError:
        return 140


def console() -> Console:
    """A console on the current stdout (created per use: tests swap stdout)."""
    return Console(width=_width(), highlight=False)


def err_console() -> Console:
    """The console for errors (stderr)."""
    return Console(stderr=True, width=_width(), highlight=False)


def message_of(exc: BaseException) -> str:
    """One line saying what went wrong, naming the file where there is one."""
    if isinstance(exc, BpfError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    elif isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def usage_error(ctx: typer.Context, message: str) -> NoReturn:
    """Wrong usage: prints the usage line and exits 2, like any other usage error."""
    raise _USAGE_ERROR(message, ctx=ctx)  # type: ignore[call-arg]


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``message`` as the one-line error and exit with ``code``."""
    err_console().print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True)
    raise typer.Exit(code)


def ctrl_c_stops() -> None:
    """Make SIGINT raise KeyboardInterrupt whatever was inherited, as the C tools set their handler:
    a job started in the background of a script inherits SIGINT ignored, and Python keeps it so."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def guarded(fn: F) -> F:
    """Run a command, reporting user errors in one line (or in full under --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, _CLICK_EXCEPTION):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except USER_ERRORS as exc:
            if _debug:
                raise
            fail(plain(message_of(exc)) + "  [dim](--debug shows the traceback)[/]")
        except Exception as exc:  # noqa: BLE001 - the last line of defence: say it is ours
            if _debug:
                raise
            fail(f"internal error in pybpf ({type(exc).__name__}: {plain(message_of(exc))}); "
                 f"rerun with --debug and report it", EXIT_BUG)

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def plain(text: str) -> str:
    """``text`` (names, paths, messages that may come from the kernel or an object) for rich
    markup: terminal controls shown as escapes (:func:`pybpf.text.visible`), ``[`` not markup."""
    return _escape(visible(text))


# ---- tables -------------------------------------------------------------------------

def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]],
          caption: str | None = None, min_width: int | None = None) -> Table:
    """A rich table with these columns and rows."""
    title, caption = (visible(t) if t is not None else None for t in (title, caption))
    out = Table(title=title, caption=caption, title_justify="left", caption_justify="left",
                min_width=min_width)
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*(_cell(v) for v in row))
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return plain(", ".join(str(v) for v in value)) or "-"
    return plain(str(value))
