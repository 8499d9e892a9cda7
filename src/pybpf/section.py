"""Global variables of a BPF object (``.bss``, ``.data``, ``.rodata``, ``.data.*``).

Before load, reads return copies of the initial image and writes set it
(typed and range-checked from BTF). After load, ``section[name]`` is a
zero-copy numpy view over a Python-owned mmap of the section's internal map:
0-d for scalars (``int()`` reads it live), n-d for arrays, records for
structs. ``.rodata`` is frozen by libbpf at load and so becomes read-only.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import numpy as np

from pybpf._sys.libbpf import ffi, lib
from pybpf.btf.plain import int_format
from pybpf.btf.types import Btf, Variable
from pybpf.kinds import ObjectState
from pybpf.errors import BpfError, NotSupportedError
from pybpf.maps.views import MappedMap
from pybpf.maps.codec import to_array

if TYPE_CHECKING:
    import numpy.typing as npt

    from pybpf.maps.map import Map


class SectionOwner(Protocol):
    """What a global-variable section needs of its object (``pybpf.Object`` is one)."""

    name: str

    @property
    def btf(self) -> Btf | None: ...

    @property
    def state(self) -> ObjectState: ...

    def check_open(self) -> None: ...

    def require_state(self, wanted: ObjectState, doing: str) -> None: ...

    @property
    def _lock(self) -> threading.RLock: ...

__all__ = ["Section"]

T = TypeVar("T")


class Section:
    """The variables of one data section, by name."""

    def __init__(self, obj: SectionOwner, section: str, map_: Map | None) -> None:
        self._obj = obj
        self.section = section
        self.map = map_
        self._mapping: MappedMap | None = None
        self._variables: dict[str, Variable] | None = None

    def __repr__(self) -> str:
        return f"<Section {self.section} of {self._obj.name}: {list(self.variables)}>"

    @property
    def variables(self) -> dict[str, Variable]:
        """The section's variables by name (offsets and types from BTF)."""
        if self._variables is None:
            btf = self._obj.btf
            found: list[Variable] = []
            if btf is not None:
                try:
                    found = btf.datasec(self.section)
                except KeyError:
                    found = []
            self._variables = {v.name: v for v in found}
        return self._variables

    def __contains__(self, name: object) -> bool:
        return name in self.variables

    def __iter__(self) -> Iterator[str]:
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    def keys(self) -> list[str]:
        """The variable names."""
        return list(self.variables)

    def _variable(self, name: str) -> Variable:
        self._obj.check_open()
        try:
            return self.variables[name]
        except KeyError:
            known = ", ".join(self.variables) or "none"
            raise KeyError(f"{self.section} of {self._obj.name} has no variable {name!r} "
                           f"(variables: {known})") from None

    def dtype_of(self, name: str) -> np.dtype:
        """The numpy dtype of variable ``name``."""
        var = self._variable(name)
        btf = self._obj.btf
        assert btf is not None  # a variable implies BTF
        dtype = btf.dtype(var.type_id)
        if dtype.itemsize != var.size:  # should not happen; never guess a layout
            raise BpfError(f"{self.section}.{name}: BTF type size {dtype.itemsize} != variable size "
                           f"{var.size}")
        return dtype

    def _require_map(self) -> Map:
        if self.map is None:
            raise BpfError(f"{self._obj.name} has no {self.section} section")
        return self.map

    # ---- before load: the initial image ------------------------------

    def _initial_image(self) -> Any:
        map_ = self._require_map()
        size = ffi.new("size_t *")
        ptr = lib.bpf_map__initial_value(map_._ptr, size)
        if ptr == ffi.NULL:
            raise BpfError(f"{self.section} has no initial image", errno.ENOENT)
        return ffi.buffer(ptr, size[0])

    # ---- after load: the live mapping ----------------------------------

    def _mapped(self) -> MappedMap:
        """The section's mapping, made on first use (call with the object's lock held)."""
        map_ = self._require_map()
        if self._mapping is None or self._mapping.closed:
            writable = not self.section.startswith((".rodata", ".kconfig"))  # both frozen by libbpf
            if not map_.flags & (1 << 10):
                raise NotSupportedError(
                    f"{self.section} of {self._obj.name} is not mmapable (BPF_F_MMAPABLE missing)",
                    errno.EINVAL, feature="BPF_F_MMAPABLE")
            with map_.fd_ref() as fd:  # the number is this map's until the mmap holds its own
                self._mapping = MappedMap(fd, map_.value_size, 1, writable=writable,
                                          what=f"{self.section} of {self._obj.name}")
        return self._mapping

    def _exported(self, export: Callable[[MappedMap], T]) -> T:
        """``export(mapping)`` with the object held: Object.close() releases the mappings under
        the same lock, so a view is made before (and keeps its mapping alive) or refused."""
        with self._obj._lock:
            self._obj.check_open()
            return export(self._mapped())

    def __getitem__(self, name: str) -> Any:
        var = self._variable(name)
        dtype = self.dtype_of(name)
        if self._obj.state is ObjectState.OPEN:
            with self._obj._lock:  # close() in another thread frees the image
                if self._obj.state is ObjectState.OPEN:
                    raw = bytes(self._initial_image()[var.offset:var.offset + var.size])
                    return np.frombuffer(raw, dtype=dtype).reshape(()) if not dtype.shape else \
                        np.frombuffer(raw, dtype=dtype.base).reshape(dtype.shape)
        self._obj.check_open()
        if dtype.shape:  # a C array: n-d view of its element type
            return self._exported(lambda m: m.array(dtype.base, shape=dtype.shape, offset=var.offset))
        return self._exported(lambda m: m.scalar(dtype, var.offset))

    def __setitem__(self, name: str, value: Any) -> None:
        if self.section == ".kconfig":
            raise BpfError(f".kconfig.{name} is a __kconfig extern: libbpf fills it at load from the "
                           f"kernel's configuration, so it cannot be set")
        var = self._variable(name)
        what = f"{self.section}.{name}"
        fmt = int_format(self._obj.btf, var.type_id) if type(value) in (int, bool) else None  # type: ignore[arg-type]
        if fmt is not None and fmt.size == var.size:  # a tool's settings before load: no numpy
            data = fmt.encode(value, what)
        else:
            data = to_array(value, self.dtype_of(name), what).tobytes()
        if self._obj.state is ObjectState.OPEN:
            with self._obj._lock:  # close() or load() in another thread frees or uses the image
                if self._obj.state is ObjectState.OPEN:
                    image = self._initial_image()
                    image[var.offset:var.offset + var.size] = data
                    return
        self._obj.check_open()  # closed since _variable() looked: not "read-only after load"
        if self.section.startswith((".rodata", ".kconfig")):
            raise BpfError(f"{self.section}.{name} is read-only after load (libbpf freezes .rodata; "
                           f"set it before load())")
        view = self._exported(lambda m: m.array(np.dtype(np.uint8), shape=(var.size,), offset=var.offset))
        view[:] = np.frombuffer(data, dtype=np.uint8)

    def view(self) -> np.ndarray:
        """The whole section as one live record (fields = variables)."""
        self._obj.require_state(ObjectState.LOADED, f"a view of {self.section}")
        names, formats, offsets = [], [], []
        for name, var in self.variables.items():
            names.append(name)
            formats.append(self.dtype_of(name))
            offsets.append(var.offset)
        size = self._require_map().value_size
        # cast: numpy 2.5's stubs (Python >= 3.12) take a dtype dict only as their TypedDict
        dtype = np.dtype(cast("npt.DTypeLike", {"names": names, "formats": formats, "offsets": offsets,
                                                "itemsize": size}))
        return self._exported(lambda m: m.scalar(dtype, 0))

    def bytes(self) -> bytes:
        """A copy of the section's current bytes."""
        if self._obj.state is ObjectState.OPEN:
            with self._obj._lock:
                if self._obj.state is ObjectState.OPEN:
                    return bytes(self._initial_image())
        self._obj.check_open()
        size = self._require_map().value_size
        return self._exported(lambda m: bytes(m.raw()[:size]))

    def _release(self) -> None:
        if self._mapping is not None:
            self._mapping.try_close()  # views still alive keep it mapped
            self._mapping = None

