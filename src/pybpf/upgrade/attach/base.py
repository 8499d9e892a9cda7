"""What every kind of attachment shares: the ``Attachment`` base and the registry of kinds.

``attach(program, hook)`` asks each registered kind, in order, whether it
``handles`` the program and lets the first one attach it; ``from_manifest``
reopens a pinned attachment with the kind whose ``mode`` the entry names.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from pybpf.errors import ManifestError, NotSupportedError
from pybpf.kernel.info import LinkInfo, open_prog_by_id
from pybpf.link.base import BpfLink, Link
from pybpf.program import Program

__all__ = ["KINDS", "Attachment", "Hook", "LinkPinned", "attach", "bundled_object", "disown", "from_manifest",
           "register"]

# A function that attaches the program it is given (the tool's own program for a link kind,
# the dispatcher for the others) to the hook and returns the link.
Hook = Callable[[Program], Link]


class Attachment(ABC):
    """One hook of a running version: the program named ``program`` runs there."""

    mode = ""           # the manifest's name of the kind
    switch_how = ""     # what a switch does, for plans and reports

    def __init__(self, program: str, prog_type: str, hook: str) -> None:
        self.program, self.prog_type, self.hook = program, prog_type, hook

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.program} at {self.hook}>"

    # ---- the kind ------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def handles(cls, program: Program) -> bool:
        """Whether this kind attaches ``program`` (by its type, section...)."""

    @classmethod
    def group(cls, program: Program) -> str | None:
        """Programs of one group share one attachment (a struct_ops map's): ``deploy`` attaches the
        first of them and skips the rest. None: the program is attached on its own."""
        return None

    @classmethod
    @abstractmethod
    def attach(cls, program: Program, hook: Hook | None) -> Attachment:
        """Attach ``program`` (through ``hook`` if given) so that a later switch can swap it."""

    @classmethod
    @abstractmethod
    def from_manifest(cls, directory: str, entry: dict[str, Any]) -> Attachment:
        """Reopen the attachment a manifest entry describes (pinned in ``directory``)."""

    # ---- one attachment --------------------------------------------------------------

    @abstractmethod
    def current_program_id(self) -> int:
        """The kernel id of the program this hook runs now."""

    def current_program(self) -> tuple[int, int]:
        """(a new fd the caller closes, id) of the program this hook runs now."""
        prog_id = self.current_program_id()
        return open_prog_by_id(prog_id), prog_id

    @abstractmethod
    def switch(self, program: Program | int, *, expected: tuple[int, int] | None = None) -> None:
        """Make the hook run ``program`` from the next event on (atomically); with ``expected``
        (fd, id of the program it should run now) refuse if another upgrade changed it meanwhile."""

    @abstractmethod
    def pin(self, directory: str, stem: str) -> dict[str, Any]:
        """Pin under ``directory``; returns this attachment's manifest entry."""

    @classmethod
    @abstractmethod
    def pins(cls, entry: dict[str, Any]) -> list[str]:
        """The pin names a manifest entry of this kind holds."""

    @abstractmethod
    def close(self) -> None:
        """Release this process's handles (a pinned attachment stays in the kernel)."""

    @property
    @abstractmethod
    def link(self) -> Link:
        """The link on the hook (the dispatcher's, for a dispatch attachment)."""

    def current_link_info(self) -> LinkInfo:
        """The kernel's view of the link on the hook (the dispatcher's link for a dispatch attachment)."""
        link = self.link
        assert isinstance(link, BpfLink)
        return link.info()

    def entry(self) -> dict[str, Any]:
        """This attachment's manifest fields common to every kind."""
        return {"program": self.program, "type": self.prog_type, "mode": self.mode, "hook": self.hook}


class LinkPinned(Attachment):
    """The part of a kind whose attachment is one bpf_link of its own (XDP, tcx, struct_ops...):
    the link is the handle on the hook, pinned as ``<stem>_link``, and what a switch updates.
    Not a kind itself: the kinds subclass it and say how they attach and switch."""

    def __init__(self, program: str, prog_type: str, hook: str, link: BpfLink) -> None:
        super().__init__(program, prog_type, hook)
        self._link = link

    @property
    def link(self) -> Link:
        """The bpf_link on the hook."""
        return self._link

    def pin(self, directory: str, stem: str) -> dict[str, Any]:
        """Pin the link as ``<stem>_link``."""
        name = f"{stem}_link"
        path = os.path.join(directory, name)
        if self._link.pin_path != path:
            self._link.pin(path)
        return {**self.entry(), "link": name}

    @classmethod
    def pins(cls, entry: dict[str, Any]) -> list[str]:
        """The link's pin."""
        return [entry["link"]]

    def close(self) -> None:
        """Close this handle (a pinned link stays in the kernel, the program on the hook)."""
        self._link.close()


KINDS: list[type[Attachment]] = []
A = TypeVar("A", bound=type[Attachment])


def register(kind: A) -> A:
    """Class decorator: make ``kind`` one of the attachments ``attach``/``from_manifest`` know."""
    if any(k.mode == kind.mode for k in KINDS):
        raise ValueError(f"an attachment kind with mode {kind.mode!r} is registered already")
    KINDS.append(kind)
    return kind


def kind_for(program: Program) -> type[Attachment] | None:
    """The registered kind that attaches ``program``, if any."""
    return next((k for k in KINDS if k.handles(program)), None)


def attach(program: Program, hook: Hook | None = None) -> Attachment:
    """Attach ``program`` so that a later upgrade can swap it atomically."""
    kind = kind_for(program)
    if kind is None:
        prog_type = program.type
        raise NotSupportedError(f"program {program.name!r} ({prog_type}): pybpf cannot switch {prog_type} "
                                f"attachments atomically (no updatable bpf_link kind and no dispatcher)",
                                feature=f"upgrade:{prog_type}")
    return kind.attach(program, hook)


def from_manifest(directory: str, entry: dict[str, Any]) -> Attachment:
    """Reopen a pinned attachment described by a manifest entry."""
    mode = entry.get("mode")
    for kind in KINDS:
        if kind.mode == mode:
            return kind.from_manifest(directory, entry)
    raise ManifestError(os.path.join(directory, "pybpf_manifest"), f"an attachment of unknown mode {mode!r} "
                        f"(known: {', '.join(k.mode for k in KINDS)})")


def kind_of(entry: dict[str, Any]) -> type[Attachment] | None:
    """The registered kind of a manifest entry (by its mode)."""
    return next((k for k in KINDS if k.mode == entry.get("mode")), None)


def disown(obj: Any, link: Link) -> Link:
    """The link now belongs to an attachment, not to the object (closing the object keeps it)."""
    obj._forget_link(link)
    if obj._forget_link in link._on_close:
        link._on_close.remove(obj._forget_link)
    return link


def bundled_object(name: str) -> str:
    """A bundled ``NAME.bpf.o`` of pybpf (dispatchers, the merge program), found without importing pybpf."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(os.path.dirname(os.path.dirname(here)), "bpf", f"{name}.bpf.o")
    if not os.path.exists(path):
        raise FileNotFoundError(2, f"the bundled {name}.bpf.o is not built (cmake --build build)", path)
    return path
