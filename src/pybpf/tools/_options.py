"""A tool's command line declared without importing typer; typer is built from it when wanted.

A tool module declares its function as it would for typer, with :func:`Option` and
:func:`Argument` (typer's own parameters, passed on unchanged) and ``@app.command()`` on
the :class:`ToolApp` that :func:`pybpf.tools._common.tool_app` returns. Importing the module
costs no typer (its import and the pydantic it brings are a large part of a tool's start):
``pybpf tool NAME`` reads plain command lines itself (:mod:`pybpf.cli.toolrun`), and
:meth:`ToolApp.typer` builds the real ``typer.Typer`` (same options, help, defaults and
errors) for ``--help``, anything unusual, and every other caller (:func:`pybpf.tools.load_tool`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Argument", "Option", "Param", "ToolApp"]

F = TypeVar("F", bound=Callable[..., Any])


class Param:
    """One declared parameter: what ``typer.Option``/``typer.Argument`` would be given.

    The attributes :mod:`pybpf.cli.toolrun` reads carry typer's names (``default``,
    ``param_decls``, ``min``, ``max``, ``callback``, ``is_eager``, ``count``, ``envvar``,
    ``prompt``), so both read alike."""

    def __init__(self, kind: str, default: Any, param_decls: tuple[str, ...], settings: dict[str, Any]) -> None:
        self.kind = kind                  # "option" or "argument"
        self.default = default
        self.param_decls = param_decls
        self.settings = settings

    def setting(self, name: str) -> Any:
        """A keyword the declaration gave (None if it gave none)."""
        return self.settings.get(name)

    @property
    def min(self) -> Any:
        return self.settings.get("min")

    @property
    def max(self) -> Any:
        return self.settings.get("max")

    @property
    def callback(self) -> Any:
        return self.settings.get("callback")

    @property
    def is_eager(self) -> bool:
        return bool(self.settings.get("is_eager"))

    @property
    def count(self) -> bool:
        return bool(self.settings.get("count"))

    @property
    def envvar(self) -> Any:
        return self.settings.get("envvar")

    @property
    def prompt(self) -> Any:
        return self.settings.get("prompt")

    def to_typer(self) -> Any:
        """The ``typer.Option``/``typer.Argument`` this declares."""
        import typer

        make = typer.Option if self.kind == "option" else typer.Argument
        return make(self.default, *self.param_decls, **self.settings)

    def __repr__(self) -> str:
        return f"{self.kind.capitalize()}({self.default!r}, {', '.join(self.param_decls)})"


def Option(default: Any = ..., *param_decls: str, **settings: Any) -> Any:  # noqa: N802 - typer's name
    """Declare an option as ``typer.Option(default, *param_decls, **settings)`` would."""
    return Param("option", default, param_decls, settings)


def Argument(default: Any = ..., **settings: Any) -> Any:  # noqa: N802 - typer's name
    """Declare a positional argument as ``typer.Argument(default, **settings)`` would."""
    return Param("argument", default, (), settings)


class ToolApp:
    """A tool's commands as declared; :meth:`typer` makes the ``typer.Typer`` of them."""

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        self._commands: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self._typer: Any = None

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        """``@app.command()``, as on a ``typer.Typer``."""
        def register(function: F) -> F:
            self._commands.append((function, args, kwargs))
            self._typer = None
            return function
        return register

    @property
    def callback(self) -> Callable[..., Any] | None:
        """The function of a tool that has exactly one command (None otherwise)."""
        return self._commands[0][0] if len(self._commands) == 1 else None

    def typer(self) -> Any:
        """The ``typer.Typer`` of these commands (built once)."""
        if self._typer is None:
            import typer

            app = typer.Typer(**self._settings)
            for function, args, kwargs in self._commands:
                app.command(*args, **kwargs)(_for_typer(function))
            self._typer = app
        return self._typer


def _for_typer(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with a signature whose declared parameters are typer's own."""
    signature = inspect.signature(function)
    params = [p.replace(default=p.default.to_typer()) if isinstance(p.default, Param) else p
              for p in signature.parameters.values()]

    @functools.wraps(function)
    def command(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return command
