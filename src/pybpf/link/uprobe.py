"""uprobes and uretprobes on user-space functions, by symbol name or file offset."""

from __future__ import annotations

from pybpf._sys.libbpf import capture, ffi, lib, new_opts
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link
from pybpf.link.symbols import resolve_binary

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget, binary: str, func: str | int, *, pid: int = -1, retprobe: bool = False,
           cookie: int = 0) -> LibbpfLink:
    """Attach to a function of ``binary`` (a path, or a library name such as ``libc.so.6``
    resolved through this process's maps and ldconfig) by name or by file offset;
    ``pid=-1`` means every process."""
    path = resolve_binary(binary)
    func_name = c_name = None
    offset = 0
    if isinstance(func, str):
        c_name = ffi.new("char[]", func.encode())
        func_name = func
    else:
        offset = int(func)
    opts = new_opts("struct bpf_uprobe_opts", retprobe=retprobe, bpf_cookie=cookie)
    if c_name is not None:
        opts.func_name = c_name  # c_name stays referenced until the call returns
    with capture() as log:
        ptr = lib.bpf_program__attach_uprobe_opts(prog.libbpf_program(), pid, path.encode(), offset, opts)
    kind = "uretprobe" if retprobe else "uprobe"
    return libbpf_link(prog, ptr, f"{kind} {path}:{func_name or hex(offset)}", log.text)


KIND = declared("uprobe")
