"""Tests for pybpf.btf.types: kernel BTF against bpftool, hand-built blobs of every kind,
dtype layouts against what clang computed, bitfields, and malformed input."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.btf.types import Btf, raw_dtype
from pybpf.errors import BpfError, ObjectFormatError
from pybpf.spec.elf import ObjectSpec

VMLINUX = "/sys/kernel/btf/vmlinux"
HAVE_CLANG = shutil.which("clang") is not None
needs_clang = pytest.mark.skipif(not HAVE_CLANG, reason="clang not installed")
needs_vmlinux = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="no kernel BTF")


# ---- a tiny BTF writer, for kinds and corruptions clang won't produce -----------------
class BtfBuilder:
    def __init__(self, start_id: int = 1, str_base: int = 0) -> None:
        self.types: list[bytes] = []
        self.strs = bytearray(b"" if str_base else b"\0")
        self.start_id, self.str_base = start_id, str_base

    def s(self, text: str) -> int:
        if not text:
            return 0
        off = len(self.strs) + self.str_base
        self.strs += text.encode() + b"\0"
        return off

    def add(self, kind: int, name: str = "", vlen: int = 0, kflag: int = 0, sz: int = 0,
            extra: bytes = b"") -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types.append(struct.pack("<III", self.s(name), info, sz) + extra)
        return self.start_id + len(self.types) - 1

    def int_(self, name: str, size: int, signed: bool = False, bits: int | None = None,
             enc: int | None = None) -> int:
        e = enc if enc is not None else (1 if signed else 0)
        return self.add(1, name, sz=size, extra=struct.pack("<I", (e << 24) | (bits or size * 8)))

    def blob(self) -> bytes:
        types = b"".join(self.types)
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self.strs))
        return hdr + types + bytes(self.strs)


def every_kind_btf() -> tuple[bytes, dict[str, int]]:
    b = BtfBuilder()
    ids: dict[str, int] = {}
    ids["int"] = b.int_("int", 4, signed=True)
    ids["char"] = b.int_("char", 1, signed=True)
    ids["bool"] = b.int_("_Bool", 1, enc=4)
    ids["u128"] = b.int_("unsigned __int128", 16)
    ids["ptr"] = b.add(2, sz=ids["int"])
    ids["array"] = b.add(3, extra=struct.pack("<III", ids["int"], ids["int"], 3))
    ids["struct"] = b.add(4, "pair", vlen=2, sz=8, extra=struct.pack(
        "<IIIIII", b.s("a"), ids["int"], 0, b.s("b"), ids["int"], 32))
    ids["union"] = b.add(5, "u", vlen=2, sz=4, extra=struct.pack(
        "<IIIIII", b.s("i"), ids["int"], 0, b.s("c"), ids["char"], 0))
    ids["enum"] = b.add(6, "color", vlen=2, kflag=1, sz=4, extra=struct.pack(  # kflag: signed
        "<IiIi", b.s("RED"), 0, b.s("NEG"), -2))
    ids["fwd"] = b.add(7, "opaque", kflag=1)
    ids["typedef"] = b.add(8, "myint", sz=ids["int"])
    ids["volatile"] = b.add(9, sz=ids["int"])
    ids["const"] = b.add(10, sz=ids["volatile"])
    ids["restrict"] = b.add(11, sz=ids["ptr"])
    ids["func_proto"] = b.add(13, vlen=2, sz=ids["int"], extra=struct.pack(
        "<IIII", b.s("x"), ids["int"], b.s("p"), ids["ptr"]))
    ids["func"] = b.add(12, "f", vlen=1, sz=ids["func_proto"])
    ids["var"] = b.add(14, "counter", sz=ids["int"], extra=struct.pack("<I", 1))
    ids["datasec"] = b.add(15, ".data", vlen=1, sz=4, extra=struct.pack("<III", ids["var"], 0, 4))
    ids["float"] = b.add(16, "double", sz=8)
    ids["decl_tag"] = b.add(17, "tag1", sz=ids["struct"], extra=struct.pack("<i", 1))
    ids["type_tag"] = b.add(18, "user", sz=ids["int"])
    ids["enum64"] = b.add(19, "big", vlen=2, kflag=0, sz=8, extra=struct.pack(
        "<III III", b.s("SMALL"), 1, 0, b.s("HUGE"), 0, 0x80000000))
    ids["enum64s"] = b.add(19, "sbig", vlen=1, kflag=1, sz=8, extra=struct.pack(
        "<III", b.s("MINUS"), 0xFFFFFFFF, 0xFFFFFFFF))
    ids["ptr_fp"] = b.add(2, sz=ids["func_proto"])
    ids["arr2d_inner"] = b.add(3, extra=struct.pack("<III", ids["int"], ids["int"], 3))
    ids["arr2d"] = b.add(3, extra=struct.pack("<III", ids["arr2d_inner"], ids["int"], 2))
    ids["ptr_arr"] = b.add(2, sz=ids["array"])
    ids["chars"] = b.add(3, extra=struct.pack("<III", ids["char"], ids["int"], 16))
    ids["const_ptr"] = b.add(10, sz=ids["ptr"])
    return b.blob(), ids


# ---- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kernel_btf() -> Btf:
    t0 = time.perf_counter()
    btf = Btf.kernel()
    print(f"\nkernel BTF: {len(btf)} types parsed in {time.perf_counter() - t0:.3f} s")
    return btf


def compile_bpf(src: str, out: Path, *, debug: bool = True, includes: tuple[Path, ...] = ()) -> Path:
    c = out.with_suffix(".c")
    c.write_text(src)
    cmd = ["clang", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86"]
    cmd += ["-g"] if debug else []
    cmd += [f"-I{i}" for i in includes]
    subprocess.run(cmd + ["-c", str(c), "-o", str(out)], check=True, capture_output=True)
    subprocess.run(["llvm-strip", "-g", str(out)], check=True, capture_output=True)
    return out


# ---- kernel BTF ----------------------------------------------------------------------------
def _bpftool(*args: str) -> str:
    if not shutil.which("bpftool"):
        pytest.fail("bpftool is missing (make setup installs it)")
    return subprocess.run(["bpftool", "btf", "dump", "file", *args], capture_output=True, text=True,
                          check=True).stdout


def _check_against_bpftool(btf: Btf, types: list[dict]) -> None:
    """Every type of ``btf`` against bpftool's JSON of it, field by field, and against pybpf's
    own JSON encoder (``btf dump --format json`` encodes the raw records, apart from the decoder).
    Enum values are not compared with bpftool's JSON (bpftool 7.1 prints an unsigned 32-bit value
    with bit 31 sign-extended to 64 bits): their signedness is, and their values are compared with
    libbpf's C dump."""
    from pybpf.btf.tojson import iter_type_json
    from pybpf.cli.btf import type_json

    assert len(btf) == len(types) + 1
    assert [j["id"] for j in types] == list(range(1, len(btf)))
    encoded = iter_type_json(btf, range(1, len(btf)))
    for j in types:
        t = btf[j["id"]]
        assert json.loads(next(encoded)) == type_json(t), j["id"]
        assert t.kind == j["kind"].lower(), j
        assert (t.name or "(anon)") == j["name"], j
        if "size" in j:
            assert t.size == j["size"], j
        if "type_id" in j and j["kind"] not in ("DECL_TAG",):
            assert t.type == j["type_id"], j
        if "vlen" in j:
            assert t.vlen == j["vlen"], j
        if j["kind"] in ("STRUCT", "UNION"):
            assert [(m[0] or "(anon)", m[1]) for m in t.members] == \
                [(m["name"], m["type_id"]) for m in j["members"]]
            assert [m[2] for m in t.members] == [m["bits_offset"] for m in j["members"]]
            assert [m[3] for m in t.members] == [m.get("bitfield_size", 0) for m in j["members"]]
        if j["kind"] in ("ENUM", "ENUM64"):
            assert [n for n, _ in t.values] == [v["name"] for v in j["values"]], j
            if "encoding" in j:  # bpftool >= 7.0: the kind_flag, as SIGNED/UNSIGNED
                assert t.signed == (j["encoding"] == "SIGNED"), j
        if j["kind"] == "FUNC_PROTO":
            assert t.type == j["ret_type_id"]
            assert [(n or "(anon)", p) for n, p in t.params] == \
                [(p["name"], p["type_id"]) for p in j["params"]]
        if j["kind"] == "ARRAY":
            assert (t.type, t.index_type, t.nelems) == (j["type_id"], j["index_type_id"], j["nr_elems"])
        if j["kind"] in ("VAR", "FUNC"):
            assert t.linkage == j["linkage"]
        if j["kind"] == "DECL_TAG":
            assert t.component_idx == j["component_idx"]
        if j["kind"] == "DATASEC":
            assert t.vars == [(v["type_id"], v["offset"], v["size"]) for v in j["vars"]]
        if j["kind"] == "INT":
            assert t.bits == j["nr_bits"] and t.bit_offset == j["bits_offset"]
    counts: dict[str, int] = {}
    for j in types:
        counts[j["kind"].lower()] = counts.get(j["kind"].lower(), 0) + 1
    assert btf.kind_counts() == counts


def test_every_kernel_btf_matches_bpftool_and_libbpfs_c_dump(kernel_btfs: list[dict]) -> None:
    """Every type of every kernel of the corpus (the release's kernel packages and the running
    kernel): the parser against bpftool's JSON and pybpf's JSON encoder, and every enum value
    against libbpf's C dump
    (libbpf's btf_dump, which prints each value with the signedness of its kind_flag). libbpf's
    btf_dump is called directly (``cheader.dump_c``): bpftool 7.5's ``format c`` (Debian 13)
    sorts types and leaves some out (an anonymous enum of 6.12, a named signed one)."""
    from pybpf import cheader
    from tests.test_btf_enums import c_dump_values

    seen = []
    for target in kernel_btfs:
        btf = Btf.from_file(target["path"])
        _check_against_bpftool(btf, json.loads(_bpftool(target["path"], "-j"))["types"])
        ours = {v for i in range(1, len(btf)) if btf.kind_of(i) in ("enum", "enum64") for v in btf[i].values}
        c_dump = c_dump_values(cheader.dump_c(target["path"]))
        assert ours == c_dump, (target["label"], sorted(ours ^ c_dump)[:10])
        unsigned_top = sum(1 for i in range(1, len(btf)) if btf.kind_of(i) == "enum" and not btf[i].signed
                           and any(v >> 31 for _n, v in btf[i].values))
        seen.append(f"{target['label']} ({len(btf) - 1} types, {len(ours)} enum values, "
                    f"{unsigned_top} unsigned enums with bit 31 set)")
    print("\nparser == bpftool == JSON encoder, enum values == libbpf's C dump, on: " + "; ".join(seen))


@needs_vmlinux
def test_kernel_btf_lookups(kernel_btf: Btf) -> None:
    tid = kernel_btf.find("task_struct", "struct")
    t = kernel_btf[tid]
    assert t.kind == "struct" and t.size == kernel_btf.sizeof(tid)
    names = [m[0] for m in t.members]
    assert "real_parent" in names and "tgid" in names and "pid" in names
    assert kernel_btf.c_name(tid) == "struct task_struct"
    assert Btf.kernel() is kernel_btf  # cached
    u32 = kernel_btf.find("__u32", "typedef")
    assert kernel_btf.c_name(u32) == "__u32"
    assert kernel_btf[kernel_btf.resolve(u32)].name == "unsigned int"
    assert kernel_btf.dtype(u32) == np.dtype("<u4")
    dt = kernel_btf.dtype(tid)
    assert dt.itemsize == t.size
    assert dt.fields["pid"][1] == next(m[2] for m in t.members if m[0] == "pid") // 8
    with pytest.raises(KeyError):
        kernel_btf.find("no_such_type_xyzzy")
    # Every type with a layout gets a dtype of exactly its size.
    for i in range(1, len(kernel_btf), 97):
        if kernel_btf.kind_of(i) in ("struct", "union", "int", "enum", "enum64", "typedef", "array"):
            try:
                size = kernel_btf.sizeof(i)
            except BpfError:
                continue
            try:
                assert kernel_btf.dtype(i).itemsize == size, kernel_btf.c_name(i)
            except BpfError:
                pass  # e.g. typedef of a fwd struct
    assert ".data..percpu" in kernel_btf.datasecs()
    v = kernel_btf.datasec(".data..percpu")
    assert v and all(x.section == ".data..percpu" for x in v)


# ---- every kind, hand-built -------------------------------------------------------------
def test_every_kind_parses() -> None:
    blob, ids = every_kind_btf()
    btf = Btf.from_bytes(blob, name="kinds")
    assert len(btf) == max(ids.values()) + 1
    assert btf[0].kind == "void"
    for k in ("int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef", "volatile",
              "const", "restrict", "func", "func_proto", "var", "datasec", "float", "decl_tag",
              "type_tag", "enum64"):
        assert btf[ids[k]].kind == k
    assert btf[ids["int"]].encoding == "signed" and btf[ids["int"]].bits == 32
    assert btf[ids["bool"]].encoding == "bool"
    assert btf[ids["array"]].nelems == 3 and btf[ids["array"]].index_type == ids["int"]
    assert btf[ids["struct"]].members == [("a", ids["int"], 0, 0), ("b", ids["int"], 32, 0)]
    assert btf[ids["enum"]].values == [("RED", 0), ("NEG", -2)]
    assert btf[ids["fwd"]].kflag
    assert btf[ids["func"]].linkage == "global"
    assert btf[ids["func_proto"]].params == [("x", ids["int"]), ("p", ids["ptr"])]
    assert btf[ids["var"]].linkage == "global"
    assert btf[ids["datasec"]].vars == [(ids["var"], 0, 4)]
    assert btf[ids["decl_tag"]].component_idx == 1
    assert btf[ids["enum64"]].values == [("SMALL", 1), ("HUGE", 1 << 63)]
    assert btf[ids["enum64s"]].values == [("MINUS", -1)]
    assert btf.kind_counts()["array"] == 4


def test_c_names() -> None:
    btf = Btf.from_bytes(every_kind_btf()[0])
    _, ids = every_kind_btf()
    cases = {
        "int": "int", "ptr": "int *", "array": "int[3]", "struct": "struct pair",
        "union": "union u", "enum": "enum color", "fwd": "union opaque", "typedef": "myint",
        "const": "const volatile int", "restrict": "int *restrict", "enum64": "enum big",
        "ptr_fp": "int (*)(int x, int *p)", "arr2d": "int[2][3]", "ptr_arr": "int (*)[3]",
        "chars": "char[16]", "const_ptr": "int *const", "float": "double", "func": "int f(int x, int *p)",
    }
    for k, want in cases.items():
        assert btf.c_name(ids[k]) == want, k
    assert btf.c_name(0) == "void"


def test_dtypes_of_hand_built() -> None:
    blob, ids = every_kind_btf()
    btf = Btf.from_bytes(blob)
    assert btf.dtype(ids["int"]) == np.dtype("<i4")
    assert btf.dtype(ids["bool"]) == np.dtype("?")
    assert btf.dtype(ids["u128"]) == np.dtype("V16")
    assert btf.dtype(ids["ptr"]) == np.dtype("<u8")
    assert btf.dtype(ids["float"]) == np.dtype("<f8")
    assert btf.dtype(ids["arr2d"]) == np.dtype(("<i4", (2, 3)))
    assert btf.dtype(ids["chars"]) == np.dtype("S16")
    e = btf.dtype(ids["enum"])
    assert e == np.dtype("<i4") and e.metadata["enum"] == {"RED": 0, "NEG": -2}
    assert btf.dtype(ids["enum64"]) == np.dtype("<u8")
    assert btf.dtype(ids["enum64s"]) == np.dtype("<i8")
    u = btf.dtype(ids["union"])
    assert u.itemsize == 4 and u.fields["i"][1] == 0 and u.fields["c"][1] == 0
    ds = btf.dtype(ids["datasec"])
    assert ds.names == ("counter",) and ds.itemsize == 4
    assert btf.sizeof(ids["arr2d"]) == 24 and btf.sizeof(ids["ptr"]) == 8
    with pytest.raises(BpfError):
        btf.dtype(ids["func"])
    with pytest.raises(BpfError):
        btf.sizeof(ids["fwd"])
    assert raw_dtype(12) == np.dtype("V12")


def test_split_btf() -> None:
    base_blob, ids = every_kind_btf()
    base = Btf.from_bytes(base_blob, name="base")
    sb = BtfBuilder(start_id=len(base), str_base=len(base._strs))
    sid = sb.add(4, "modstruct", vlen=2, sz=16, extra=struct.pack(
        "<IIIIII", sb.s("p"), ids["struct"], 0, sb.s("q"), ids["ptr"], 64))
    split = Btf.from_bytes(sb.blob(), base=base, name="mod")
    assert len(split) == len(base) + 1
    assert split.find("modstruct") == sid
    assert split.find("pair") == ids["struct"]
    assert split[ids["int"]].name == "int"
    dt = split.dtype(sid)
    assert dt.itemsize == 16 and dt.fields["p"][0] == base.dtype(ids["struct"])
    assert split.c_name(sid) == "struct modstruct"


# ---- dtype vs clang ---------------------------------------------------------------------
_SCALARS = ["char", "unsigned char", "short", "unsigned short", "int", "unsigned int",
            "long long", "unsigned long long", "_Bool", "float", "double", "void *"]


@st.composite
def c_structs(draw: st.DrawFn) -> tuple[str, list[str], str]:
    """C source defining 'struct top' and nested types; the list of accessible field paths."""
    defs: list[str] = []
    counter = [0]

    def field_type(depth: int) -> tuple[str, str, list[str]]:
        """(decl prefix, decl suffix, sub-paths)"""
        choice = draw(st.integers(0, 9 if depth < 2 else 5))
        if choice <= 5:
            return draw(st.sampled_from(_SCALARS)), "", []
        if choice == 6:
            n = draw(st.integers(1, 5))
            return draw(st.sampled_from(_SCALARS[:8])), f"[{n}]", []
        if choice == 7:
            return "int", f"[{draw(st.integers(1, 3))}][{draw(st.integers(1, 4))}]", []
        name, paths = record(depth + 1)
        return name, "", paths

    def record(depth: int) -> tuple[str, list[str]]:
        counter[0] += 1
        kw = draw(st.sampled_from(["struct", "struct", "union"]))
        name = f"{kw} r{counter[0]}"
        body: list[str] = []
        paths: list[str] = []
        for i in range(draw(st.integers(1, 5))):
            fname = f"f{counter[0]}_{i}"
            if depth < 2 and draw(st.integers(0, 6)) == 0:  # anonymous member
                akw = draw(st.sampled_from(["struct", "union"]))
                inner = []
                for j in range(draw(st.integers(1, 3))):
                    t = draw(st.sampled_from(_SCALARS))
                    inner.append(f"{t} {fname}_{j};")
                    paths.append(f"{fname}_{j}")
                body.append(f"{akw} {{ {' '.join(inner)} }};")
                continue
            pre, suf, sub = field_type(depth)
            attr = ""
            if draw(st.integers(0, 8)) == 0:
                attr = f" __attribute__((aligned({draw(st.sampled_from([1, 2, 4, 8, 16]))})))"
            body.append(f"{pre} {fname}{suf}{attr};")
            paths.append(fname)
            paths += [f"{fname}.{s}" for s in sub]
        packed = " __attribute__((packed))" if draw(st.integers(0, 4)) == 0 else ""
        defs.append(f"{name} {{ {' '.join(body)} }}{packed};")
        return name, paths

    top, paths = record(0)
    return "\n".join(defs), paths, top


@needs_clang
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c_structs())
def test_dtype_layout_matches_clang(tmp_path_factory: pytest.TempPathFactory,
                                    case: tuple[str, list[str], str]) -> None:
    defs, paths, top = case
    exprs = [f"sizeof({top})"]
    for p in paths:
        exprs.append(f"__builtin_offsetof({top}, {p})")
        exprs.append(f"sizeof((({top} *)0)->{p})")
    src = (f"{defs}\n{top} the_var;\n"
           f"const volatile unsigned long long layout[] = {{ {', '.join(exprs)} }};\n"
           "char _license[] __attribute__((section(\"license\"))) = \"GPL\";\n")
    out = compile_bpf(src, tmp_path_factory.mktemp("layout") / "l.bpf.o")
    spec = ObjectSpec.from_file(out)
    assert spec.btf is not None
    g = {x.name: x for x in spec.globals}
    vals = np.frombuffer(g["layout"].initial, "<u8").tolist()
    dt = spec.btf.dtype(g["the_var"].type_id)
    assert dt.itemsize == vals[0], src
    for i, p in enumerate(paths):
        off, size = vals[1 + 2 * i], vals[2 + 2 * i]
        cur, base = dt, 0
        for part in p.split("."):
            fdt, foff = cur.fields[part][:2]
            base += foff
            cur = fdt
        assert base == off, (p, src)
        assert cur.itemsize == size, (p, src)


# ---- bitfields --------------------------------------------------------------------------
BITFIELD_SRC = r"""
struct flags {
    unsigned int a : 3;
    int b : 5;
    unsigned int c : 12;
    unsigned char tag;
    unsigned long long big : 40;
    long long neg : 20;
    int : 0;
    unsigned short d : 9;
    struct { unsigned char e : 2; unsigned char f : 6; };
    int after;
};
struct flags bf_var = { .a = 5, .b = -7, .c = 3001, .tag = 0xab, .big = 0x12345678ab,
                        .neg = -12345, .d = 300, .e = 2, .f = 45, .after = 77 };
const volatile unsigned long long bf_layout[] = { sizeof(struct flags),
    __builtin_offsetof(struct flags, tag), __builtin_offsetof(struct flags, after) };
char _license[] __attribute__((section("license"))) = "GPL";
"""


@needs_clang
def test_bitfields_against_clang(tmp_path: Path) -> None:
    spec = ObjectSpec.from_file(compile_bpf(BITFIELD_SRC, tmp_path / "bf.bpf.o"))
    assert spec.btf is not None
    var = next(g for g in spec.globals if g.name == "bf_var")
    layout = np.frombuffer(next(g for g in spec.globals if g.name == "bf_layout").initial, "<u8")
    btf = spec.btf
    dt = btf.dtype(var.type_id)
    assert dt.itemsize == layout[0]
    assert dt.fields["tag"][1] == layout[1] and dt.fields["after"][1] == layout[2]
    # No field for a bitfield member, only storage fields that don't overlap real members.
    for name in ("a", "b", "c", "big", "neg", "d", "e", "f"):
        assert name not in dt.names
    assert any(n.startswith("_bitfield_") for n in dt.names)
    rec = np.frombuffer(var.initial, dt)[0]
    assert rec["tag"] == 0xAB and rec["after"] == 77
    bfs = {b.name: b for b in btf.bitfields(var.type_id)}
    want = {"a": 5, "b": -7, "c": 3001, "big": 0x12345678AB, "neg": -12345, "d": 300, "e": 2, "f": 45}
    assert set(bfs) == set(want)
    for name, value in want.items():
        assert bfs[name].get(rec) == value, name
        assert bfs[name].get(var.initial) == value, name
        assert bfs[name].storage in dt.names
    assert bfs["b"].signed and not bfs["a"].signed
    # Writing one bitfield leaves its neighbours alone.
    arr = np.frombuffer(bytearray(var.initial), dt).copy()
    bfs["c"].set(arr[0:1], 77)
    bfs["b"].set(arr[0:1], 9)
    out = arr[0]
    assert bfs["c"].get(out) == 77 and bfs["b"].get(out) == 9 and bfs["a"].get(out) == 5
    assert out["tag"] == 0xAB


# ---- malformed input --------------------------------------------------------------------
@pytest.mark.parametrize("data,msg", [
    (b"", "truncated header"),
    (b"XY\x01\x00" + bytes(20), "bad magic"),
    (b"\xeb\x9f\x01\x00" + bytes(20), "big-endian"),
    (b"\x9f\xeb\x01\x00" + bytes(20), "header length 0"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 1000, 0, 1), "exceed"),
    (struct.pack("<HBBIIIII", 0xEB9F, 2, 0, 24, 0, 0, 0, 1) + b"\0", "version"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1) + b"x", "NUL"),
])
def test_bad_headers(data: bytes, msg: str) -> None:
    with pytest.raises(ObjectFormatError, match=msg):
        Btf.from_bytes(data)


def test_bad_types() -> None:
    b = BtfBuilder()
    b.int_("int", 4)
    b.add(25, "bogus")  # unknown kind
    with pytest.raises(ObjectFormatError, match="unknown kind"):
        Btf.from_bytes(b.blob())
    b = BtfBuilder()
    b.add(2, sz=99)  # pointer to a type id that doesn't exist
    btf = Btf.from_bytes(b.blob())
    with pytest.raises(ObjectFormatError, match="out of range"):
        btf[1]
    b = BtfBuilder()
    b.add(4, "s", vlen=3, sz=4)  # claims 3 members, has none
    with pytest.raises(ObjectFormatError, match="runs past"):
        Btf.from_bytes(b.blob())
    b = BtfBuilder()
    b.types.append(struct.pack("<III", 5000, 1 << 24, 4) + struct.pack("<I", 32))
    with pytest.raises(ObjectFormatError, match="string offset"):
        Btf.from_bytes(b.blob())[1]
    # typedef cycle and struct containing itself by value
    b = BtfBuilder()
    b.add(8, "a", sz=2)
    b.add(8, "b", sz=1)
    b.add(4, "self", vlen=1, sz=4, extra=struct.pack("<III", b.s("x"), 3, 0))
    btf = Btf.from_bytes(b.blob())
    for tid in (1, 2, 3):
        with pytest.raises(ObjectFormatError):
            btf.dtype(tid)
    for tid in (1, 2):  # a struct's size is declared, so only the typedef loop fails sizeof
        with pytest.raises(ObjectFormatError):
            btf.sizeof(tid)
    with pytest.raises(ObjectFormatError):
        btf.resolve(1)
    assert btf.c_name(1) == "a"  # a typedef is spelled by its name: no traversal
    b = BtfBuilder()
    b.add(10, sz=2)  # const -> volatile -> const ...
    b.add(9, sz=1)
    with pytest.raises(ObjectFormatError):
        Btf.from_bytes(b.blob()).c_name(1)


def test_from_file_raw_and_elf(tmp_path: Path) -> None:
    blob, ids = every_kind_btf()
    p = tmp_path / "x.btf"
    p.write_bytes(blob)
    assert len(Btf.from_file(p)) == max(ids.values()) + 1
    with pytest.raises(ObjectFormatError):
        Btf.from_file(tmp_path / "missing")
    # any ELF may carry .BTF (vmlinux, modules are x86-64 ELF): one without it says so
    with pytest.raises(ObjectFormatError, match="/bin/true: ELF object has no .BTF section"):
        Btf.from_file("/bin/true")
    elf = bytearray(Path("/bin/true").read_bytes())
    elf[0x28:0x30] = (len(elf) - 8).to_bytes(8, "little")  # section headers past the end
    bad = tmp_path / "bad.elf"
    bad.write_bytes(bytes(elf))
    with pytest.raises(ObjectFormatError, match="section header table out of bounds"):
        Btf.from_file(bad)


def _check_all(btf: Btf) -> None:
    for tid in range(len(btf)):
        for fn in (btf.__getitem__, btf.dtype, btf.sizeof, btf.c_name, btf.resolve, btf.bitfields):
            try:
                fn(tid)
            except BpfError:
                pass
    btf.kind_counts()
    try:
        for name in btf.datasecs():
            btf.datasec(name)
        btf.find("pair")
    except (BpfError, KeyError):
        pass


@settings(max_examples=300, deadline=2000)
@given(st.data())
def test_fuzzed_btf_only_raises_pybpf_errors(data: st.DataObject) -> None:
    blob = bytearray(every_kind_btf()[0])
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "set", "truncate"]))
        if not blob:
            break
        i = data.draw(st.integers(0, len(blob) - 1))
        if op == "flip":
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            blob[i] = data.draw(st.integers(0, 255))
        else:
            del blob[i:]
    try:
        btf = Btf.from_bytes(bytes(blob))
    except BpfError:
        return
    _check_all(btf)


ARRAYS_SRC = r"""
typedef unsigned char u8;
enum mode { OFF, ON = 3, NEG = -1 };
struct tail { int n; long long items[]; };
struct zero { short k; int none[0]; };
struct arrs {
    char name[16]; signed char sc[3]; unsigned char uc[5]; u8 raw[6];
    char grid[2][4]; int m[2][3]; enum mode md; const volatile int cv; int *p;
};
struct tail tail_var; struct zero zero_var; struct arrs arrs_var = { .name = "pybpf", .md = ON,
    .m = {{1, 2, 3}, {4, 5, 6}}, .grid = {"ab", "cd"}, .uc = "xy", .raw = {1, 2, 3} };
char _license[] __attribute__((section("license"))) = "GPL";
"""


@needs_clang
def test_arrays_chars_enums_against_clang(tmp_path: Path) -> None:
    spec = ObjectSpec.from_file(compile_bpf(ARRAYS_SRC, tmp_path / "arr.bpf.o"))
    btf = spec.btf
    assert btf is not None
    g = {x.name: x for x in spec.globals}
    tail = btf.dtype(g["tail_var"].type_id)
    assert tail.itemsize == 8 and tail.fields["items"][1] == 8
    assert tail.fields["items"][0].shape == (0,)
    zero = btf.dtype(g["zero_var"].type_id)
    assert zero.itemsize == 4 and zero.fields["none"][1] == 4
    dt = btf.dtype(g["arrs_var"].type_id)
    assert dt.fields["name"][0] == np.dtype("S16")
    assert dt.fields["sc"][0] == np.dtype("S3") and dt.fields["uc"][0] == np.dtype("S5")
    assert dt.fields["raw"][0] == np.dtype(("u1", (6,)))  # typedef'd bytes stay numbers
    assert dt.fields["grid"][0] == np.dtype(("S4", (2,)))
    assert dt.fields["m"][0] == np.dtype(("<i4", (2, 3)))
    # clang >= 15 marks an enum with a negative value signed (kind_flag); clang 14 (Debian 12's
    # default) writes no kind_flag, and BTF then says unsigned, as libbpf's C dump prints it
    md = btf[btf.find("mode", "enum")]
    assert md.values[-1] == ("NEG", -1 if md.kflag else 0xFFFFFFFF)
    assert dt.fields["md"][0].metadata["enum"] == {"OFF": 0, "ON": 3, "NEG": -1 if md.kflag else 0xFFFFFFFF}
    assert dt.fields["md"][0].base == np.dtype("<i4" if md.kflag else "<u4")
    assert dt.fields["cv"][0] == np.dtype("<i4") and dt.fields["p"][0] == np.dtype("<u8")
    rec = np.frombuffer(g["arrs_var"].initial, dt)[0]
    assert rec["name"] == b"pybpf" and rec["uc"] == b"xy" and list(rec["raw"]) == [1, 2, 3, 0, 0, 0]
    assert rec["m"].tolist() == [[1, 2, 3], [4, 5, 6]] and rec["grid"].tolist() == [b"ab", b"cd"]
    assert rec["md"] == 3
    members = {m[0]: m[1] for m in btf[btf.resolve(g["arrs_var"].type_id)].members}
    assert btf.c_name(members["grid"]) == "char[2][4]"
    assert btf.c_name(members["cv"]) == "const volatile int"
    assert btf.c_name(members["md"]) == "enum mode"
    assert btf.c_name(members["raw"]) == "u8[6]"
    assert btf.c_name(members["p"]) == "int *"


def test_self_referencing_datasec() -> None:
    b = BtfBuilder()
    b.add(15, ".data", vlen=1, sz=4, extra=struct.pack("<III", 1, 0, 4))  # var = itself
    btf = Btf.from_bytes(b.blob())
    btf.fix_datasec(".data", 4, {".data": 0})
    assert btf[1].vars == [(1, 0, 4)]
    dt = btf.dtype(1)  # non-VAR entries are skipped, not followed
    assert dt.itemsize == 4 and not dt.names
