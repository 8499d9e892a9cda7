"""Folded stacks: ``root;caller;callee COUNT`` lines (Brendan Gregg's format).

Owns the in-memory form of a profile as counts per stack (outermost frame first), its
text form (what flamegraph.pl, speedscope, inferno and pybpf's own SVG read), parsing
that text back, and making frame names safe for it: a name may not hold ``;`` (the frame
separator) or a line break, and control characters are shown escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from pybpf.errors import InvalidArgumentError, RecordFormatError

__all__ = ["Folded", "frame_name"]

# ";" separates frames; what str.splitlines() breaks on would split a line
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029;]")


def frame_name(name: str) -> str:
    """``name`` made safe for a folded line: ``;`` -> ``:``, control characters -> ``\\xNN``."""
    if not _UNSAFE.search(name):
        return name
    return _UNSAFE.sub(lambda m: ":" if m.group() == ";" else f"\\x{ord(m.group()):02x}", name)


class Folded:
    """Counts per stack; a stack is a tuple of frame names, outermost (root) first."""

    def __init__(self, counts: Iterable[tuple[Sequence[str], int]] | None = None) -> None:
        self.counts: dict[tuple[str, ...], int] = {}
        for frames, count in counts or ():
            self.add(frames, count)

    def add(self, frames: Sequence[str], count: int = 1) -> None:
        """Add ``count`` to the stack ``frames`` (outermost first; names made safe here)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidArgumentError(f"a stack count must be an integer >= 0, not {count!r}")
        if count == 0:
            return
        key = tuple(frame_name(str(f)) for f in frames)
        if not key:
            raise InvalidArgumentError("a stack needs at least one frame")
        self.counts[key] = self.counts.get(key, 0) + count

    def __len__(self) -> int:
        return len(self.counts)

    def __iter__(self) -> Iterator[tuple[tuple[str, ...], int]]:
        """(stack, count) in text order (sorted by stack, as flamegraph.pl merges them)."""
        return iter(sorted(self.counts.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Folded) and self.counts == other.counts

    @property
    def total(self) -> int:
        """The sum of every count."""
        return sum(self.counts.values())

    def merge(self, other: Folded) -> Folded:
        """A new profile with the counts of both."""
        out = Folded(self.counts.items())
        for frames, count in other.counts.items():
            out.add(frames, count)
        return out

    def share(self, pattern: str) -> float:
        """Fraction of the total in stacks whose text contains ``pattern`` (``"main;hot"``)."""
        total = self.total
        hit = sum(c for frames, c in self.counts.items() if pattern in ";".join(frames))
        return hit / total if total else 0.0

    def text(self) -> str:
        """The folded text, one ``a;b;c COUNT`` line per stack."""
        return "".join(f"{';'.join(frames)} {count}\n" for frames, count in self)

    @classmethod
    def parse(cls, text: str) -> Folded:
        """Read folded text (blank lines skipped; a bad line raises ``RecordFormatError``)."""
        out = cls()
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            stack, sep, count = line.rstrip().rpartition(" ")
            if not sep or not stack or not count.isdigit():
                raise RecordFormatError(f"folded line {n}: expected 'frame;frame;... COUNT', got {line[:80]!r}")
            out.add(stack.split(";"), int(count))
        return out
