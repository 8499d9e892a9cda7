"""struct_ops maps (a BPF TCP congestion control, sched_ext...): an upgrade swaps the registered
map with one ``BPF_LINK_UPDATE`` of its struct_ops link (``link.update(new_map)``).

The unit is a map, not a program: ``deploy`` registers each ``SEC(".struct_ops.link")`` map once,
through the first of its programs (the attachment's ``program``), and the map's other programs
go with it (``group``). A switch registers the map of the same name in the new version; the
kernel keeps the old ops for whatever still uses them (a TCP connection keeps the congestion
control it started with). The program a hook "runs" is read back from the registered map's
value, whose function slots the kernel fills with program ids.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from pybpf.errors import BpfError, NotSupportedError
from pybpf.kernel.info import open_pinned, open_prog_by_id, prog_info
from pybpf.link.base import BpfLink
from pybpf.link.struct_ops import StructOpsFdLink
from pybpf.maps.map import Map
from pybpf.program import Program
from pybpf.upgrade.attach.base import Attachment, Hook, LinkPinned, disown, register

__all__ = ["StructOpsAttachment"]


def _map_of(program: Program) -> Map:
    """The struct_ops map whose ops ``program`` implements, in the program's object."""
    obj: Any = program._obj
    for ops in obj.file_spec.struct_ops:
        if program.name in ops.programs.values():
            return obj.maps[ops.name]
    raise BpfError(f"struct_ops program {program.name!r} is in no struct_ops map of {obj.name}")


@register
class StructOpsAttachment(LinkPinned):
    """A struct_ops map registered through a link (the manifest's mode ``struct_ops``)."""

    mode = "struct_ops"
    switch_how = "BPF_LINK_UPDATE of the struct_ops link with the new version's map"

    def __init__(self, program: str, prog_type: str, hook: str, link: BpfLink) -> None:
        super().__init__(program, prog_type, hook, link)
        self._previous: Map | None = None  # the map registered before the last switch (for a rollback)
        self._current: Map | None = None

    @classmethod
    def handles(cls, program: Program) -> bool:
        """struct_ops programs."""
        return program.type == "struct_ops"

    @classmethod
    def group(cls, program: Program) -> str | None:
        """The programs of one struct_ops map are deployed together: the map's name."""
        return f"struct_ops:{_map_of(program).name}"

    @classmethod
    def attach(cls, program: Program, hook: Hook | None) -> Attachment:
        """Register the struct_ops map ``program`` belongs to (``hook`` is not used)."""
        map_ = _map_of(program)
        link = map_.attach_struct_ops()
        disown(program._obj, link)
        if not isinstance(link, BpfLink):
            link.close()
            raise NotSupportedError(f"struct_ops map {map_.name!r} is registered without a link "
                                    f"(SEC(\".struct_ops\")): declare it in SEC(\".struct_ops.link\") to upgrade it",
                                    feature="upgrade:struct_ops")
        attachment = cls(program.name, program.type, f"struct_ops {map_.name}", link)
        attachment._current = map_
        return attachment

    @classmethod
    def from_manifest(cls, directory: str, entry: dict[str, Any]) -> Attachment:
        """Reopen the pinned struct_ops link."""
        path = os.path.join(directory, entry["link"])
        return cls(entry["program"], entry["type"], entry["hook"],
                   StructOpsFdLink(open_pinned(path, "link"), f"pinned struct_ops link {path}"))

    def current_program_id(self) -> int:
        """The id of this attachment's program in the map the link registers now: the kernel
        writes each function slot of a struct_ops map's value as the id of its program."""
        registered = Map.from_id(self._link.map_id(), key_dtype="u4")  # type: ignore[attr-defined]
        try:
            raw = bytes(registered[0].tobytes())
        finally:
            registered.close()
        want = self.program[:15]  # the kernel keeps 15 bytes of a program's name
        for (slot,) in struct.iter_unpack("<Q", raw[: len(raw) - len(raw) % 8]):
            if not 0 < slot < 1 << 31:
                continue
            try:
                fd = open_prog_by_id(slot)
            except BpfError:
                continue
            try:
                if prog_info(fd).name == want:
                    return slot
            finally:
                os.close(fd)
        raise BpfError(f"struct_ops link {self._link.description}: its map runs no program named {self.program!r}")

    def switch(self, program: Program | int, *, expected: tuple[int, int] | None = None) -> None:
        """Register the map of ``program``'s version (a rollback's program fd: the map before)."""
        if isinstance(program, int):
            if self._previous is None:
                raise NotSupportedError(f"struct_ops {self.hook}: a switch to a pinned program fd cannot name its "
                                        f"struct_ops map; upgrade from the process that holds the new version",
                                        feature="upgrade:struct_ops")
            target = self._previous
        else:
            target = _map_of(program)
        if expected is not None and self.current_program_id() != expected[1]:
            raise BpfError(f"struct_ops {self.hook} no longer runs the version this upgrade replaces")
        self._link.update(target)
        self._previous, self._current = self._current, target
