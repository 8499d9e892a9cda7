"""Map state across versions: which maps of a new object reuse the old kernel map, which migrate.

``plan_maps`` decides, before the new object is loaded, for every map of the
new object:

* ``reuse``: same name, type, key and value size, max_entries, flags, and (when
  both have BTF) the same value layout: the new object takes the old kernel
  map (``bpf_map__reuse_fd``), so nothing is copied and nothing is lost;
* ``migrate``: same name and type, the value struct changed (members added,
  removed, reordered, integers widened) or the size/flags/max_entries did: the
  new map is created fresh and, after the new version has passed the verifier,
  filled from the old one by BTF member name (``convert``) through batch ops;
* ``fresh``: no old map of that name, or a stateless kind (ring buffers...);
* otherwise a ``MapMismatchError`` naming the map and the difference.

Globals (``.bss``, ``.data``) are matched by section and migrate by variable
name (a DATASEC is a struct of variables); ``.rodata`` values are carried into
the new object before load, by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pybpf.errors import MapMismatchError
from pybpf.maps.map import Map

__all__ = ["STATELESS", "MapPlan", "MigrateOption", "Migrator", "convert", "converter", "copy_entries", "copy_section",
           "plan_map"]

# (old keys, old values) -> (keys, values) in the new map's dtypes
Migrator = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]
# True: migrate automatically where possible; False: reuse only; a mapping: per-map migrators
MigrateOption = bool | Mapping[str, Migrator]

# Kinds that hold no state worth carrying (or none user space can read): a fresh map is fine.
STATELESS = {"ringbuf", "user_ringbuf", "perf_event_array", "prog_array", "cgroup_array", "stack_trace",
             "devmap", "devmap_hash", "cpumap", "xskmap", "sockmap", "sockhash", "reuseport_sockarray",
             "struct_ops", "array_of_maps", "hash_of_maps"}
# Kinds whose entries migrate through lookup_batch/update_batch (or the per-key fallback).
MIGRATABLE = {"hash", "array", "lru_hash", "percpu_hash", "percpu_array", "lru_percpu_hash", "lpm_trie"}


@dataclass
class MapPlan:
    """What happens to one map of the new version."""

    name: str
    action: str                   # "reuse", "migrate" or "fresh"
    old: Map | None = None
    new: Map | None = None
    why: str = ""                 # for migrate/fresh: what changed
    migrator: Migrator | None = None
    entries: int = 0              # migrated entries, filled in by copy_entries
    merged: dict[str, Any] | None = None  # what the exact merge did (merge.MergeResult)


def _facts(m: Map) -> dict[str, Any]:
    return {"type": m.type, "key_size": m.key_size, "value_size": m.value_size,
            "max_entries": m.max_entries, "flags": m.flags}


def _layout(dtype: np.dtype) -> Any:
    """A comparable description of a dtype: names, offsets and formats, recursively."""
    fields = dtype.fields
    if dtype.names and fields is not None:
        return tuple((name, fields[name][1], _layout(fields[name][0])) for name in dtype.names)
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return ("array", shape, _layout(base))
    return dtype.str


def plan_map(name: str, old: Map | None, new: Map, migrate: MigrateOption) -> MapPlan:
    """Decide reuse/migrate/fresh for map ``name`` (``new`` is in an object not yet loaded)."""
    custom = migrate.get(name) if isinstance(migrate, Mapping) else None
    if old is None:
        return MapPlan(name, "fresh", None, new, "not in the old version")
    before, after = _facts(old), _facts(new)
    if before["type"] != after["type"]:
        if custom is not None:
            return MapPlan(name, "migrate", old, new, f"type {before['type']} -> {after['type']}", custom)
        raise MapMismatchError(name, f"the map type changed from {before['type']} to {after['type']}")
    changed = [f"{k} {before[k]} -> {after[k]}" for k in before if before[k] != after[k]]
    same_layout = _layout(old.value_dtype) == _layout(new.value_dtype) and \
        _layout(old.key_dtype) == _layout(new.key_dtype)
    if not changed and (same_layout or before["type"] in STATELESS) and custom is None:
        return MapPlan(name, "reuse", old, new)
    if not same_layout and not changed:
        changed.append("value layout changed")
    elif not same_layout:
        changed.append("value layout")
    why = ", ".join(changed)
    if custom is not None:
        return MapPlan(name, "migrate", old, new, why, custom)
    if before["type"] in STATELESS:
        return MapPlan(name, "fresh", old, new, f"{why} ({before['type']} maps hold no state to carry)")
    if migrate is False:
        raise MapMismatchError(name, f"{why}: carrying it needs a migration, and migrate=False")
    if before["type"] not in MIGRATABLE:
        raise MapMismatchError(name, f"{why}: {before['type']} maps cannot be migrated")
    if before["key_size"] != after["key_size"] or _layout(old.key_dtype) != _layout(new.key_dtype):
        try:
            convert(np.zeros(1, old.key_dtype), new.key_dtype, f"key of {name}")
        except MapMismatchError as exc:
            raise MapMismatchError(name, f"the key changed ({exc.difference}); give a migrate= function "
                                         f"for this map") from None
    # fail now, before load, if the values cannot convert by name
    try:
        convert(np.zeros(1, old.value_dtype), new.value_dtype, "value")
    except MapMismatchError as exc:
        raise MapMismatchError(name, exc.difference) from None
    return MapPlan(name, "migrate", old, new, why)


def convert(old: np.ndarray, new_dtype: np.dtype, where: str = "value") -> np.ndarray:
    """``old`` converted to ``new_dtype`` member by member, by name.

    Members only in the new type are zero, members only in the old one are
    dropped; integers may widen (and narrow only if every value fits); arrays
    may grow (their tail is zero). Anything else raises ``MapMismatchError``."""
    out = np.zeros(old.shape, new_dtype)
    _copy(old, out, where)
    return out


def _copy(src: np.ndarray, dst: np.ndarray, where: str) -> None:
    s_dtype, d_dtype = src.dtype, dst.dtype
    if d_dtype.names or s_dtype.names:
        if not (d_dtype.names and s_dtype.names):
            raise MapMismatchError(where, f"{where} is a struct in one version and not in the other")
        for name in d_dtype.names:
            if name in s_dtype.names:
                _copy(src[name], dst[name], f"{where}.{name}")
        return
    if s_dtype.subdtype is not None or d_dtype.subdtype is not None:
        raise MapMismatchError(where, f"{where}: unexpected nested array dtype")  # numpy unfolds these
    if src.shape != dst.shape:  # array members (numpy unfolds them into axes): they may grow
        if src.ndim != dst.ndim or any(a > b for a, b in zip(src.shape, dst.shape)):
            raise MapMismatchError(where, f"{where}: array shape {src.shape[1:]} cannot become {dst.shape[1:]}")
        index = tuple(slice(0, n) for n in src.shape)
        _copy(src, dst[index], where)
        return
    if s_dtype.kind in "iub" and d_dtype.kind in "iub":
        if not np.can_cast(s_dtype, d_dtype, "safe") and src.size:
            info = np.iinfo(d_dtype) if d_dtype.kind != "b" else None
            if info is not None and (src.min() < info.min or src.max() > info.max):
                raise MapMismatchError(where, f"{where}: {s_dtype} values do not fit in {d_dtype}")
        dst[...] = src
        return
    if s_dtype.kind in "iuf" and d_dtype.kind == "f":
        dst[...] = src
        return
    if s_dtype == d_dtype or (s_dtype.kind == d_dtype.kind == "V" and s_dtype.itemsize <= d_dtype.itemsize):
        if s_dtype == d_dtype:
            dst[...] = src
        else:
            dst.view(np.uint8).reshape(dst.shape + (d_dtype.itemsize,))[..., :s_dtype.itemsize] = \
                src.view(np.uint8).reshape(src.shape + (s_dtype.itemsize,))
        return
    raise MapMismatchError(where, f"{where}: {s_dtype} cannot become {d_dtype}")


def converter(plan: MapPlan) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(old keys, old values) -> (keys, values) of the new map: the plan's migrate= function, or by name."""
    old, new = plan.old, plan.new
    assert old is not None and new is not None
    if plan.name.startswith("."):  # a global section: one value, key 0, variables by name
        def section(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return keys, convert(values, new.value_dtype, plan.name)
        return section
    if plan.migrator is not None:
        return plan.migrator

    def by_name(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (convert(keys, new.key_dtype, f"key of {plan.name}"),
                convert(values, new.value_dtype, f"value of {plan.name}"))
    return by_name


def copy_entries(plan: MapPlan) -> tuple[np.ndarray, np.ndarray]:
    """Fill the new map from the old one (after the new object loaded); returns what was written."""
    old, new = plan.old, plan.new
    assert old is not None and new is not None
    keys, values = converter(plan)(*old.lookup_batch())
    if new.type in ("array", "percpu_array"):
        limit = new.max_entries
        keep = keys.astype(np.int64) < limit if keys.dtype.kind in "iu" else np.ones(len(keys), bool)
        dropped = values[~keep]
        if dropped.size and dropped.view(np.uint8).any():
            raise MapMismatchError(plan.name, f"max_entries shrank to {limit}: entries at indices >= {limit} "
                                              f"hold data")
        keys, values = keys[keep], values[keep]
    elif len(keys) > new.max_entries:
        raise MapMismatchError(plan.name, f"{len(keys)} entries do not fit in max_entries {new.max_entries}")
    if len(keys):
        new.update_batch(keys, values)
    plan.entries = len(keys)
    return keys, values


def copy_section(plan: MapPlan) -> tuple[np.ndarray, np.ndarray]:
    """Globals of one data section (.bss/.data) carried by variable name; returns what was written."""
    old, new = plan.old, plan.new
    assert old is not None and new is not None
    before = np.asarray(old.lookup(bytes(old.key_size))).reshape(1)  # key 0; internal maps have no BTF key
    keys, after = converter(plan)(np.zeros(1, np.uint32), before)
    new.update(bytes(new.key_size), after[0])
    common = set(old.value_dtype.names or ()) & set(new.value_dtype.names or ())
    plan.entries = len(common)
    return keys, after
