"""Attachments whose program can be swapped atomically: a bpf_link, or a dispatcher's slot.

* ``LinkAttachment``: a bpf_link of a kind the kernel can update in place
  (XDP, cgroup, netns, iter: see the README); a switch is one
  ``BPF_LINK_UPDATE`` with ``BPF_F_REPLACE``.
* ``DispatchAttachment``: for hooks whose links cannot be updated (tracepoint,
  raw tracepoint, uprobe/kprobe, perf_event). The bundled dispatcher of the
  program's type (``bpf_src/dispatch.bpf.c``) is attached to the hook once and
  tail-calls the program in slot 0 of its one-slot PROG_ARRAY; a switch is one
  update of that slot. Each event reads the slot once, so it runs the old
  program or the new one: exactly once.

Both can be pinned (the link, and for a dispatcher its slot map too: a
PROG_ARRAY is emptied when its last user reference goes) and reopened from
the pins by another process.
"""

from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from pybpf.errors import BpfError, NotSupportedError
from pybpf.kernel.info import LinkInfo, open_prog_by_id
from pybpf.link.base import LibbpfLink, Link
from pybpf.maps.map import Map
from pybpf.object import Object, open as open_object
from pybpf.program import Program

__all__ = [
    "DISPATCHERS",
    "LINK_UPDATE_TYPES",
    "Attachment",
    "DispatchAttachment",
    "Hook",
    "LinkAttachment",
    "attach",
]

# A function that attaches the program it is given (the tool's own program for a link kind,
# the dispatcher for the others) to the hook and returns the link.
Hook = Callable[[Program], Link]

# program type -> dispatcher program in dispatch.bpf.o (its slot map: slot_<type>)
DISPATCHERS = {"tracepoint": "dispatch_tracepoint", "raw_tracepoint": "dispatch_raw_tracepoint",
               "kprobe": "dispatch_kprobe", "perf_event": "dispatch_perf_event"}
# program types attached through bpf_links that BPF_LINK_UPDATE can swap (found by
# tests/test_upgrade_links.py on this kernel)
LINK_UPDATE_TYPES = {"xdp", "cgroup_skb", "cgroup_sock", "cgroup_sock_addr", "cgroup_sockopt", "cgroup_sysctl",
                     "cgroup_device", "sk_lookup", "flow_dissector"}


class Attachment(ABC):
    """One hook of a running version: the program named ``program`` runs there."""

    mode = ""

    def __init__(self, program: str, prog_type: str, hook: str) -> None:
        self.program, self.prog_type, self.hook = program, prog_type, hook

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.program} at {self.hook}>"

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
        assert isinstance(link, LibbpfLink)
        return link.info()

    def entry(self) -> dict[str, Any]:
        """This attachment's manifest fields common to both modes."""
        return {"program": self.program, "type": self.prog_type, "mode": self.mode, "hook": self.hook}

    @staticmethod
    def from_manifest(directory: str, entry: dict[str, Any]) -> Attachment:
        """Reopen a pinned attachment described by a manifest entry."""
        link = LibbpfLink.from_pin(os.path.join(directory, entry["link"]))
        try:
            if entry["mode"] == "link":
                return LinkAttachment(entry["program"], entry["type"], entry["hook"], link)
            slot = Map.from_pin(os.path.join(directory, entry["slot"]))
            return DispatchAttachment(entry["program"], entry["type"], entry["hook"], link, slot, None)
        except BaseException:
            link.close()
            raise


class LinkAttachment(Attachment):
    """A bpf_link that BPF_LINK_UPDATE swaps in place."""

    mode = "link"

    def __init__(self, program: str, prog_type: str, hook: str, link: LibbpfLink) -> None:
        super().__init__(program, prog_type, hook)
        self._link = link

    @property
    def link(self) -> Link:
        """The bpf_link BPF_LINK_UPDATE swaps."""
        return self._link

    def current_program_id(self) -> int:
        """The id of the program the link runs (from the kernel's link info)."""
        return self._link.info().prog_id

    def switch(self, program: Program | int, *, expected: tuple[int, int] | None = None) -> None:
        """One BPF_LINK_UPDATE; with ``expected`` BPF_F_REPLACE makes the kernel check the old program."""
        self._link.update(program, replace=expected[0] if expected is not None else None)  # BPF_F_REPLACE

    def pin(self, directory: str, stem: str) -> dict[str, Any]:
        """Pin the link as ``<stem>_link``."""
        name = f"{stem}_link"
        path = os.path.join(directory, name)
        if self._link.pin_path != path:
            self._link.pin(path)
        return {**self.entry(), "link": name}

    def close(self) -> None:
        """Close this handle (a pinned link stays attached)."""
        self._link.close()


class DispatchAttachment(Attachment):
    """The program sits in slot 0 of a dispatcher's PROG_ARRAY; the dispatcher is on the hook."""

    mode = "dispatch"

    def __init__(self, program: str, prog_type: str, hook: str, link: LibbpfLink, slot: Map,
                 dispatcher: Object | None) -> None:
        super().__init__(program, prog_type, hook)
        self._link, self.slot, self._dispatcher = link, slot, dispatcher

    @property
    def link(self) -> Link:
        """The dispatcher's link on the hook."""
        return self._link

    def current_program_id(self) -> int:
        """The id of the program in the slot."""
        return int(self.slot.lookup(0))  # a PROG_ARRAY answers a lookup with the program's id

    def switch(self, program: Program | int, *, expected: tuple[int, int] | None = None) -> None:
        """One slot update; with ``expected`` refuse if the slot no longer holds that program."""
        fd = program if isinstance(program, int) else program.fd
        if expected is not None and self.current_program_id() != expected[1]:
            raise BpfError(f"the dispatcher at {self.hook} no longer runs the expected program "
                           f"(another upgrade ran meanwhile)", errno.EPERM)
        self.slot.update(0, fd)  # one map update: the next event tail-calls the new program

    def pin(self, directory: str, stem: str) -> dict[str, Any]:
        """Pin the slot map (first) and the dispatcher's link."""
        link_name, slot_name = f"{stem}_link", f"{stem}_slot"
        link_path, slot_path = os.path.join(directory, link_name), os.path.join(directory, slot_name)
        if not os.path.exists(slot_path):
            self.slot.pin(slot_path)  # first: the PROG_ARRAY must outlive this process with its entry
        if self._link.pin_path != link_path:
            self._link.pin(link_path)
        return {**self.entry(), "link": link_name, "slot": slot_name}

    def close(self) -> None:
        """Close the handles and the dispatcher object (pinned link and slot stay)."""
        self._link.close()
        self.slot.close()
        if self._dispatcher is not None:
            self._dispatcher.close()


def _tracepoint_hook(program: Program) -> Hook:
    prefix, _, target = program.section.partition("/")
    category, _, name = target.partition("/")
    if prefix not in ("tracepoint", "tp") or not category or not name:
        raise _no_target(program)
    return lambda p: p.attach_tracepoint(category, name)


def _raw_tracepoint_hook(program: Program) -> Hook:
    prefix, _, target = program.section.partition("/")
    if prefix not in ("raw_tracepoint", "raw_tp") or not target:
        raise _no_target(program)
    return lambda p: p.attach_raw_tracepoint(target)


def _kprobe_hook(program: Program) -> Hook:
    prefix, _, target = program.section.partition("/")
    if prefix in ("uprobe", "uretprobe") and ":" in target:
        binary, _, func = target.rpartition(":")
        if "+" in func:
            raise _no_target(program)
        return lambda p: p.attach_uprobe(binary, func, retprobe=prefix == "uretprobe")
    if prefix in ("kprobe", "kretprobe") and target:
        return lambda p: p.attach_kprobe(target, retprobe=prefix == "kretprobe")
    raise _no_target(program)


def _no_target(program: Program) -> BpfError:
    return BpfError(f"program {program.name!r}: SEC({program.section!r}) names no hook pybpf can attach the "
                    f"dispatcher to; pass hooks={{{program.name!r}: lambda p: p.attach_...(...)}}", errno.EINVAL)


_SEC_HOOKS: dict[str, Callable[[Program], Hook]] = {
    "tracepoint": _tracepoint_hook, "raw_tracepoint": _raw_tracepoint_hook, "kprobe": _kprobe_hook,
}


def _disown(obj: Any, link: Link) -> Link:
    """The link now belongs to an attachment, not to the object (closing the object keeps it)."""
    obj._forget_link(link)
    if obj._forget_link in link._on_close:
        link._on_close.remove(obj._forget_link)
    return link


def attach(program: Program, hook: Hook | None = None) -> Attachment:
    """Attach ``program`` so that a later upgrade can swap it atomically."""
    prog_type = program.type
    if prog_type in DISPATCHERS:
        return _attach_dispatched(program, prog_type, hook)
    if prog_type not in LINK_UPDATE_TYPES:
        raise NotSupportedError(f"program {program.name!r} ({prog_type}): pybpf cannot switch {prog_type} "
                                f"attachments atomically (no updatable bpf_link kind and no dispatcher)",
                                feature=f"upgrade:{prog_type}")
    link = hook(program) if hook is not None else program.attach()
    _disown(program._obj, link)
    if not isinstance(link, LibbpfLink):
        link.close()
        raise NotSupportedError(f"program {program.name!r}: {link.description} is not a bpf_link and cannot be "
                                f"updated in place (attach it as a bpf_link, e.g. attach_xdp without mode=)",
                                feature=f"upgrade:{prog_type}")
    return LinkAttachment(program.name, prog_type, link.description.split(" -> ", 1)[-1], link)


def _attach_dispatched(program: Program, prog_type: str, hook: Hook | None) -> Attachment:
    attach_hook = hook if hook is not None else _SEC_HOOKS.get(prog_type, _no_hook)(program)
    dispatcher = open_object(_dispatch_object())
    try:
        wanted = DISPATCHERS[prog_type]
        for name, candidate in dispatcher.programs.items():
            candidate.autoload = name == wanted
        dispatcher.load()
        slot = dispatcher.maps[wanted.replace("dispatch_", "slot_")]
        slot.update(0, program.fd)  # the program is in place before the first event can arrive
        link = attach_hook(dispatcher.programs[wanted])
        _disown(dispatcher, link)
        if not isinstance(link, LibbpfLink):
            link.close()
            raise NotSupportedError(f"the dispatcher for {program.name!r} was attached as {link.description}, "
                                    f"not a bpf_link", feature=f"upgrade:{prog_type}")
        return DispatchAttachment(program.name, prog_type, link.description.split(" -> ", 1)[-1], link, slot,
                                  dispatcher)
    except BaseException:
        dispatcher.close()
        raise


def _dispatch_object() -> str:
    # the bundled dispatch.bpf.o, found without importing the pybpf package (no import cycle)
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bpf", "dispatch.bpf.o")
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "the bundled dispatcher is not built (cmake --build build)", path)
    return path


def _no_hook(program: Program) -> Hook:
    raise _no_target(program)
