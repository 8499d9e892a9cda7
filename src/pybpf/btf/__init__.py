"""Pure BTF: parsing, the type graph, numpy dtypes and ``.BTF.ext``.

Never imports :mod:`pybpf._sys`: everything here works without libbpf or a kernel.
"""

from pybpf.btf.types import KERNEL_BTF_PATH, KIND_NAMES, Bitfield, Btf, BtfType, Variable, raw_dtype

__all__ = ["KERNEL_BTF_PATH", "KIND_NAMES", "Bitfield", "Btf", "BtfType", "Variable", "raw_dtype"]
