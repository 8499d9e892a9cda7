"""Enum signedness is the BTF kind_flag, in every output, with libbpf's C dump as the reference.

An enum's values are stored as 32 (or 64) bits; kind_flag says whether they are signed. The
values with bit 31 set are where readers disagree: ``enum mm_cid_state`` (kind_flag 0, values
0xffffffff and 0x80000000) is 4294967295 and 2147483648 in libbpf's C dump, and was -1 and
-2147483648 in pybpf's model and JSON (bpftool 7.1's JSON sign-extends them to 64 bits: it is
no reference for values). Checked here on BTF the tests write (on any kernel), on an object
clang builds (model, JSON, dtypes, ``gen``, ``inspect``, a live load), on CO-RE relocations
against a written target (libbpf sign-extends a 32-bit enum value into the instruction: the
engine predicts the same), and on the kernels of the corpus that have ``mm_cid_state``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pybpf
from pybpf.btf.model import BtfType
from pybpf.btf.types import Btf
from pybpf.btf.write import write_btf
from pybpf.spec.codegen import generate
from pybpf.spec.core import load_target, relocate
from pybpf.spec.elf import inspect
from pybpf.toolchain import build

from .conftest import ROOT
from .test_core import _compare

SOURCE = ROOT / "tests" / "data" / "enum_sign.bpf.c"
U32_ALL, U32_TOP = 0xFFFFFFFF, 0x80000000


def _pybpf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpf.cli", *args], capture_output=True, text=True, timeout=300)


def _hand_built() -> list[BtfType]:
    """Enums of both signs and widths, values with the top bit set (the kind_flag decides)."""
    return [
        BtfType(1, "enum", "pybpf_state", vlen=3, kflag=False, size=4,
                values=[("PYBPF_ZERO", U32_TOP), ("PYBPF_LAZY", U32_ALL), ("PYBPF_UNSET", 7)]),
        BtfType(2, "enum", "pybpf_signed", vlen=2, kflag=True, size=4, signed=True,
                values=[("PYBPF_NEG", -1), ("PYBPF_MIN", -(1 << 31))]),
        BtfType(3, "enum64", "pybpf_wide", vlen=2, kflag=False, size=8,
                values=[("PYBPF_W_ALL", (1 << 64) - 1), ("PYBPF_W_TOP", 1 << 63)]),
        BtfType(4, "enum64", "pybpf_swide", vlen=1, kflag=True, size=8, signed=True,
                values=[("PYBPF_SW_NEG", -1)]),
    ]


EXPECTED = {  # name -> (signed, [(enumerator, value)]) as libbpf's C dump prints them
    "pybpf_state": (False, [("PYBPF_ZERO", 2147483648), ("PYBPF_LAZY", 4294967295), ("PYBPF_UNSET", 7)]),
    "pybpf_signed": (True, [("PYBPF_NEG", -1), ("PYBPF_MIN", -2147483648)]),
    "pybpf_wide": (False, [("PYBPF_W_ALL", 18446744073709551615), ("PYBPF_W_TOP", 9223372036854775808)]),
    "pybpf_swide": (True, [("PYBPF_SW_NEG", -1)]),
}


def c_dump_values(text: str) -> set[tuple[str, int]]:
    """Every ``NAME = VALUE,`` of a C dump's enum bodies (libbpf's ``___N`` renames undone)."""
    return {(re.sub(r"___\d+$", "", m[1]), int(m[2]))
            for m in re.finditer(r"^\s*(\w+) = (-?\d+)(?:U?LL)?,?$", text, re.M)}


@pytest.fixture(scope="module")
def written_btf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("enums") / "enums.btf"
    path.write_bytes(write_btf(_hand_built()))
    return path


@pytest.fixture(scope="module")
def enum_object(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("enum-object") / "enum_sign.bpf.o"
    return str(build(SOURCE, out))


def test_written_enums_in_the_model_and_dtypes(written_btf: Path) -> None:
    btf = Btf.from_file(written_btf)
    for tid in range(1, len(btf)):
        t = btf[tid]
        signed, values = EXPECTED[t.name]
        assert (t.signed, t.kflag, t.values) == (signed, signed, values), t
        assert btf.dtype(tid) == np.dtype(f"<{'i' if signed else 'u'}{t.size}"), t.name
    # written back, the same bytes: the kind_flag and the raw values survive a round trip
    assert write_btf([btf[i] for i in range(1, len(btf))]) == written_btf.read_bytes()


def test_written_enums_in_the_json_and_c_dumps(written_btf: Path) -> None:
    proc = _pybpf("btf", "dump", str(written_btf), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    types = {t["name"]: t for t in json.loads(proc.stdout)["types"]}
    for name, (signed, values) in EXPECTED.items():
        assert [(v["name"], v["value"]) for v in types[name]["values"]] == values, name
        assert types[name].get("signed", False) is signed, name
    c = _pybpf("btf", "dump", str(written_btf), "--format", "c")
    assert c.returncode == 0, c.stderr
    want = {v for _s, values in EXPECTED.values() for v in values}
    assert c_dump_values(c.stdout) == want, c.stdout
    if shutil.which("bpftool"):  # libbpf's dumper again, in bpftool's own copy of libbpf
        out = subprocess.run(["bpftool", "btf", "dump", "file", str(written_btf), "format", "c"],
                             capture_output=True, text=True, check=True).stdout
        # every value it prints is ours (bpftool 7.5 sorts the types and leaves pybpf_signed out)
        got = c_dump_values(out)
        assert got <= want and {("PYBPF_LAZY", 4294967295), ("PYBPF_ZERO", 2147483648)} <= got, out


def test_compiled_unsigned_enum_everywhere(enum_object: str, tmp_path: Path) -> None:
    btf = Btf.from_file(enum_object)
    tid = btf.find("pybpf_state", "enum")
    t = btf[tid]
    assert not t.kflag and not t.signed  # clang: an enum of unsigned values is unsigned (or unmarked)
    assert t.values == [("PYBPF_UNSET", U32_ALL), ("PYBPF_LAZY", U32_TOP), ("PYBPF_ZERO", 0)]
    rec = btf.dtype(btf.find("pybpf_rec", "struct"))
    assert rec["state"] == np.dtype("<u4")
    # inspect: the globals' initial values, decoded with the enum's dtype
    doc = json.loads(_pybpf("inspect", enum_object, "-j").stdout)
    values = {g["name"]: g["value"] for g in doc["globals"]}
    assert values["g_state"] == 4294967295 and values["g_lazy"] == 2147483648
    # gen: the record dtype written into the module is unsigned
    assert _skeleton(enum_object, tmp_path).PYBPF_REC_DTYPE["state"] == np.dtype("<u4")


def _skeleton(enum_object: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The module ``pybpf gen`` writes for the object, imported."""
    module_path = tmp_path / "enum_skel.py"
    module_path.write_text(generate(enum_object, class_name="EnumSign"))
    spec = importlib.util.spec_from_file_location("enum_skel", module_path)
    assert spec is not None and spec.loader is not None
    skel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(skel)
    return skel


def test_compiled_enum_live_and_through_gen(kernel, enum_object: str, written_btf: Path, tmp_path: Path) -> None:
    # the program's enum relocations need a BTF that has pybpf_state: the written one
    with _skeleton(enum_object, tmp_path).EnumSign.open(btf_custom_path=str(written_btf)) as obj:
        obj.obj.programs["enum_local_top"].autoload = False
        obj.load()
        assert obj.g_state == 4294967295 and obj.g_lazy == 2147483648
        obj.obj.programs["enum_values"].test_run(data_in=bytes(64))
        rec = obj.obj.maps["recs"][0]
        assert int(rec["state"]) == 2147483648 and int(rec["seen"]) == 1


def test_core_enum_values_keep_libbpfs_sign_extension(kernel, enum_object: str, written_btf: Path) -> None:
    """Against the written target (ZERO = 0x80000000, LAZY = 0xffffffff, UNSET = 7), libbpf
    patches each 64-bit load with the 32-bit value sign-extended; the engine predicts what libbpf
    does for every relocation (also where libbpf refuses a local value with bit 31 set), and the
    program reads the patched values."""
    target = load_target(str(written_btf))
    got = {(r.program, r.path.rsplit("::", 1)[-1]): r.value for r in relocate(inspect(enum_object), target)
           if r.kind == "enumval_value"}
    assert {k[1]: v for k, v in got.items() if k[0] == "enum_values"} == {
        "PYBPF_UNSET___small": 7, "PYBPF_LAZY___small": 0xFFFFFFFFFFFFFFFF,
        "PYBPF_ZERO___small": 0xFFFFFFFF80000000}
    checked, bad, kinds = _compare(enum_object, str(written_btf), target)
    assert not bad and checked >= 4 and {"enumval_value", "enumval_exists"} <= kinds, bad
    with pybpf.open(enum_object, btf_custom_path=str(written_btf)) as obj:
        obj.programs["enum_local_top"].autoload = False
        obj.load()
        obj.programs["enum_values"].test_run(data_in=bytes(64))
        assert [int(v) for v in obj.bss["out"]] == [7, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF80000000, 1]


def test_mm_cid_state_in_the_kernels_json_dump(kernel_btfs) -> None:
    """Wherever a kernel of the corpus (or the running one) has ``enum mm_cid_state``, its JSON
    dump says 4294967295 and 2147483648, unsigned, as libbpf's C dump does."""
    having = []
    for t in kernel_btfs:
        btf = Btf.from_file(t["path"])
        try:
            btf.find("mm_cid_state", "enum")
        except KeyError:
            continue
        having.append(t["label"])
        proc = _pybpf("btf", "dump", t["path"], "--format", "json", "--type", "mm_cid_state")
        assert proc.returncode == 0, proc.stderr
        (enum,) = [x for x in json.loads(proc.stdout)["types"] if x["name"] == "mm_cid_state"]
        assert enum["values"] == [{"name": "MM_CID_UNSET", "value": 4294967295},
                                  {"name": "MM_CID_LAZY_PUT", "value": 2147483648}], t["label"]
        assert not enum.get("signed"), t["label"]
    if not having:
        pytest.skip("no kernel here has enum mm_cid_state (6.18 has it; the hand-built BTF covers the rest)")
    print(f"\nmm_cid_state checked in: {', '.join(having)}")
