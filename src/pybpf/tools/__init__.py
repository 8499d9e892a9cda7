"""Tools that ship with pybpf, each a typer app: ``pybpf tool NAME ARGS...``.

One module per tool, ``pybpf/tools/NAME.py``, defining ``app`` (a ``typer.Typer``, or a
:class:`pybpf.tools._options.ToolApp` that declares one without importing typer);
its BPF C is ``bpf_src/NAME.bpf.c`` (bundled as ``pybpf.bundled(NAME)``) and its
exporter config, if any, ``pybpf/tools/configs/NAME.toml``. Tools are found by
scanning this package (``pkgutil``), so adding a module is all it takes; modules
whose name starts with ``_`` are helpers, not tools.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pybpf.tools._options import ToolApp

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["config_path", "config_names", "load_tool", "tool_function", "tool_names", "tool_summary"]

_CONFIGS = os.path.join(os.path.dirname(__file__), "configs")  # pathlib only when a config is asked for


def tool_names() -> list[str]:
    """Names of the shipped tools (modules of this package not starting with ``_``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and not m.ispkg)


def _app(name: str) -> Any:
    if name.startswith("_") or name not in tool_names():
        raise LookupError(f"no pybpf tool {name!r}; tools: {', '.join(tool_names())}")
    module = importlib.import_module(f"{__name__}.{name}")
    app = getattr(module, "app", None)
    if app is None:
        raise LookupError(f"pybpf.tools.{name} defines no typer app `app`")
    return app


def load_tool(name: str) -> Any:
    """The typer app of tool ``name``; ``LookupError`` naming the tools there are if none."""
    app = _app(name)
    return app.typer() if isinstance(app, ToolApp) else app


def tool_function(name: str) -> Callable[..., Any] | None:
    """The function of tool ``name`` when the tool is that one command (its parameters declared
    with :func:`~pybpf.tools._options.Option` or typer's), else None; no typer is imported for
    a tool declared without it. ``LookupError`` as :func:`load_tool`."""
    app = _app(name)
    if isinstance(app, ToolApp):
        return app.callback
    if len(app.registered_commands) != 1 or app.registered_groups or app.registered_callback is not None:
        return None
    return app.registered_commands[0].callback  # type: ignore[no-any-return]


def tool_summary(name: str) -> str:
    """The first line of a tool module's docstring (without importing BPF machinery twice)."""
    module = importlib.import_module(f"{__name__}.{name}")
    return (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""


def config_names() -> list[str]:
    """Tools that ship an exporter config (``pybpf export NAME`` finds it)."""
    from pathlib import Path

    return sorted(p.stem for p in Path(_CONFIGS).glob("*.toml"))


def config_path(name: str) -> Path:
    """Path of the exporter config shipped for tool ``name``."""
    from pathlib import Path

    path = Path(_CONFIGS) / f"{name}.toml"
    if not path.exists():
        raise FileNotFoundError(f"no exporter config shipped for {name!r}; shipped: {', '.join(config_names())}")
    return path
