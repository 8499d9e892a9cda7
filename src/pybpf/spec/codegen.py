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
import builtins
import hashlib
import keyword
import os
import re
import unicodedata
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

import numpy as np

from pybpf.btf.types import Btf
from pybpf.errors import ObjectFormatError
from pybpf.spec.elf import GlobalSpec, MapSpec, ObjectSpec

__all__ = ["PyNames", "generate", "py_identifier"]

_SECTION_ATTR = {".bss": "bss", ".data": "data", ".rodata": "rodata"}
# maps the typed wrapper can front: their values are looked up by key
_KEYED_MAPS = {"hash", "array", "lru_hash", "lpm_trie", "percpu_hash", "percpu_array", "lru_percpu_hash"}
_PERCPU = {"percpu_hash", "percpu_array", "lru_percpu_hash"}

# Names the generated module defines or imports: no name from the object may take them.
_MODULE_NAMES = frozenset({
    "annotations", "base64", "Callable", "Iterator", "Any", "ClassVar", "Generic", "Literal", "TypedDict",
    "TypeVar", "np", "pybpf", "K", "V", "_same", "TypedMap", "OBJECT_NAME", "OBJECT_SHA256", "OBJECT_BYTES",
    "OBJECT_PATH",
}) | frozenset(dir(builtins))
# Builtins a class body of the module names (decorators run there; mypy resolves annotations there):
# a member of that name would shadow them.
_CLASS_BODY_BUILTINS = frozenset({"int", "float", "bool", "bytes", "str", "list", "dict", "tuple", "type",
                                  "object", "property", "staticmethod", "classmethod"})
_OBJECT_MEMBERS = frozenset({"obj", "open", "load", "close", "attach", "maps", "programs", "path", "name", "NAMES"})
_RECORD_MEMBERS = frozenset({"raw", "dtype", "FIELDS", "NAMES", "column", "each", "to_dict"})
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")


def py_identifier(name: str, taken: Container[str] = (), *, style: str = "snake") -> str:
    """A Python identifier for the object's ``name``: NFKC-normalised as Python does, then ASCII
    letters, digits and ``_`` only (so no two distinct identifiers are one name to Python), never
    a keyword, never starting with ``__`` (no dunder, no name mangling), and not in ``taken``
    (a number is added).

    ``style``: ``snake`` keeps the name's ASCII letters and digits with ``_`` for the rest
    (``comm`` stays ``comm``), ``camel`` makes a class name (``task_info`` -> ``TaskInfo``),
    ``const`` a constant (``TASK_INFO``)."""
    name = unicodedata.normalize("NFKC", name)  # what Python does to identifiers: ｌｏａｄ is load
    if style == "camel":
        out = "".join(w[:1].upper() + w[1:] for w in _ASCII_WORD.findall(name)) or "Anon"
    elif style == "const":
        out = "_".join(w.upper() for w in _ASCII_WORD.findall(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)))
        out = out or "ANON"
    elif style == "snake":
        out = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if not out.strip("_"):
            out = "unnamed"
    else:
        raise ValueError(f"style must be 'snake', 'camel' or 'const', not {style!r}")
    if out[0].isdigit():
        out = "_" + out
    if out.startswith("__"):
        out = "_" + out.lstrip("_")
    if keyword.iskeyword(out):
        out += "_"
    base, n = out, 2
    while out in taken:
        out, n = f"{base}{'' if style == 'camel' else '_'}{n}", n + 1
    assert out.isascii() and out.isidentifier() and not out.startswith("__"), out
    return out


class PyNames:
    """One namespace of generated identifiers (the module, or one class body) and where each
    came from: ``names[identifier] == the object's own name``."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self.taken: set[str] = set(reserved)
        self.names: dict[str, str] = {}

    def add(self, name: str, style: str = "snake", *, prefix: str = "") -> str:
        """A new identifier for ``name`` (``prefix`` + the name) in this namespace, recorded."""
        ident = py_identifier(prefix + name, self.taken, style=style)
        self.taken.add(ident)
        self.names[ident] = name
        return ident


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


def _libbpf_name(name: str) -> str:
    """``name`` as libbpf keeps an object's name: at most 15 bytes of UTF-8, cut between characters
    (a name that cannot be kept whole would make ``pybpf.open`` refuse it)."""
    raw = name.split("\0", 1)[0].encode("utf-8", "surrogatepass")[:15]
    return raw.decode("utf-8", "ignore") or "bpf"


def _docstring(text: str, indent: str = "") -> str:
    """``text`` as a triple-quoted string literal: backslashes, quotes and every character that is
    not printable (controls, line separators, bidi overrides, surrogates) escaped, newlines kept.
    What the object names can never end the literal early."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n" or ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])  # \x1b, \u2028, \ud800 ...
    return f'{indent}"""{"".join(out)}"""'


@dataclass
class _Record:
    cls: str                # module-level identifiers, made by PyNames
    field_type: str
    dict_type: str
    const: str
    c_name: str
    dtype: np.dtype
    attr: str = ""          # the object class's ClassVar for it
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (C field name, attribute, python type)
    names: PyNames | None = None


class _Gen:
    def __init__(self, spec: ObjectSpec, class_name: str | None) -> None:
        if spec.btf is None:
            raise ObjectFormatError(f"{spec.path or spec.name}: the object has no BTF; pybpf gen needs BTF",
                                    path=spec.path)
        self.spec = spec
        self.btf: Btf = spec.btf
        self.records: dict[str, _Record] = {}     # by class name, in discovery order
        self._by_dtype: dict[str, str] = {}
        self.module = PyNames(_MODULE_NAMES)
        obj_name = spec.name or "bpf"
        if class_name is not None:
            if not (class_name.isascii() and class_name.isidentifier()) or keyword.iskeyword(class_name) \
                    or class_name.startswith("__") or class_name in _MODULE_NAMES:
                raise ValueError(f"--class {class_name!r}: give an ASCII Python identifier that is not a "
                                 f"keyword, does not start with '__' and is not one of the module's own "
                                 f"names (TypedMap, np, pybpf, builtins...)")
            self.module.taken.add(class_name)
            self.module.names[class_name] = obj_name
            self.cls_name = class_name
        else:
            self.cls_name = self.module.add(obj_name, "camel")

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
        """The wrapper class for record dtype ``dt`` (made on first use, with its nested records)."""
        for cls, rec in self.records.items():
            if rec.c_name == c_name and rec.dtype == dt:
                return cls
        base, n = py_identifier(c_name, style="camel"), 2
        cls = base
        while True:  # the class and the three names made from it, all free
            const = py_identifier(cls, style="const") + "_DTYPE"
            group = (cls, cls + "Field", cls + "Dict", const)
            if not any(name in self.module.taken for name in group):
                break
            cls, n = f"{base}{n}", n + 1
        self.module.taken.update(group)
        self.module.names[cls] = c_name
        rec = _Record(cls, cls + "Field", cls + "Dict", const, c_name, dt)
        self.records[cls] = rec
        assert dt.names is not None and dt.fields is not None
        for fname in dt.names:
            rec.fields.append((fname, "", self.pytype(dt.fields[fname][0], f"{c_name}_{fname}")))
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

    def _class_scope(self, members: frozenset[str]) -> PyNames:
        """A class body's namespace: nothing in it may shadow a module-level name."""
        return PyNames(self.module.taken | _CLASS_BODY_BUILTINS | members)

    # ---- the module -----------------------------------------------------------------

    def module_source(self, data: bytes, embed: bool, path: str | None) -> str:
        spec = self.spec
        obj_name = spec.name or "bpf"
        cls_name = self.cls_name
        # Every module-level name first (records from maps and globals, in ELF order), then the
        # class bodies, whose members must not shadow any of them.
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
        maps = [m for m in spec.maps if not m.internal and not m.name.startswith("__")]  # __bpf_*: libbpf's
        map_types = {m.name: self._map_types(m) for m in maps}
        global_types = {g.name: self._global_type(g) for g in spec.globals}
        for rec in self.records.values():
            rec.names = self._class_scope(_RECORD_MEMBERS)
            rec.fields = [(fname, rec.names.add(fname), ptype)
                          for fname, _, ptype in rec.fields]
        members = self._class_scope(_OBJECT_MEMBERS)
        for rec in self.records.values():
            rec.attr = members.add(rec.c_name, prefix="struct_")
        map_lines = self._maps(maps, map_types, members)
        global_lines = self._globals(global_types, members)
        prog_lines = []
        for p in spec.programs:
            attr = members.add(p.name)
            prog_lines += [
                "    @property",
                f"    def {attr}(self) -> pybpf.Program:",
                _docstring(f"Program {p.name} (SEC(\"{p.section}\"), {p.prog_type or 'unknown type'}).",
                           " " * 8),
                f"        return self.obj.programs[{p.name!r}]",
                "",
            ]

        out: list[str] = []
        sha = hashlib.sha256(data).hexdigest()
        map_list = ", ".join(m.name for m in maps) or "-"
        prog_list = ", ".join(p.name for p in spec.programs) or "-"
        out += [
            _docstring(f"Typed access to the BPF object {obj_name!r}: generated by `pybpf gen`, do not edit.\n\n"
                       f"Object sha256 {sha}.\nMaps: {map_list}.\nPrograms: {prog_list}.\n"),
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
            f"OBJECT_NAME = {_libbpf_name(obj_name)!r}",
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
            _docstring(f"The object {obj_name!r}: one typed attribute per map, global, program and record "
                       f"struct.\n\n    ``NAMES`` maps each attribute to the name in the object.", " " * 4),
            "",
            f"    NAMES: ClassVar[dict[str, str]] = {members.names!r}",
        ]
        for rec in self.records.values():
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
        assert rec.names is not None
        names = [f for f, _, _ in rec.fields]
        dict_fields = ", ".join(f"{fname!r}: {self._dict_type(ptype)}" for fname, _, ptype in rec.fields)
        lines = [
            f"{rec.field_type} = Literal[{', '.join(repr(n) for n in names)}]",
            f"{rec.dict_type} = TypedDict({rec.dict_type!r}, {{{dict_fields}}})",
            "",
            "",
            f"class {rec.cls}:",
            _docstring(f"struct {rec.c_name} ({rec.dtype.itemsize} bytes) over one numpy record (a view or a "
                       f"copy).\n\n    ``NAMES`` maps each attribute to its field.", " " * 4),
            "",
            '    __slots__ = ("raw",)',
            f"    dtype: ClassVar[np.dtype] = {rec.const}",
            f"    FIELDS: ClassVar[tuple[str, ...]] = ({', '.join(repr(n) for n in names)}{',' if len(names) == 1 else ''})",
            f"    NAMES: ClassVar[dict[str, str]] = {rec.names.names!r}",
            "",
            "    def __init__(self, raw: Any) -> None:",
            "        self.raw = raw",
            "",
            "    @staticmethod",
            f"    def column(records: np.ndarray, name: {rec.field_type}) -> np.ndarray:",
            '        """One field of an array of these records (a view)."""',
            "        return records[name]",
            "",
            "    @classmethod",
            f"    def each(cls, records: np.ndarray) -> list[{rec.cls}]:",
            "        return [cls(r) for r in records]",
            "",
            f"    def to_dict(self) -> {rec.dict_type}:",
            "        return {" + ", ".join(f"{fname!r}: self.{attr}" + (".to_dict()" if ptype in self.records else "")
                                    for fname, attr, ptype in rec.fields) + "}",
            "",
            "    def __repr__(self) -> str:",
            f"        return f\"{rec.cls}({{self.to_dict()!r}})\"",
            "",
        ]
        for fname, attr, ptype in rec.fields:
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

    def _dict_type(self, ptype: str) -> str:
        return repr(self.records[ptype].dict_type) if ptype in self.records else ptype

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

    def _map_types(self, m: MapSpec) -> tuple[str, str, str] | None:
        """(key type, value type, decoder) of a map the typed wrapper fronts; None for the others."""
        if m.type not in _KEYED_MAPS or not m.value_type_id:
            return None
        vtype, decode = self._value_decoder(m.value_type_id, self.type_name(m.value_type_id), m.type in _PERCPU)
        return self._key_type(m.key_type_id), vtype, decode

    def _maps(self, maps: list[MapSpec], types: dict[str, tuple[str, str, str] | None],
              members: PyNames) -> list[str]:
        lines: list[str] = []
        for m in maps:
            attr = members.add(m.name)
            doc = f"{m.type} map {m.name}, max_entries {m.max_entries}"
            typed = types[m.name]
            if typed is not None:
                ktype, vtype, decode = typed
                lines += [
                    "    @property",
                    f"    def {attr}(self) -> TypedMap[{ktype}, {vtype}]:",
                    _docstring(f"{doc}: {self.type_name(m.key_type_id)} -> {self.type_name(m.value_type_id)}.",
                               " " * 8),
                    f"        return TypedMap(self.obj.maps[{m.name!r}], {decode})",
                    "",
                ]
            else:
                lines += [
                    "    @property",
                    f"    def {attr}(self) -> pybpf.Map:",
                    _docstring(f"{doc}.", " " * 8),
                    f"        return self.obj.maps[{m.name!r}]",
                    "",
                ]
        return lines

    def _global_type(self, g: GlobalSpec) -> tuple[str, str]:
        """(python type, getter expression) of a global variable."""
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
        return ptype, getter

    def _globals(self, types: dict[str, tuple[str, str]], members: PyNames) -> list[str]:
        lines: list[str] = []
        for g in self.spec.globals:
            attr = members.add(g.name)
            section = (f"self.obj.{_SECTION_ATTR[g.section]}" if g.section in _SECTION_ATTR
                       else f"self.obj.section({g.section!r})")
            ptype, getter = types[g.name]
            lines += [
                "    @property",
                f"    def {attr}(self) -> {ptype}:",
                _docstring(f"{g.section} {g.type_name} {g.name} (read live after load).", " " * 8),
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
    return _Gen(spec, class_name).module_source(data, embed, path)
