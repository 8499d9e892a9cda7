"""Construction of maps that own their fd, mixed into ``Map``.

``Map.create`` makes a new map with ``bpf_map_create``; ``from_fd``,
``from_pin`` and ``from_id`` wrap an existing one. Each ends in ``from_fd``,
which reads the map's kernel info (and its BTF, when it has some, to type
keys and values) and hands the handle the fd to close. Maps that belong to
an ``Object`` are built by the object instead and borrow libbpf's fd.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.btf.types import Btf
from pybpf.errors import BpfError, WrongMapTypeError
from pybpf.kernel.info import MapInfo, map_flag_names, map_info
from pybpf.kinds import MapFlag, MapType
from pybpf.maps.checks import check_map_name, element_size, parse_flags

if TYPE_CHECKING:
    from pybpf.maps.map import Map

__all__ = ["DTypeLike", "MapConstructors"]

DTypeLike = Any  # anything np.dtype() accepts

# Pre-3.11 spelling of Self: Map.create() etc. are typed as returning a Map.
_M = TypeVar("_M", bound="MapConstructors")


class MapConstructors:
    """``create``/``from_fd``/``from_pin``/``from_id`` for ``Map``."""

    if TYPE_CHECKING:  # what the mixin uses of Map
        def __init__(self, *, name: str, fd: int = -1, btf: Btf | None = None, key_type_id: int = 0,
                     value_type_id: int = 0, key_dtype: DTypeLike = None, value_dtype: DTypeLike = None,
                     info: MapInfo | None = None) -> None: ...
        @property
        def fd(self) -> int: ...

    @classmethod
    def create(cls: type[_M], map_type: str | int, *,  # noqa: PYI019 (python 3.10 has no typing.Self)
               key_dtype: DTypeLike = None, key_size: int | None = None,
               value_dtype: DTypeLike = None, value_size: int | None = None, max_entries: int,
               flags: int | str | Iterable[str] = 0, name: str = "",
               inner_map: Map | int | None = None, map_extra: int = 0) -> _M:
        """A new map made with ``bpf_map_create`` (no BTF: give dtypes to get typed values).

        ``map_type`` is a name (``"hash"``, ``"array"``...) or number; ``flags``
        an int or names (``"mmapable"``, ``"no_prealloc"``...); ``inner_map`` is
        the template of an ``array_of_maps``/``hash_of_maps``. An ``lpm_trie``
        gets ``BPF_F_NO_PREALLOC``, which the kernel requires.
        """
        type_num = MapType.parse(map_type)
        k_size = element_size(key_dtype, key_size, "key")
        v_size = element_size(value_dtype, value_size, "value")
        flag = parse_flags(flags)
        if type_num is MapType.LPM_TRIE:
            flag |= MapFlag.NO_PREALLOC
        check_map_name(name)
        if max_entries <= 0 and not type_num.sized_in_bytes:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        # Every Map is a MapConstructors (Map itself cannot be imported here: maps imports us).
        inner_fd = inner_map.fd if isinstance(inner_map, MapConstructors) else int(inner_map or 0)
        opts = _libbpf.new_opts("struct bpf_map_create_opts", map_flags=flag, map_extra=map_extra,
                                inner_map_fd=inner_fd)
        type_label = type_num.c_name
        fd = _libbpf.check(lib.bpf_map_create(type_num, name.encode() or ffi.NULL, k_size, v_size,
                                              max_entries, opts),
                           f"creating {type_label} map {name!r} (key {k_size} B, value {v_size} B, "
                           f"max_entries {max_entries}, flags {map_flag_names(flag)})")
        try:
            return cls.from_fd(fd, dup=False, key_dtype=key_dtype, value_dtype=value_dtype)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_fd(cls: type[_M], fd: int, *, dup: bool = True,  # noqa: PYI019 (as create)
                key_dtype: DTypeLike = None,
                value_dtype: DTypeLike = None) -> _M:
        """Wrap a map fd; with ``dup`` (the default) the caller keeps its own fd."""
        try:
            own = os.dup(fd) if dup else fd
        except OSError as exc:
            raise BpfError(f"fd {fd} is not open", exc.errno) from None
        try:
            _require_map_fd(own, fd)
            info = map_info(own)
            btf = _load_kernel_btf(info.btf_id) if info.btf_id else None
            return cls(name=info.name or f"id:{info.id}", fd=own, btf=btf, key_type_id=info.btf_key_type_id,
                       value_type_id=info.btf_value_type_id, key_dtype=key_dtype,
                       value_dtype=value_dtype, info=info)
        except BaseException:
            os.close(own)
            raise

    @classmethod
    def from_pin(cls: type[_M], path: str, *,  # noqa: PYI019 (as create)
                 key_dtype: DTypeLike = None, value_dtype: DTypeLike = None) -> _M:
        """Open the map pinned at ``path`` in a bpffs."""
        fd = _libbpf.check(lib.bpf_obj_get(os.fsencode(path)), f"opening pinned map {path}",
                           overrides={errno.ENOENT: lambda w, e, l: BpfError(f"{w}: no such pin", e)})
        return cls.from_fd(fd, dup=False, key_dtype=key_dtype, value_dtype=value_dtype)

    @classmethod
    def from_id(cls: type[_M], map_id: int, *,  # noqa: PYI019 (as create)
                key_dtype: DTypeLike = None, value_dtype: DTypeLike = None) -> _M:
        """Open the map with kernel id ``map_id`` (needs CAP_SYS_ADMIN)."""
        fd = _libbpf.check(lib.bpf_map_get_fd_by_id(map_id), f"opening map id {map_id}",
                           capability="CAP_SYS_ADMIN",
                           overrides={errno.ENOENT: lambda w, e, l: BpfError(f"{w}: no such map", e)})
        return cls.from_fd(fd, dup=False, key_dtype=key_dtype, value_dtype=value_dtype)


_FD_KINDS = {"anon_inode:bpf-prog": "a BPF program", "anon_inode:bpf_link": "a BPF link",
             "anon_inode:btf": "a BTF object"}


def _require_map_fd(fd: int, shown: int) -> None:
    """BPF_OBJ_GET_INFO_BY_FD fills whatever the fd is: check it is a map first."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return  # no /proc: the kernel's own checks are all we have
    if target != "anon_inode:bpf-map":
        what = _FD_KINDS.get(target, target)
        raise WrongMapTypeError(f"fd {shown} is {what}, not a BPF map")


def _load_kernel_btf(btf_id: int) -> Btf | None:
    """The map's BTF as the kernel holds it (by id), parsed; None if it is gone."""
    ptr = lib.btf__load_from_kernel_by_id(btf_id)
    if ptr == ffi.NULL:
        return None
    try:
        size = ffi.new("__u32 *")
        raw = lib.btf__raw_data(ptr, size)
        return Btf.from_bytes(bytes(ffi.buffer(raw, size[0])))
    finally:
        lib.btf__free(ptr)
