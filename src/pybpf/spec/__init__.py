"""Pure object specs: what a ``.bpf.o`` contains, read from its ELF, ``.BTF`` and ``.BTF.ext``.

Never imports :mod:`pybpf._sys`: ``pybpf inspect`` runs on a machine without libbpf.
"""

from pybpf.spec.elf import *  # noqa: F401,F403
from pybpf.spec.elf import __all__  # noqa: F401
