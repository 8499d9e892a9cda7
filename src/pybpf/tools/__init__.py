"""Tools that ship with pybpf, each a typer app: ``pybpf tool NAME ARGS...``.

One module per tool, ``pybpf/tools/NAME.py``, defining ``app`` (a ``typer.Typer``);
its BPF C is ``bpf_src/NAME.bpf.c`` (bundled as ``pybpf.bundled(NAME)``) and its
exporter config, if any, ``pybpf/tools/configs/NAME.toml``. Tools are found by
scanning this package (``pkgutil``), so adding a module is all it takes; modules
whose name starts with ``_`` are helpers, not tools.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

__all__ = ["config_path", "config_names", "load_tool", "tool_names", "tool_summary"]

_CONFIGS = Path(__file__).parent / "configs"


def tool_names() -> list[str]:
    """Names of the shipped tools (modules of this package not starting with ``_``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and not m.ispkg)


def load_tool(name: str) -> Any:
    """The typer app of tool ``name``; ``LookupError`` naming the tools there are if none."""
    if name.startswith("_") or name not in tool_names():
        raise LookupError(f"no pybpf tool {name!r}; tools: {', '.join(tool_names())}")
    module = importlib.import_module(f"{__name__}.{name}")
    app = getattr(module, "app", None)
    if app is None:
        raise LookupError(f"pybpf.tools.{name} defines no typer app `app`")
    return app


def tool_summary(name: str) -> str:
    """The first line of a tool module's docstring (without importing BPF machinery twice)."""
    module = importlib.import_module(f"{__name__}.{name}")
    return (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""


def config_names() -> list[str]:
    """Tools that ship an exporter config (``pybpf export NAME`` finds it)."""
    return sorted(p.stem for p in _CONFIGS.glob("*.toml"))


def config_path(name: str) -> Path:
    """Path of the exporter config shipped for tool ``name``."""
    path = _CONFIGS / f"{name}.toml"
    if not path.exists():
        raise FileNotFoundError(f"no exporter config shipped for {name!r}; shipped: {', '.join(config_names())}")
    return path
