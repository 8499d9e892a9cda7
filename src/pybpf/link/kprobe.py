"""kprobes and kretprobes on kernel functions (absent from kernels without CONFIG_KPROBES)."""

from __future__ import annotations

from pybpf._sys.libbpf import capture, lib, new_opts
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget, func_name: str, *, retprobe: bool = False, offset: int = 0) -> LibbpfLink:
    """Attach to ``func_name`` (+``offset``), on return with ``retprobe``."""
    opts = new_opts("struct bpf_kprobe_opts", retprobe=retprobe, offset=offset)
    with capture() as log:
        ptr = lib.bpf_program__attach_kprobe_opts(prog.libbpf_program(), func_name.encode(), opts)
    kind = "kretprobe" if retprobe else "kprobe"
    return libbpf_link(prog, ptr, f"{kind} {func_name}", log.text)


KIND = declared("kprobe")
