"""BPF iterators (``SEC("iter/...")``): each ``IterLink.read()`` runs the iterator once."""

from __future__ import annotations

import os
from typing import Any

from pybpf._sys.libbpf import capture, check, ffi, lib, new_opts
from pybpf.link import declared, is_iterator_section
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link

__all__ = ["KIND", "IterLink", "attach", "is_iterator"]


class IterLink(LibbpfLink):
    """A BPF iterator link; each ``read()`` runs the iterator once."""

    def read(self) -> bytes:
        """Run the iterator and return everything it wrote."""
        with self.held() as ptr:  # the link fd stays open until the iterator's own fd exists
            fd = check(lib.bpf_iter_create(lib.bpf_link__fd(ptr)), f"creating iterator for {self.description}")
        chunks = []
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def read_text(self) -> str:
        """``read()`` decoded as UTF-8 (bad bytes replaced)."""
        return self.read().decode("utf-8", "replace")


def is_iterator(prog: AttachTarget) -> bool:
    """Whether ``prog`` is an iterator (which ``attach()`` attaches with :func:`attach`)."""
    return is_iterator_section(prog.prog_type, prog.section)


def attach(prog: AttachTarget, *, map_fd: int | None = None) -> IterLink:
    """Attach an iterator; ``map_fd`` for iterators over one map's elements."""
    keep: tuple[Any, ...] = ()
    if map_fd is None:
        opts = ffi.NULL
    else:
        info = ffi.new("union bpf_iter_link_info *")
        info.map.map_fd = map_fd
        opts = new_opts("struct bpf_iter_attach_opts", link_info=info,
                        link_info_len=ffi.sizeof("union bpf_iter_link_info"))
        keep = (info,)
    with capture() as log:
        ptr = lib.bpf_program__attach_iter(prog.libbpf_program(), opts)
    del keep  # referenced until the call returned
    link = libbpf_link(prog, ptr, f"iterator SEC({prog.section})", log.text, cls=IterLink)
    assert isinstance(link, IterLink)
    return link


KIND = declared("iterator")
