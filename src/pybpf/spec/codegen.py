"""``pybpf gen``: a typed Python module generated from a BPF object's BTF (a skeleton).

This module owns the generator: from an :class:`~pybpf.spec.elf.ObjectSpec` it writes
Python source with

* numpy dtypes of the object's record structs as module constants (``EVENT_DTYPE``);
* one typed wrapper class per record struct (one property per field, typed ``int``,
  ``float``, ``bytes``, ``np.ndarray`` or the nested wrapper), with a ``Literal`` of its
  field names for column access on record arrays (``Event.column(batch, "pid")``);
* one class for the object with a typed attribute per map (``TypedMap[int, Pair]``),
  global (typed property; setter where writable), program and record struct
  (``Counters.struct_pair is Pair``);
* the object itself, embedded (base64) or as a path.

mypy (or an IDE) then catches a misspelt map, global, program or field in a tool's
code. The output depends only on the object's bytes and the options: regenerating
gives the same file byte for byte. Pure: spec and BTF parsing only, no kernel.
"""

from __future__ import annotations

import base64
import hashlib
import keyword
import os
import re
from dataclasses import dataclass, field

import numpy as np

from pybpf.btf.types import Btf
from pybpf.spec.elf import ObjectSpec

__all__ = ["generate"]

_SECTION_ATTR = {".bss": "bss", ".data": "data", ".rodata": "rodata"}
# maps the typed wrapper can front: their values are looked up by key
_KEYED_MAPS = {"hash", "array", "lru_hash", "lpm_trie", "percpu_hash", "percpu_array", "lru_percpu_hash"}
_PERCPU = {"percpu_hash", "percpu_array", "lru_percpu_hash"}
_RESERVED = {"obj", "open", "load", "close", "attach", "maps", "programs", "path", "name"}


def _ident(name: str, taken: set[str] | None = None) -> str:
    out = re.sub(r"\W", "_", name) or "_"
    if out[0].isdigit():
        out = "_" + out
    if keyword.iskeyword(out) or (taken is not None and out in taken):
        out += "_"
    return out


def _camel(name: str) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    out = "".join(p[:1].upper() + p[1:] for p in parts) or "Anon"
    return "_" + out if out[0].isdigit() else out


def _dtype_literal(dt: np.dtype) -> str:
    """Source for ``np.dtype(...)``'s argument that rebuilds ``dt`` exactly."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return f"({_dtype_literal(base)}, {shape!r})"
    if dt.names is None:
        return repr(dt.str)
    fields = dt.fields
    assert fields is not None
    names = list(dt.names)
    formats = ", ".join(_dtype_literal(fields[n][0]) for n in names)
    offsets = ", ".join(str(fields[n][1]) for n in names)
    return (f"{{'names': {names!r}, 'formats': [{formats}], 'offsets': [{offsets}], "
            f"'itemsize': {dt.itemsize}}}")


@dataclass
class _Record:
    cls: str
    c_name: str
    dtype: np.dtype
    const: str
    attr: str = ""
    fields: list[tuple[str, str, str, np.dtype]] = field(default_factory=list)  # (field, attr, pytype, dtype)


class _Gen:
    def __init__(self, spec: ObjectSpec) -> None:
        if spec.btf is None:
            raise ValueError(f"{spec.path or spec.name}: the object has no BTF; pybpf gen needs BTF")
        self.spec = spec
        self.btf: Btf = spec.btf
        self.records: dict[str, _Record] = {}     # by class name, in discovery order
        self._by_dtype: dict[tuple[str, int], str] = {}

    # ---- types ----------------------------------------------------------------------

    def _struct_ids(self, tid: int, seen: set[int], out: list[int], depth: int = 0) -> None:
        """Named structs/unions reachable from ``tid`` through modifiers, pointers, arrays, members."""
        if not tid or tid in seen or depth > 32:
            return
        seen.add(tid)
        t = self.btf[tid]
        if t.kind in ("struct", "union"):
            for _, mtype, _, _ in t.members:
                self._struct_ids(mtype, seen, out, depth + 1)
            if t.name and tid not in out:
                out.append(tid)
        elif t.kind == "array" or t.kind in ("typedef", "const", "volatile", "restrict", "type_tag", "var", "ptr"):
            self._struct_ids(t.type or 0, seen, out, depth + 1)

    def record_for(self, dt: np.dtype, c_name: str) -> str:
        """The wrapper class for record dtype ``dt`` (made on first use)."""
        key = (c_name, id(dt))
        for (name, _), cls in self._by_dtype.items():
            if name == c_name and self.records[cls].dtype == dt:
                return cls
        cls = _camel(c_name)
        base, n = cls, 2
        while cls in self.records:
            cls, n = f"{base}{n}", n + 1
        rec = _Record(cls, c_name, dt, _ident(re.sub(r"(?<!^)(?=[A-Z])", "_", cls).upper() + "_DTYPE"))
        self.records[cls] = rec
        self._by_dtype[key] = cls
        taken = {"dtype", "column", "to_dict", "raw", "FIELDS"}
        assert dt.names is not None and dt.fields is not None
        for fname in dt.names:
            fdt = dt.fields[fname][0]
            rec.fields.append((fname, _ident(fname, taken), self.pytype(fdt, f"{c_name}_{fname}"), fdt))
        return cls

    def pytype(self, dt: np.dtype, c_name: str) -> str:
        if dt.subdtype is not None:
            return "np.ndarray"
        if dt.names is not None:
            return self.record_for(dt, c_name)
        return {"i": "int", "u": "int", "b": "bool", "f": "float", "S": "bytes", "V": "bytes"}.get(dt.kind, "Any")

    def type_name(self, tid: int) -> str:
        tid = self.btf.resolve(tid)
        t = self.btf[tid]
        return t.name or f"anon_{tid}"

    # ---- the module -----------------------------------------------------------------

    def module(self, data: bytes, embed: bool, path: str | None, class_name: str | None) -> str:
        spec = self.spec
        obj_name = spec.name or "bpf"
        cls_name = class_name or _camel(obj_name)
        # discover record structs from maps and globals (in ELF order: deterministic)
        root_ids: list[int] = []
        for m in spec.maps:
            if not m.internal:
                root_ids += [m.key_type_id, m.value_type_id]
        root_ids += [g.type_id for g in spec.globals]
        seen: set[int] = set()
        struct_ids: list[int] = []
        for tid in root_ids:
            self._struct_ids(tid, seen, struct_ids)
        for tid in struct_ids:
            dt = self.btf.dtype(tid)
            if dt.names is not None:
                self.record_for(dt, self.btf[tid].name)

        members: list[str] = []
        names_taken = set(_RESERVED)
        for rec in self.records.values():
            rec.attr = _ident(f"struct_{rec.c_name}", names_taken)
            names_taken.add(rec.attr)
        map_lines = self._maps(members, names_taken)
        global_lines = self._globals(names_taken)
        prog_lines = []
        for p in spec.programs:
            attr = _ident(p.name, names_taken)
            names_taken.add(attr)
            prog_lines += [
                "    @property",
                f"    def {attr}(self) -> pybpf.Program:",
                f'        """Program {p.name} (SEC("{_esc(p.section)}"), {p.prog_type or "unknown type"})."""',
                f"        return self.obj.programs[{p.name!r}]",
                "",
            ]

        out: list[str] = []
        sha = hashlib.sha256(data).hexdigest()
        out += [
            f'"""Typed access to the BPF object {obj_name!r}: generated by `pybpf gen`, do not edit.',
            "",
            f"Object sha256 {sha}.",
            f"Maps: {', '.join(m.name for m in spec.maps if not m.internal) or '-'}.",
            f"Programs: {', '.join(p.name for p in spec.programs) or '-'}.",
            '"""',
            "",
            "# ruff: noqa",
            "from __future__ import annotations",
            "",
        ]
        if embed:
            out.append("import base64")
        out += [
            "from collections.abc import Callable, Iterator",
            "from typing import Any, ClassVar, Generic, Literal, TypedDict, TypeVar",
            "",
            "import numpy as np",
            "",
            "import pybpf",
            "",
            f"__all__ = [{', '.join(repr(n) for n in [cls_name, 'TypedMap', *self.records])}]",
            "",
            f"OBJECT_NAME = {obj_name!r}",
            f"OBJECT_SHA256 = {sha!r}",
        ]
        if embed:
            b64 = base64.b64encode(data).decode()
            out.append("OBJECT_BYTES: bytes = base64.b64decode(")
            for i in range(0, len(b64), 96):
                out.append(f"    {b64[i:i + 96]!r}")
            out.append(")")
            out.append("OBJECT_PATH: str | None = None")
        else:
            out.append("OBJECT_BYTES: bytes | None = None")
            out.append(f"OBJECT_PATH: str | None = {path!r}")
        out.append("")
        for rec in self.records.values():
            out.append(f"{rec.const} = np.dtype({_dtype_literal(rec.dtype)})")
        out += ["", "", *_TYPED_MAP, ""]
        for rec in self.records.values():
            out += self._record_class(rec)
        out += [
            "",
            f"class {cls_name}:",
            f'    """The object {obj_name!r}: one typed attribute per map, global, program and record struct."""',
            "",
        ]
        for rec in self.records.values():
            if not rec.attr:  # a record first met through a map or global
                rec.attr = _ident(f"struct_{rec.c_name}", names_taken)
                names_taken.add(rec.attr)
            out.append(f"    {rec.attr}: ClassVar[type[{rec.cls}]] = {rec.cls}")
        out += [
            "",
            "    def __init__(self, obj: pybpf.Object) -> None:",
            "        self.obj = obj",
            "",
            "    @classmethod",
            f"    def open(cls, **kwargs: Any) -> {cls_name}:",
            '        """``pybpf.open`` of the object (embedded bytes, or its path); kwargs go to ``pybpf.open``."""',
            "        if OBJECT_BYTES is not None:",
            "            kwargs.setdefault('object_name', OBJECT_NAME)",
            "            return cls(pybpf.open(OBJECT_BYTES, **kwargs))",
            "        assert OBJECT_PATH is not None",
            "        return cls(pybpf.open(OBJECT_PATH, **kwargs))",
            "",
            f"    def load(self) -> {cls_name}:",
            "        self.obj.load()",
            "        return self",
            "",
            "    def attach(self) -> list[Any]:",
            "        return list(self.obj.attach())",
            "",
            "    def close(self) -> None:",
            "        self.obj.close()",
            "",
            f"    def __enter__(self) -> {cls_name}:",
            "        return self",
            "",
            "    def __exit__(self, *exc: object) -> None:",
            "        self.close()",
            "",
            "    # ---- maps",
            *map_lines,
            "    # ---- globals",
            *global_lines,
            "    # ---- programs",
            *prog_lines,
        ]
        while out and out[-1] == "":
            out.pop()
        return "\n".join(out) + "\n"

    def _record_class(self, rec: _Record) -> list[str]:
        names = [f for f, _, _, _ in rec.fields]
        lines = [
            f"{rec.cls}Field = Literal[{', '.join(repr(n) for n in names)}]",
            "",
            "",
            f"class {rec.cls}Dict(TypedDict):",
        ]
        for fname, attr, ptype, _ in rec.fields:
            lines.append(f"    {attr}: {ptype + 'Dict' if ptype in self.records else ptype}")
        lines += [
            "",
            "",
            f"class {rec.cls}:",
            f'    """struct {rec.c_name} ({rec.dtype.itemsize} bytes) over one numpy record (a view or a copy)."""',
            "",
            '    __slots__ = ("raw",)',
            f"    dtype: ClassVar[np.dtype] = {rec.const}",
            f"    FIELDS: ClassVar[tuple[str, ...]] = ({', '.join(repr(n) for n in names)}{',' if len(names) == 1 else ''})",
            "",
            "    def __init__(self, raw: Any) -> None:",
            "        self.raw = raw",
            "",
            "    @staticmethod",
            f"    def column(records: np.ndarray, name: {rec.cls}Field) -> np.ndarray:",
            '        """One field of an array of these records (a view)."""',
            "        return records[name]",
            "",
            "    @classmethod",
            f"    def each(cls, records: np.ndarray) -> list[{rec.cls}]:",
            "        return [cls(r) for r in records]",
            "",
            f"    def to_dict(self) -> {rec.cls}Dict:",
            "        return {" + ", ".join(f"{attr!r}: self.{attr}" + (".to_dict()" if ptype in self.records else "")
                                    for _, attr, ptype, _ in rec.fields) + "}",
            "",
            "    def __repr__(self) -> str:",
            f"        return f\"{rec.cls}({{self.to_dict()!r}})\"",
            "",
        ]
        for fname, attr, ptype, fdt in rec.fields:
            getter = {"int": f"int(self.raw[{fname!r}])", "float": f"float(self.raw[{fname!r}])",
                      "bool": f"bool(self.raw[{fname!r}])", "bytes": f"bytes(self.raw[{fname!r}])",
                      "np.ndarray": f"np.asarray(self.raw[{fname!r}])"}.get(ptype, f"{ptype}(self.raw[{fname!r}])")
            lines += [
                "    @property",
                f"    def {attr}(self) -> {ptype}:",
                f"        return {getter}",
                "",
            ]
            if ptype in ("int", "float", "bool", "bytes", "np.ndarray"):
                lines += [
                    f"    @{attr}.setter",
                    f"    def {attr}(self, value: {ptype}) -> None:",
                    f"        self.raw[{fname!r}] = value",
                    "",
                ]
        lines.append("")
        return lines

    def _value_decoder(self, tid: int, c_name: str, percpu: bool) -> tuple[str, str]:
        """(python type, decoder expression) of a map value."""
        if not tid:
            return "Any", "_same"
        dt = self.btf.dtype(tid)
        if percpu or dt.subdtype is not None:
            return "np.ndarray", "_same"
        if dt.names is not None:
            cls = self.record_for(dt, c_name)
            return cls, cls
        ptype = self.pytype(dt, c_name)
        return ptype, {"int": "int", "float": "float", "bool": "bool", "bytes": "bytes"}.get(ptype, "_same")

    def _key_type(self, tid: int) -> str:
        if not tid:
            return "Any"
        dt = self.btf.dtype(tid)
        return "int" if dt.names is None and dt.subdtype is None and dt.kind in "iu" else "Any"

    def _maps(self, members: list[str], taken: set[str]) -> list[str]:
        lines: list[str] = []
        for m in self.spec.maps:
            if m.internal or m.name.startswith("__"):
                continue  # .bss/.data/.rodata are globals; __bpf_* are libbpf's own
            attr = _ident(m.name, taken)
            taken.add(attr)
            doc = f"{m.type} map {m.name}, max_entries {m.max_entries}"
            if m.type in _KEYED_MAPS and m.value_type_id:
                vtype, decode = self._value_decoder(m.value_type_id, self.type_name(m.value_type_id),
                                                    m.type in _PERCPU)
                ktype = self._key_type(m.key_type_id)
                lines += [
                    "    @property",
                    f"    def {attr}(self) -> TypedMap[{ktype}, {vtype}]:",
                    f'        """{doc}: {self.type_name(m.key_type_id)} -> {self.type_name(m.value_type_id)}."""',
                    f"        return TypedMap(self.obj.maps[{m.name!r}], {decode})",
                    "",
                ]
            else:
                lines += [
                    "    @property",
                    f"    def {attr}(self) -> pybpf.Map:",
                    f'        """{doc}."""',
                    f"        return self.obj.maps[{m.name!r}]",
                    "",
                ]
        return lines

    def _globals(self, taken: set[str]) -> list[str]:
        lines: list[str] = []
        for g in self.spec.globals:
            attr = _ident(g.name, taken)
            taken.add(attr)
            section = (f"self.obj.{_SECTION_ATTR[g.section]}" if g.section in _SECTION_ATTR
                       else f"self.obj.section({g.section!r})")
            dt = self.btf.dtype(g.type_id)
            ptype = self.pytype(dt, self.type_name(g.type_id))
            if ptype == "np.ndarray":
                getter = f"np.asarray({section}[{g.name!r}])"
            elif ptype in self.records:
                getter = f"{ptype}({section}[{g.name!r}])"
            elif ptype == "Any":
                getter = f"{section}[{g.name!r}][()]"
            else:
                getter = f"{ptype}({section}[{g.name!r}])" if ptype != "bytes" else \
                    f"bytes({section}[{g.name!r}][()])"
            if dt.kind == "u" and dt.itemsize == 8 and self.btf[self.btf.resolve(g.type_id)].kind == "ptr":
                ptype, getter = "int", f"int({section}[{g.name!r}])"
            lines += [
                "    @property",
                f"    def {attr}(self) -> {ptype}:",
                f'        """{g.section} {_esc(g.type_name)} {g.name} (read live after load)."""',
                f"        return {getter}",
                "",
            ]
            if ptype in ("int", "float", "bool", "bytes", "np.ndarray"):
                lines += [
                    f"    @{attr}.setter",
                    f"    def {attr}(self, value: {ptype}) -> None:",
                    f"        {section}[{g.name!r}] = value",
                    "",
                ]
        return lines


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


_TYPED_MAP = [
    'K = TypeVar("K")',
    'V = TypeVar("V")',
    "",
    "",
    "def _same(value: Any) -> Any:",
    "    return value",
    "",
    "",
    "class TypedMap(Generic[K, V]):",
    '    """A map with typed keys and values; ``raw`` is the ``pybpf.Map`` (struct values are copies)."""',
    "",
    "    def __init__(self, raw: pybpf.Map, decode: Callable[[Any], V]) -> None:",
    "        self.raw = raw",
    "        self._decode = decode",
    "",
    "    def __getitem__(self, key: K) -> V:",
    "        return self._decode(self.raw[key])",
    "",
    "    def __setitem__(self, key: K, value: V | Any) -> None:",
    "        self.raw[key] = getattr(value, 'raw', value)",
    "",
    "    def __delitem__(self, key: K) -> None:",
    "        del self.raw[key]",
    "",
    "    def __contains__(self, key: object) -> bool:",
    "        return key in self.raw",
    "",
    "    def __len__(self) -> int:",
    "        return len(self.raw)",
    "",
    "    def get(self, key: K) -> V | None:",
    "        value = self.raw.get(key)",
    "        return None if value is None else self._decode(value)",
    "",
    "    def items(self) -> Iterator[tuple[Any, V]]:",
    "        for key, value in self.raw.items():",
    "            yield key, self._decode(value)",
    "",
]


def generate(obj: str | os.PathLike[str] | bytes, *, embed: bool = True, class_name: str | None = None,
             name: str | None = None) -> str:
    """The source of a typed module for ``obj`` (a path or the object's bytes).

    ``embed`` puts the object's bytes in the module (base64); otherwise the module
    opens the object from its absolute path."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        spec = ObjectSpec.from_bytes(data, name=name or "")
        path = None
        if not embed:
            raise ValueError("an object given as bytes can only be embedded")
    else:
        path = os.path.abspath(os.fspath(obj))
        with open(path, "rb") as f:
            data = f.read()
        spec = ObjectSpec(data, name=name or "", path=path)
    return _Gen(spec).module(data, embed, path, class_name)
