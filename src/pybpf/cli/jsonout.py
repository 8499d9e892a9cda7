"""JSON output of every ``pybpf`` command, and the compact text of one value in a listing.

No typer, rich or numpy here: the commands answered without typer (``prog show``, ``map
list``, see :mod:`pybpf.cli.kernelview`) print through these too. numpy values are
converted when numpy is loaded at all (a value cannot be a numpy scalar otherwise), so
printing plain data never imports it.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["jsonable", "print_json", "short"]

_BUILTIN = frozenset({int, str, float, bool, type(None), dict, list, tuple, bytes})


def _as_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _numpy_jsonable(value: Any, np: Any) -> tuple[bool, Any]:
    """(True, plain value) for a numpy value, (False, None) for anything else."""
    if isinstance(value, np.ndarray):
        if value.dtype.names:
            return True, [jsonable(v) for v in value.reshape(-1)] if value.shape else jsonable(value[()])
        if value.dtype.kind == "S":  # char names[K][N]: each one a C string
            return True, [jsonable(v) for v in value] if value.shape else jsonable(value[()])
        if value.dtype.kind == "V":
            return True, [jsonable(v) for v in value.reshape(-1)] if value.shape else bytes(value.tobytes()).hex()
        return True, jsonable(value.tolist())
    if isinstance(value, np.void):
        if value.dtype.names:
            return True, {name: jsonable(value[name]) for name in value.dtype.names}
        return True, bytes(value.tobytes()).hex()
    if isinstance(value, np.bytes_):  # a C char array: text up to its first NUL, when it is text
        text = _as_text(bytes(value).split(b"\0", 1)[0])  # what follows the NUL is stale (older records)
        return True, text if text is not None else bytes(value).hex()
    if isinstance(value, np.generic):
        return True, jsonable(value.item())
    return False, None


def jsonable(value: Any) -> Any:
    """Plain JSON types for numpy scalars/records/arrays, bytes (as hex) and containers."""
    np = sys.modules.get("numpy")
    if np is not None and type(value) not in _BUILTIN:
        converted, plain = _numpy_jsonable(value, np)
        if converted:
            return plain
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)  # JSON has no NaN/inf
    return value


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout."""
    import json  # here: a text listing needs no JSON module

    sys.stdout.write(json.dumps(jsonable(data), indent=2) + "\n")
    sys.stdout.flush()


def short(value: Any, limit: int = 60) -> str:
    """A compact text form of a (JSON-able) value for a table cell."""
    import json

    text = json.dumps(jsonable(value)) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"
