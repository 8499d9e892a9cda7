"""Attachments whose program an upgrade can swap atomically: one kind per file.

A kind is one ``Attachment`` subclass in its own module, registered with
``@register``: it says which programs it takes (``handles``), attaches them
(``attach``), reopens its pinned form from a manifest entry (``from_manifest``,
keyed by its ``mode``) and switches the program (``switch``). The upgrade core
knows nothing else about them, so a new kind (tcx links, struct_ops maps) is a
new file here and one import below. A kind whose attachment is one bpf_link of
its own subclasses ``LinkPinned`` (the link as the handle, pinned as ``<stem>_link``).

* ``link``: a bpf_link of a kind the kernel can update in place (XDP, cgroup,
  netns...); a switch is one ``BPF_LINK_UPDATE`` with ``BPF_F_REPLACE``.
* ``tcx``: a tc program on a tcx link (kernel 6.6), updated in place like ``link``.
* ``struct_ops``: a ``SEC(".struct_ops.link")`` map; a switch registers the new version's map.
* ``dispatch``: hooks whose links cannot be updated (tracepoint, raw
  tracepoint, uprobe/kprobe, perf_event): a dispatcher on the hook tail-calls
  the program in slot 0 of its PROG_ARRAY; a switch is one slot update.
"""

from pybpf.upgrade.attach.base import KINDS, Attachment, Hook, LinkPinned, attach, from_manifest, register
from pybpf.upgrade.attach.dispatch import DISPATCHERS, DispatchAttachment
from pybpf.upgrade.attach.link import LINK_UPDATE_TYPES, LinkAttachment
from pybpf.upgrade.attach.struct_ops import StructOpsAttachment
from pybpf.upgrade.attach.tcx import TcxAttachment

__all__ = ["DISPATCHERS", "KINDS", "LINK_UPDATE_TYPES", "Attachment", "DispatchAttachment", "Hook",
           "LinkAttachment", "LinkPinned", "StructOpsAttachment", "TcxAttachment", "attach", "from_manifest",
           "register"]
