"""uprobe_multi: one bpf_link on many functions of one binary (kernel 6.6), each with a cookie.

The program is a kprobe-type program with expected attach type ``trace_uprobe_multi``
(``SEC("uprobe.multi/...")``); ``bpf_get_attach_cookie()`` tells which function fired.
libbpf 1.3 and later attach it (``bpf_program__attach_uprobe_multi``); with an older libbpf
pybpf finds the functions' file offsets in the ELF file itself and makes the
``BPF_LINK_CREATE``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pybpf._sys import bpfsys
from pybpf._sys.libbpf import capture, ffi, has_symbol, lib, new_opts
from pybpf.link import declared, parse_uprobe_multi_section as parse_section
from pybpf.link.base import AttachTarget, BpfLink, fd_link, libbpf_link
from pybpf.link.symbols import function_offsets, resolve_binary

__all__ = ["KIND", "attach", "parse_section", "uses_libbpf"]


def uses_libbpf() -> bool:
    """Whether the system libbpf attaches uprobe_multi links (1.3 and later) or pybpf's own bpf(2) does."""
    return has_symbol("bpf_program__attach_uprobe_multi")


def attach(prog: AttachTarget, binary: str, functions: str | Sequence[str | int], *, pid: int = -1,
           retprobe: bool = False, cookies: Sequence[int] | None = None) -> BpfLink:
    """Attach to the functions of ``binary`` (a path or a library name) that match the glob
    ``functions`` (``"handle_*"``, ``fnmatch`` rules), or to each function named (or file offset
    given) in a list;
    ``cookies`` (with a list: one per function) is what ``bpf_get_attach_cookie()`` returns for
    each. ``pid=-1``: every process."""
    path = resolve_binary(binary)
    pattern = functions if isinstance(functions, str) else None
    targets = None if pattern is not None else list(functions)  # type: ignore[arg-type]
    if targets is not None and not targets:
        raise ValueError("attach_uprobe_multi needs at least one function")
    if cookies is not None:
        if targets is None:
            raise ValueError("cookies= needs a list of functions, not a pattern (one cookie per function)")
        if len(cookies) != len(targets):
            raise ValueError(f"{len(cookies)} cookies for {len(targets)} functions")
    kind = "uretprobe.multi" if retprobe else "uprobe.multi"
    what = f"{kind} {path}:{pattern if pattern is not None else f'{len(targets or ())} functions'}"
    names = [t for t in targets or () if isinstance(t, str)]
    if targets is not None and names and len(names) != len(targets):
        raise TypeError("give either function names or file offsets, not both")
    # Functions are found here on every release, so a glob means the same everywhere (libbpf's
    # knows only * and ?) and an error names what the binary lacks; libbpf makes the link.
    if names or pattern is not None:
        offsets = [offset for _, offset in function_offsets(path, pattern if pattern is not None else names)]
    else:
        offsets = [int(t) for t in targets or ()]
    if uses_libbpf():
        c_offsets = ffi.new("unsigned long[]", offsets)
        c_cookies = ffi.new("__u64[]", list(cookies)) if cookies is not None else ffi.NULL
        opts = new_opts("struct bpf_uprobe_multi_opts", retprobe=retprobe, cnt=len(offsets))
        opts.offsets = c_offsets  # both arrays stay referenced (locals) until the call returns
        opts.cookies = c_cookies
        with capture() as log:
            ptr = lib.bpf_program__attach_uprobe_multi(prog.libbpf_program(), pid, path.encode(), ffi.NULL, opts)
        return libbpf_link(prog, ptr, what, log.text)
    ret = bpfsys.link_create_uprobe_multi(prog.fd, path, offsets, cookies=cookies, pid=pid, retprobe=retprobe)
    return fd_link(prog, ret, what)


KIND = declared("uprobe_multi")
