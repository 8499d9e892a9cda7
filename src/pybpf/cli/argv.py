"""The ``pybpf`` command line before any command sees it (no typer, no rich: the entry point uses it)."""

from __future__ import annotations

__all__ = ["normalize_argv"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def normalize_argv(argv: list[str]) -> list[str]:
    """Keep ``--json true``/``--json=false`` working now that ``--json`` is a plain flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            out.extend(argv[i:])
            break
        if word.startswith("--json="):
            value = word.split("=", 1)[1].lower()
            if value in _TRUE:
                out.append("--json")
            elif value not in _FALSE:
                out.append(word)  # let the parser refuse it
        elif word == "--json" and i + 1 < len(argv) and argv[i + 1].lower() in _TRUE | _FALSE:
            if argv[i + 1].lower() in _TRUE:
                out.append("--json")
            i += 1
        else:
            out.append(word)
        i += 1
    return out
