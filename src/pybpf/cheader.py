"""C header output of BTF through libbpf's ``btf_dump`` API.

This is what generates the committed ``vmlinux/vmlinux.h``::

    python -m pybpf.cheader --kernel > vmlinux/vmlinux.h

Types are emitted by libbpf (the same engine ``bpftool btf dump ... format c``
uses); this module adds the header guard and the ``preserve_access_index``
pragma that makes every struct access in BPF C a CO-RE relocation. A whole header
ends, as bpftool >= 7.5's does, with an ``extern ... __weak __ksym;`` prototype for
each kernel function the BTF tags ``bpf_kfunc`` (pahole's ``decl_tag_kfuncs``), under
``#ifndef BPF_NO_KFUNC_PROTOTYPES``, so BPF C can call kfuncs without declaring them.
"""

from __future__ import annotations

import argparse
import os
import sys

from pybpf._sys import btfdump as _btfdump
from pybpf.btf.types import KERNEL_BTF_PATH, Btf
from pybpf.btf.validate import padding_bits
from pybpf.errors import ObjectFormatError

__all__ = ["dump_c", "KERNEL_BTF"]

KERNEL_BTF = KERNEL_BTF_PATH
# libbpf writes one `long: 64;` line per 8 bytes of padding (vmlinux needs about 8,000).
MAX_PADDING_LINES = 1 << 20

_PROLOGUE = """\
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif

#ifndef __weak
#define __weak __attribute__((weak))
#endif

#ifndef __bpf_fastcall
#if __has_attribute(bpf_fastcall)
#define __bpf_fastcall __attribute__((bpf_fastcall))
#else
#define __bpf_fastcall
#endif
#endif

"""
_EPILOGUE = """
#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
"""


def dump_c(path: str = KERNEL_BTF, *, type_names: list[str] | None = None,
           guard: bool = True) -> str:
    """The C declarations of every type in the BTF of ``path`` (or only ``type_names``
    and what they depend on), as libbpf's btf_dump writes them."""
    if os.path.realpath(path) != KERNEL_BTF:
        # libbpf's btf_dump trusts its input (NULL names, cycles crash it): check first.
        pure = Btf.from_file(path)
        pure.validate()
        lines = padding_bits(pure) // 64
        if lines > MAX_PADDING_LINES:
            raise ObjectFormatError(f"{path}: its structs need {lines} lines of padding in C "
                                    f"(more than {MAX_PADDING_LINES}): members or sizes far past "
                                    f"their contents; use --format json", path=path)
    # formatted by libbpf in C, into one buffer; a whole header ends with the kfunc prototypes
    text = _btfdump.dump_c(path, type_names, kfuncs=guard and not type_names)
    body = text.decode("utf-8", "replace")
    return _PROLOGUE + body + _EPILOGUE if guard else body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.cheader", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="raw BTF file or .bpf.o (default: the kernel's)")
    parser.add_argument("--kernel", action="store_true", help=f"dump {KERNEL_BTF}")
    args = parser.parse_args(argv)
    sys.stdout.write(dump_c(KERNEL_BTF if args.kernel or not args.file else args.file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
