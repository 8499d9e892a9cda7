"""Hooks whose links cannot be updated: a dispatcher tail-calls the program in its one-slot PROG_ARRAY.

Tracepoint, raw tracepoint, uprobe/kprobe and perf_event links have no
``update_prog`` in the kernel. The bundled dispatcher of the program's type
(``bpf_src/dispatch.bpf.c``) is attached to the hook once and tail-calls the
program in slot 0; a switch is one update of that slot. Each event reads the
slot once, so it runs the old program or the new one: exactly once.

The dispatcher carries the tool's name (its ELF symbol is renamed before
load), so ``bpftool prog list`` shows which tool each dispatcher serves. A
PROG_ARRAY is emptied when its last user reference goes, so the slot map is
pinned beside the dispatcher's link.
"""

from __future__ import annotations

import errno
import os
import re
import struct
from collections.abc import Callable
from typing import Any

from pybpf.errors import BpfError, NotSupportedError
from pybpf.link.base import BpfLink, Link
from pybpf.maps.map import Map
from pybpf.object import Object, open as open_object
from pybpf.program import Program
from pybpf.upgrade.attach.base import Attachment, Hook, bundled_object, disown, register

__all__ = ["DISPATCHERS", "DispatchAttachment", "dispatcher_name", "renamed_symbol"]

# program type -> dispatcher program in dispatch.bpf.o (its slot map: slot_<type>)
DISPATCHERS = {"tracepoint": "dispatch_tracepoint", "raw_tracepoint": "dispatch_raw_tracepoint",
               "kprobe": "dispatch_kprobe", "perf_event": "dispatch_perf_event"}
_NAME_MAX = 14  # the kernel keeps 15 bytes; bpftool shows the BTF name instead of a name of exactly 15


def dispatcher_name(tool: str) -> str:
    """The kernel name of a dispatcher serving ``tool``: its name in the characters the kernel allows."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", tool)[:_NAME_MAX]
    return name or "pybpf_dispatch"


def renamed_symbol(elf: bytes, old: str, new: str) -> bytes:
    """``elf`` (an ELF64 little-endian relocatable object) with symbol ``old`` renamed ``new``.

    The string table is copied to the end of the file with the new name
    appended and its section header moved there; every other byte stays
    (strings may share tails, so none is overwritten)."""
    data = bytearray(elf)
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BpfError("the dispatcher object is not a little-endian ELF64 file", errno.EINVAL)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)

    def header(i: int) -> tuple[int, ...]:
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)

    symtab = next((i for i in range(shnum) if header(i)[1] == 2), None)  # SHT_SYMTAB
    if symtab is None:
        raise BpfError("the dispatcher object has no symbol table", errno.EINVAL)
    _, _, _, _, sym_off, sym_size, strndx, _, _, sym_entsize = header(symtab)
    st = header(strndx)
    strings = bytes(data[st[4]:st[4] + st[5]])
    target = old.encode()
    found = False
    new_off = len(strings)
    for pos in range(sym_off, sym_off + sym_size, sym_entsize or 24):
        name_off, = struct.unpack_from("<I", data, pos)
        end = strings.find(b"\0", name_off)
        if strings[name_off:end] == target:
            struct.pack_into("<I", data, pos, new_off)
            found = True
    if not found:
        raise BpfError(f"the dispatcher object has no symbol {old!r}", errno.ENOENT)
    strings += new.encode() + b"\0"
    while len(data) % 8:
        data.append(0)
    where = len(data)
    data += strings
    struct.pack_into("<QQ", data, shoff + strndx * shentsize + 24, where, len(strings))  # sh_offset, sh_size
    return bytes(data)


@register
class DispatchAttachment(Attachment):
    """The program sits in slot 0 of a dispatcher's PROG_ARRAY; the dispatcher is on the hook."""

    mode = "dispatch"
    switch_how = "one update of the dispatcher's slot (PROG_ARRAY)"

    def __init__(self, program: str, prog_type: str, hook: str, link: BpfLink, slot: Map,
                 dispatcher: Object | None) -> None:
        super().__init__(program, prog_type, hook)
        self._link, self.slot, self._dispatcher = link, slot, dispatcher

    @classmethod
    def handles(cls, program: Program) -> bool:
        """Programs of the types that have a dispatcher."""
        return program.type in DISPATCHERS

    @classmethod
    def attach(cls, program: Program, hook: Hook | None) -> Attachment:
        """Load the dispatcher of the program's type (named after the tool), fill its slot, attach it."""
        prog_type = program.type
        attach_hook = hook if hook is not None else _SEC_HOOKS.get(prog_type, _no_hook)(program)
        wanted = DISPATCHERS[prog_type]
        with open(bundled_object("dispatch"), "rb") as f:
            image = f.read()
        name = dispatcher_name(getattr(program._obj, "name", program.name))
        dispatcher = open_object(renamed_symbol(image, wanted, name))
        try:
            for candidate in dispatcher.programs.values():
                candidate.autoload = candidate.name == name
            dispatcher.load()
            slot = dispatcher.maps[wanted.replace("dispatch_", "slot_")]
            slot.update(0, program.fd)  # the program is in place before the first event can arrive
            link = attach_hook(dispatcher.programs[name])
            disown(dispatcher, link)
            if not isinstance(link, BpfLink):
                link.close()
                raise NotSupportedError(f"the dispatcher for {program.name!r} was attached as {link.description}, "
                                        f"not a bpf_link", feature=f"upgrade:{prog_type}")
            return cls(program.name, prog_type, link.description.split(" -> ", 1)[-1], link, slot, dispatcher)
        except BaseException:
            dispatcher.close()
            raise

    @classmethod
    def from_manifest(cls, directory: str, entry: dict[str, Any]) -> Attachment:
        """Reopen the pinned dispatcher link and slot map."""
        link = BpfLink.from_pin(os.path.join(directory, entry["link"]))
        try:
            slot = Map.from_pin(os.path.join(directory, entry["slot"]))
            return cls(entry["program"], entry["type"], entry["hook"], link, slot, None)
        except BaseException:
            link.close()
            raise

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
                           f"(another upgrade ran meanwhile)")
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

    @classmethod
    def pins(cls, entry: dict[str, Any]) -> list[str]:
        """The link's pin and the slot map's."""
        return [entry["link"], entry["slot"]]

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
                    f"dispatcher to; pass hooks={{{program.name!r}: lambda p: p.attach_...(...)}}")


_SEC_HOOKS: dict[str, Callable[[Program], Hook]] = {
    "tracepoint": _tracepoint_hook, "raw_tracepoint": _raw_tracepoint_hook, "kprobe": _kprobe_hook,
}


def _no_hook(program: Program) -> Hook:
    raise _no_target(program)
