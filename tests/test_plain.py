"""Plain (numpy-free) BTF values, checked against the numpy side they stand in for:
``RecordLayout`` decodes every struct of every bundled object as its numpy record dtype does
(same members, offsets, values), ``IntFormat.encode`` gives the bytes and the errors of
``maps.codec.to_bytes``, ``.rodata`` set without numpy holds what it held with numpy, and
``Map.lookup_raw`` returns the kernel's bytes of what ``Map.lookup`` decodes."""

from __future__ import annotations

import errno
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pybpf
from pybpf.btf.plain import IntFormat, RecordLayout, int_format
from pybpf.maps.codec import to_bytes
from pybpf.spec.elf import ObjectSpec

from .conftest import open_fds, new_fds


def _btf(path: str):
    with open(path, "rb") as f:
        return ObjectSpec(f.read(), name=path).btf


def _structs(btf):
    for tid in range(btf.start_id, len(btf)):
        t = btf[tid]
        if t.kind in ("struct", "union") and t.size:
            try:
                dtype = btf.dtype(tid)
            except Exception:  # noqa: BLE001 - types without a numpy layout have no plain one to compare
                continue
            yield tid, dtype


def test_every_bundled_struct_decodes_as_numpy_does() -> None:
    rng = random.Random(23)
    compared = 0
    for name in pybpf.bundled_names():
        btf = _btf(pybpf.bundled(name))
        if btf is None:
            continue
        for tid, dtype in _structs(btf):
            layout = RecordLayout(btf, tid)
            fields = dtype.fields or {}
            plain_names = set(layout.offsets)
            numpy_names = {n for n in fields if not n.lstrip("_").startswith("bitfield_")}
            assert plain_names == numpy_names, (name, btf[tid].name)
            for field, offset in layout.offsets.items():
                assert offset == fields[field][1], (name, btf[tid].name, field)
            for _ in range(3):
                raw = bytes(rng.getrandbits(8) for _ in range(dtype.itemsize))
                record = layout.decode(raw)
                assert record.raw == raw
                numpy_record = np.frombuffer(raw, dtype)[0]
                for field, value in record.items():
                    expected = numpy_record[field]
                    if isinstance(value, bytes):
                        offset = layout.offsets[field]
                        assert value == raw[offset:offset + fields[field][0].itemsize], field
                    elif isinstance(value, float):
                        assert value == float(expected) or (value != value and expected != expected)
                    else:
                        assert value == expected.item() and type(value) is type(expected.item()), field
                compared += 1
    assert compared > 100


def test_short_and_long_records_are_padded_and_cut(bundled) -> None:
    btf = _btf(bundled("execsnoop"))
    layout = RecordLayout(btf, btf.find("exec_event", "struct"))
    short = layout.decode(b"\x01" * 8)
    assert len(short.raw) == layout.size and short.raw[8:] == bytes(layout.size - 8)
    assert layout.decode(b"\x02" * (layout.size + 50)).raw == b"\x02" * layout.size
    an_int = next(t for t in range(1, len(btf)) if btf[t].kind == "int")
    with pytest.raises(TypeError, match="not a struct"):
        RecordLayout(btf, an_int)


_FORMATS = [IntFormat(size, signed) for size in (1, 2, 4, 8) for signed in (False, True)] + \
    [IntFormat(1, False, True)]


def _dtype(fmt: IntFormat) -> np.dtype:
    return np.dtype("?") if fmt.boolean else np.dtype(f"<{'i' if fmt.signed else 'u'}{fmt.size}")


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_FORMATS), st.one_of(st.integers(min_value=-(1 << 70), max_value=1 << 70), st.booleans(),
                                            st.sampled_from([0, 1, -1, 255, 256, 2**31, 2**32, 2**63, 2**64])))
def test_int_encoding_is_the_codecs(fmt: IntFormat, value: int) -> None:
    try:
        expected: object = to_bytes(value, _dtype(fmt), "x.v")
    except (OverflowError, TypeError, ValueError) as exc:
        expected = (type(exc), str(exc))
    try:
        got: object = fmt.encode(value, "x.v")
    except (OverflowError, TypeError, ValueError) as exc:
        got = (type(exc), str(exc))
    assert got == expected
    if isinstance(got, bytes):
        assert fmt.decode(got) == np.frombuffer(got, _dtype(fmt))[0].item()


def test_int_format_follows_btf(bundled) -> None:
    btf = _btf(bundled("execsnoop"))
    seen = set()
    for tid in range(1, len(btf)):
        fmt = int_format(btf, tid)
        t = btf[btf.resolve(tid)]
        if fmt is None:
            assert t.kind not in ("int", "enum", "ptr") or (t.size or 0) not in (1, 2, 4, 8)
            continue
        dtype = btf.dtype(tid)
        assert (fmt.size, fmt.name) == (dtype.itemsize, dtype.name), btf[tid]
        seen.add(fmt.name)
    assert {"uint32", "int32", "uint64"} <= seen


def test_rodata_set_without_numpy_holds_the_same_bytes(kernel: None, bundled) -> None:
    """Integer settings go through IntFormat; everything else (and the errors) as before."""
    with pybpf.open(bundled("execsnoop")) as plain, pybpf.open(bundled("execsnoop")) as typed:
        for name in plain.rodata:
            var_dtype = plain.rodata.dtype_of(name)
            if var_dtype.kind not in "iub" or var_dtype.shape:
                continue
            value = True if var_dtype.kind == "b" else (7 if var_dtype.kind == "u" else -7)
            plain.rodata[name] = value
            typed.rodata[name] = np.array(value, var_dtype)  # not an int: the numpy path
        assert plain.rodata.bytes() == typed.rodata.bytes()
        with pytest.raises(OverflowError, match=r"\.rodata\.targ_uid: 99999999999 is out of range for uint32"):
            plain.rodata["targ_uid"] = 99999999999


def test_lookup_raw_is_the_kernels_bytes(kernel: None) -> None:
    fds = open_fds()
    with pybpf.Map.create("percpu_array", key_dtype="u4", value_dtype="u4", max_entries=2) as per_cpu, \
            pybpf.Map.create("hash", key_dtype="u8", value_dtype="u2", max_entries=4) as hashed, \
            pybpf.Map.create("queue", key_size=0, value_dtype="u4", max_entries=4) as queue:
        n_cpus = per_cpu.n_cpus
        per_cpu[1] = np.arange(n_cpus, dtype=np.uint32) + 5
        raw = per_cpu.lookup_raw(struct.pack("<I", 1))
        assert len(raw) == 8 * n_cpus  # each CPU's 4-byte value padded to 8, as the kernel copies it
        assert [struct.unpack_from("<I", raw, 8 * cpu)[0] for cpu in range(n_cpus)] == list(range(5, 5 + n_cpus))
        hashed[10] = 513
        assert hashed.lookup_raw(struct.pack("<Q", 10)) == struct.pack("<H", 513)
        with pytest.raises(pybpf.KeyNotFoundError):
            hashed.lookup_raw(struct.pack("<Q", 11))
        with pytest.raises(pybpf.InvalidArgumentError, match="8 bytes, not 4"):
            hashed.lookup_raw(b"\0" * 4)
        with pytest.raises(pybpf.NotSupportedError) as refused:
            queue.lookup_raw(b"")
        assert refused.value.errno == errno.EINVAL
    with pytest.raises(pybpf.ClosedError):
        hashed.lookup_raw(struct.pack("<Q", 10))
    assert not new_fds(fds)
