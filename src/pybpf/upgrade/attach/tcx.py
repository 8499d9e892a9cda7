"""tc programs on a tcx link: an upgrade swaps the program with one ``BPF_LINK_UPDATE``.

A tcx link (kernel 6.6, :mod:`pybpf.link.tcx`) is a bpf_link that the kernel updates in
place, so a tc program deployed through one is switched exactly once, every packet running the
old program or the new one. tc programs name no interface in their SEC(): ``deploy`` needs a
hook for each, e.g. ``hooks={"count": lambda p: p.attach_tcx("eth0", "ingress")}``. A netlink
tc filter (``attach_tc``) cannot be swapped in place and is refused.
"""

from __future__ import annotations

from pybpf.errors import NotSupportedError
from pybpf.link.base import BpfLink
from pybpf.program import Program
from pybpf.upgrade.attach.base import Attachment, Hook, disown, register
from pybpf.upgrade.attach.link import LinkAttachment

__all__ = ["TcxAttachment"]


@register
class TcxAttachment(LinkAttachment):
    """A tc program on a tcx link (the manifest's mode ``tcx``)."""

    mode = "tcx"
    switch_how = "BPF_LINK_UPDATE of the tcx link (BPF_F_REPLACE)"

    @classmethod
    def handles(cls, program: Program) -> bool:
        """tc (sched_cls) programs."""
        return program.type == "sched_cls"

    @classmethod
    def attach(cls, program: Program, hook: Hook | None) -> Attachment:
        """Attach through ``hook``, which must make a tcx link (``attach_tcx``)."""
        if hook is None:
            raise NotSupportedError(f"tc program {program.name!r} names no interface: deploy it with a hook, e.g. "
                                    f"hooks={{{program.name!r}: lambda p: p.attach_tcx('eth0', 'ingress')}}",
                                    feature="upgrade:sched_cls")
        link = disown(program._obj, hook(program))
        if not isinstance(link, BpfLink) or link.info().type != "tcx":
            link.close()
            raise NotSupportedError(f"tc program {program.name!r}: {link.description} is not a tcx link, which an "
                                    f"upgrade could swap in place; attach it with attach_tcx(interface, direction)",
                                    feature="upgrade:sched_cls")
        return cls(program.name, program.type, link.description.split(" -> ", 1)[-1], link)
