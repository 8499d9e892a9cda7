"""perf_event programs on a perf event fd the caller opened (``perf_event_open``)."""

from __future__ import annotations

import errno
import os

from pybpf._sys.libbpf import capture, ffi, lib
from pybpf.errors import BpfError
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, attach_error

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget, perf_fd: int) -> LibbpfLink:
    """Attach to a perf event fd. The caller keeps its fd; the link holds a dup."""
    try:
        dup = os.dup(perf_fd)
    except OSError as exc:
        raise BpfError(f"attaching {prog.name!r}: perf event fd {perf_fd} is not open", exc.errno) from None
    with capture() as log:
        ptr = lib.bpf_program__attach_perf_event(prog.libbpf_program(), dup)
    if ptr == ffi.NULL:
        err = ffi.errno
        os.close(dup)
        raise attach_error(prog, err or errno.EINVAL, f"perf event fd {perf_fd}", log.text)
    return LibbpfLink(ptr, f"{prog.name} -> perf event fd {perf_fd}")


KIND = declared("perf_event")
