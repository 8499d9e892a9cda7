"""The compiled binding and helpers (``pybpf._sys._fast``, cffi API mode) and their ABI-mode fallback.

Both paths run here against real maps: in this process (whichever path it
has) and in subprocesses, one with the extension and one with
``PYBPF_NO_EXTENSION=1``, which must give identical results. A tree without
the extension (or with one built from older declarations) gets it built first
(what ``make ext`` does).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pybpf import Map
from pybpf._sys import fast

from .conftest import ROOT

SRC = ROOT / "src"


@pytest.fixture(scope="module")
def extension_built() -> None:
    """Build ``pybpf._sys._fast`` in the tree if it is absent (as ``make ext`` would)."""
    probe = subprocess.run([sys.executable, "-c", "from pybpf._sys import libbpf; assert libbpf.NATIVE"],
                           env=_env(), capture_output=True, check=False)
    if probe.returncode != 0:
        subprocess.run([sys.executable, str(SRC / "pybpf" / "_sys" / "_build_fast.py")], check=True,
                       env=_env(), capture_output=True)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYBPF_NO_EXTENSION"}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


# One script, run under both paths: key arrays and typed helpers on real maps.
SCRIPT = textwrap.dedent("""
    import json, errno
    import numpy as np
    from pybpf import Map
    from pybpf._sys import fast
    out = {"mode": fast.MODE, "extension": fast.EXTENSION}
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=64) as m:
        for k in range(0, 40, 2):
            m[k] = k * 1000 + 7
        keys = np.arange(0, 10, dtype=np.uint32)
        values = np.full(10, 99, dtype=np.uint64)
        found = np.zeros(10, dtype=np.uint8)
        out["lookup"] = fast.lookup_keys(m.fd, keys, values, found)
        out["values"], out["found"] = values.tolist(), found.tolist()
        upd = np.array([1, 3, 5], dtype=np.uint32)
        out["update"] = fast.update_keys(m.fd, upd, np.array([11, 33, 55], dtype=np.uint64), 0)
        out["after_update"] = [int(m[1]), int(m[3]), int(m[5])]
        # noexist on a present key stops at that index with -EEXIST
        out["update_noexist"] = fast.update_keys(m.fd, np.array([60, 2], dtype=np.uint32),
                                                 np.array([1, 2], dtype=np.uint64), 1)
        deleted = np.zeros(4, dtype=np.uint8)
        out["delete"] = fast.delete_keys(m.fd, np.array([0, 1, 41, 2], dtype=np.uint32), deleted)
        out["deleted"] = deleted.tolist()
        out["left"] = sorted(int(k) for k in m.keys())
    print(json.dumps(out))
""")


def _run(no_extension: bool) -> dict:
    env = _env(PYBPF_NO_EXTENSION="1") if no_extension else _env()
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_both_paths_agree(kernel, extension_built):
    api, abi = _run(no_extension=False), _run(no_extension=True)
    assert (api["mode"], api["extension"]) == ("api", True)
    assert (abi["mode"], abi["extension"]) == ("abi", False)
    for result in (api, abi):
        assert result["lookup"] == [5, -1]
        assert result["found"] == [1, 0] * 5
        assert result["values"] == [k * 1000 + 7 if k % 2 == 0 else 0 for k in range(10)]
        assert result["update"] == [3, -1]
        assert result["after_update"] == [11, 33, 55]
        assert result["update_noexist"] == [-17, 1]  # 60 written, 2 exists: -EEXIST at index 1
        assert result["delete"] == [3, -1] and result["deleted"] == [1, 1, 0, 1]
    assert {k: v for k, v in api.items() if k not in ("mode", "extension")} == \
        {k: v for k, v in abi.items() if k not in ("mode", "extension")}


def test_lookup_keys_stops_at_a_hard_error(kernel):
    # a lookup on a non-map fd fails with EINVAL/EBADF for the first key, whichever path runs
    r, w = os.pipe()
    try:
        ret, index = fast.lookup_keys(r, np.arange(3, dtype=np.uint32), np.zeros(3, np.uint64),
                                      np.zeros(3, np.uint8))
    finally:
        os.close(r)
        os.close(w)
    assert ret < 0 and ret != -2 and index == 0


def test_typed_helpers_range_check(kernel):
    with Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4) as m:
        update = fast.typed("update", "u32", "u64")
        lookup = fast.typed("lookup", "u32")
        if not fast.EXTENSION:
            assert update is None and lookup is None
            return
        assert update is not None and lookup is not None
        assert update(m.fd, 2, 2**64 - 1, 0) == 0
        assert int(m[2]) == 2**64 - 1
        value = np.zeros(1, np.uint64)
        from pybpf._sys.libbpf import ffi
        assert lookup(m.fd, np.uint32(2), ffi.from_buffer(value)) == 0 and int(value[0]) == 2**64 - 1
        assert lookup(m.fd, 9, ffi.from_buffer(value)) == -2  # past max_entries: ENOENT from the kernel
        with pytest.raises(OverflowError):
            lookup(m.fd, -1, ffi.from_buffer(value))
        with pytest.raises(OverflowError):
            update(m.fd, 1, 2**64, 0)
        with pytest.raises(TypeError):
            update(m.fd, 1, 1.5, 0)


def test_type_codes():
    assert fast.type_code(np.dtype(np.uint32)) == "u32"
    assert fast.type_code(np.dtype("<i8")) == "i64"
    assert fast.type_code(np.dtype(np.float64)) == "f64"
    assert fast.type_code(np.dtype(">u4")) is None
    assert fast.type_code(np.dtype([("a", "<u4")])) is None
    assert fast.type_code(np.dtype(("<u4", (2,)))) is None


@pytest.mark.parametrize("mode", ["api", "abi"])
def test_map_paths_in_both_modes(kernel, extension_built, mode):
    """tests/test_keyarrays.py (key arrays, the per-key fast path, cells) under each C path."""
    env = _env(PYBPF_NO_EXTENSION="1") if mode == "abi" else _env()
    check = subprocess.run([sys.executable, "-c", "from pybpf._sys import fast; print(fast.MODE)"], env=env,
                           capture_output=True, text=True, check=True)
    assert check.stdout.strip() == mode
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_keyarrays.py")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=_env(**env), capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_compiled_binding_parses_no_c_at_import(extension_built):
    """With the extension, ``pybpf._sys.libbpf`` is its ffi/lib: no cdef parse, no pycparser."""
    probe = ("import sys, json\nfrom pybpf._sys import libbpf\n"
             "print(json.dumps([libbpf.NATIVE, 'pycparser' in sys.modules, 'cffi.cparser' in sys.modules,"
             " type(libbpf.lib).__name__]))")
    compiled, abi = _python(probe), _python(probe, PYBPF_NO_EXTENSION="1")
    assert compiled.returncode == 0 and abi.returncode == 0, compiled.stderr + abi.stderr
    assert json.loads(compiled.stdout) == [True, False, False, "Lib"]
    assert json.loads(abi.stdout)[:3] == [False, True, True]


def test_an_extension_built_from_other_declarations_is_not_used(extension_built):
    """A module older than cdef.py (say, a new optional symbol since) would lack declarations:
    pybpf uses the ABI binding then, and says how to rebuild."""
    code = ("import pybpf._sys.cdef as c\nc.OPTIONAL_CDEF += 'int pybpf_test_only(void);'\n"
            "from pybpf._sys import libbpf, fast\nprint(libbpf.NATIVE, fast.MODE, libbpf.has_symbol('pybpf_test_only'))")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "abi", "False"]
    assert "built from other declarations" in proc.stderr and "make ext" in proc.stderr


def test_optional_symbols_are_detected_alike_and_never_called_when_absent(extension_built):
    """Every function of OPTIONAL_CDEF: has_symbol() agrees on both paths; in the compiled module
    an absent one is a weak reference whose call fails with EOPNOTSUPP (no jump to NULL)."""
    code = textwrap.dedent("""
        import json, re
        from pybpf._sys import libbpf
        from pybpf._sys.cdef import OPTIONAL_CDEF
        names = sorted(set(re.findall(r"([a-z_0-9]+)\\(", OPTIONAL_CDEF)))
        out = {"present": {n: libbpf.has_symbol(n) for n in names}, "calls": {}}
        if libbpf.NATIVE:
            ffi, lib = libbpf.ffi, libbpf.lib
            for name in names:
                if out["present"][name]:
                    continue
                fn = getattr(lib, name)
                args = [ffi.NULL if t.kind == "pointer" else 0 for t in ffi.typeof(fn).args]
                ffi.errno = 0
                ret = fn(*args)
                result = ffi.typeof(fn).result
                value = (ret == ffi.NULL) if result.kind == "pointer" else (None if ret is None else int(ret))
                out["calls"][name] = [value, ffi.errno]
        print(json.dumps(out))
    """)
    compiled, abi = _python(code), _python(code, PYBPF_NO_EXTENSION="1")
    assert compiled.returncode == 0 and abi.returncode == 0, compiled.stderr + abi.stderr
    compiled_out, abi_out = json.loads(compiled.stdout), json.loads(abi.stdout)
    assert compiled_out["present"] == abi_out["present"]
    assert "ring_buffer__consume_n" in compiled_out["present"]
    for name, (value, err) in compiled_out["calls"].items():
        assert err == errno.EOPNOTSUPP, name
        assert value in (True, -errno.EOPNOTSUPP, None), name  # NULL, -EOPNOTSUPP, or a void call
    absent = [n for n, present in compiled_out["present"].items() if not present]
    assert sorted(compiled_out["calls"]) == sorted(absent)
