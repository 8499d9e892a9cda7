"""A bpf_link that ``BPF_LINK_UPDATE`` swaps in place (XDP, cgroup, netns...)."""

from __future__ import annotations

import os
from typing import Any

from pybpf.errors import NotSupportedError
from pybpf.link.base import BpfLink
from pybpf.program import Program
from pybpf.upgrade.attach.base import Attachment, Hook, LinkPinned, disown, register

__all__ = ["LINK_UPDATE_TYPES", "LinkAttachment"]

# program types attached through bpf_links that BPF_LINK_UPDATE can swap (found by
# tests/test_upgrade_links.py on this kernel)
LINK_UPDATE_TYPES = {"xdp", "cgroup_skb", "cgroup_sock", "cgroup_sock_addr", "cgroup_sockopt", "cgroup_sysctl",
                     "cgroup_device", "sk_lookup", "flow_dissector"}


@register
class LinkAttachment(LinkPinned):
    """A bpf_link that BPF_LINK_UPDATE swaps in place."""

    mode = "link"
    switch_how = "BPF_LINK_UPDATE of the link (BPF_F_REPLACE)"

    @classmethod
    def handles(cls, program: Program) -> bool:
        """Programs of the types whose bpf_links the kernel updates in place."""
        return program.type in LINK_UPDATE_TYPES

    @classmethod
    def attach(cls, program: Program, hook: Hook | None) -> Attachment:
        """Attach through ``hook`` (or the SEC()); the result must be a bpf_link."""
        link = hook(program) if hook is not None else program.attach()
        disown(program._obj, link)
        if not isinstance(link, BpfLink):
            link.close()
            raise NotSupportedError(f"program {program.name!r}: {link.description} is not a bpf_link and cannot be "
                                    f"updated in place (attach it as a bpf_link, e.g. attach_xdp without mode=)",
                                    feature=f"upgrade:{program.type}")
        return cls(program.name, program.type, link.description.split(" -> ", 1)[-1], link)

    @classmethod
    def from_manifest(cls, directory: str, entry: dict[str, Any]) -> Attachment:
        """Reopen the pinned link."""
        link = BpfLink.from_pin(os.path.join(directory, entry["link"]))
        return cls(entry["program"], entry["type"], entry["hook"], link)

    def current_program_id(self) -> int:
        """The id of the program the link runs (from the kernel's link info)."""
        return self._link.info().prog_id

    def switch(self, program: Program | int, *, expected: tuple[int, int] | None = None) -> None:
        """One BPF_LINK_UPDATE; with ``expected`` BPF_F_REPLACE makes the kernel check the old program."""
        self._link.update(program, replace=expected[0] if expected is not None else None)  # BPF_F_REPLACE
