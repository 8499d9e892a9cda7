"""Text from the kernel or from a traced program, made safe to print on a terminal.

This module owns :func:`visible`, the one function every printer of such text calls (tools'
rows, CLI tables, ``usdt list``, error messages): a process name, an argv, a path or a probe
name is chosen by whoever runs the process or writes the file, and an ``ESC`` in it would
drive the reader's terminal (set its title, clear the screen, move the cursor), a newline
would forge a row. Controls are shown as escapes instead; ordinary text, whatever its script,
comes out unchanged (byte for byte, which the C-identical tool output relies on). JSON output
needs none of this: JSON escapes controls itself. Also :class:`LazyPattern`, a regular expression
compiled on first use. Pure: no imports beyond ``re``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["LazyPattern", "visible"]


class LazyPattern:
    """A regular expression compiled on its first use (``search``, ``findall``...): the patterns a
    module keeps for reading error logs cost nothing at import, where each compile is ~0.1 ms of
    a tool's start."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return getattr(self._compiled, name)


# C0 controls but tab (a newline forges a row, CR and backspace overwrite one; a tab only moves
# right, and the C tools print it as is), DEL, C1 controls (U+0080..9F: CSI is U+009B), the same
# bytes kept undecoded by surrogateescape (\udc80-\udc9f), line and paragraph separators, and the
# bidirectional embeddings, overrides and isolates that reorder what is shown ("Trojan source").
_CONTROL = LazyPattern("[\x00-\x08\x0a-\x1f\x7f-\x9f\udc80-\udc9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = LazyPattern("[\x00-\x08\x0b-\x1f\x7f-\x9f\udc80-\udc9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDC9F:  # an undecodable byte (surrogateescape): shown as that byte
        code -= 0xDC00
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str, *, newlines: bool = False) -> str:
    """``text`` with every terminal control shown as an escape (``ESC`` -> ``\\x1b``, newline ->
    ``\\x0a``, U+202E -> ``\\u202e``); text without controls is returned as is.

    ``newlines=True`` keeps newlines: for whole blocks of output whose lines a program made (a
    safety net under a field that was not escaped: a newline inside a field needs the default)."""
    if text.isascii() and text.isprintable():  # no control in it: the patterns (with their large
        return text                              # Unicode classes) are compiled only for other text
    pattern = _CONTROL_BUT_NEWLINE if newlines else _CONTROL
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)
