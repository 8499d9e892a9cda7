"""``pybpf.open()`` + load + attach by ``SEC()`` pay for the object, not for what is around it.

- The attach kinds are declared as data (:data:`pybpf.link.KINDS`): every kind file's ``KIND``
  is its declaration, every declared verb is a ``Program`` method that attaches through that
  file, and attaching by ``SEC()`` imports no kind file.
- An object whose bytes passed the parser before (:mod:`pybpf.spec.parsed`) is not parsed again
  at open (no ``pybpf.spec.elf`` imported) and its ``file_spec`` is the same when asked for;
  changed bytes, another object name, a changed parser, ``PYBPF_NO_CACHE=1``, a verdict that is
  a symlink or a refused object: parsed (and refused) as before.
- ``logging`` is not imported by a process that never imported it, and libbpf's lines still
  reach a logger the program configures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pybpf
import pybpf.spec
from pybpf import link
from pybpf.errors import ObjectFormatError
from pybpf.kinds import ProgType
from pybpf.program import Program
from pybpf.spec import elf, parsed

from .conftest import ROOT

KIND_FILES = sorted(p.stem for p in (Path(link.__file__).parent).glob("*.py")
                    if "\nKIND = " in p.read_text())


def test_every_kind_file_is_declared_and_every_verb_attaches_through_its_file() -> None:
    assert sorted(k.module for k in link.KINDS) == KIND_FILES
    assert len({k.verb for k in link.KINDS}) == len(link.KINDS)
    for kind in link.KINDS:
        module = link.kind_module(kind.module)
        assert module.KIND is kind
        verb = getattr(Program, kind.verb)
        assert verb.__wrapped__ is module.attach, kind.verb  # functools.wraps of the kind's attach
        assert verb.__doc__ == module.attach.__doc__
    # the verb is a plain method once used: no descriptor left on the class
    assert all(callable(Program.__dict__[k.verb]) for k in link.KINDS)


def test_section_parsers_keep_their_old_names() -> None:
    from pybpf.link import iterator, uprobe_multi, usdt

    assert usdt.parse_usdt_section("usdt/bin:prov:name") == ("bin", "prov", "name")
    assert usdt.parse_usdt_section("usdt") is None
    with pytest.raises(pybpf.BpfError, match="usdt/BINARY:PROVIDER:NAME"):
        usdt.parse_usdt_section("usdt/bin:prov")
    assert uprobe_multi.parse_section("uretprobe.multi/libc.so.6:mall*") == ("libc.so.6", "mall*", True)
    assert uprobe_multi.parse_section("uprobe.multi/nocolon") is None
    assert iterator.is_iterator.__doc__ and link.is_iterator_section(ProgType.TRACING, "iter/task")
    assert not link.is_iterator_section(ProgType.TRACING, "fentry/x")


def test_spec_package_offers_elf_names() -> None:
    assert pybpf.spec.__all__ == elf.__all__
    assert all(getattr(pybpf.spec, n) is getattr(elf, n) for n in elf.__all__)


_PROBE = """
import json, sys
import pybpf
with pybpf.open(pybpf.bundled("execsnoop")) as obj:
    obj.load()
    obj.attach()
    loaded = sorted(m for m in sys.modules if m in ("logging", "subprocess", "socket", "pybpf.spec.elf",
                                                    "pybpf.btf.relo", "pybpf.btf.ext")
                    or (m.startswith("pybpf.link.") and m != "pybpf.link.base"))
    spec = obj.file_spec
    print(json.dumps({"loaded": loaded, "maps": [(m.name, m.max_entries) for m in spec.maps],
                      "programs": sorted(p.name for p in spec.programs),
                      "relos": [r.path for r in spec.core_relocations]}))
"""


def _probe(cache: Path, **extra: str) -> dict[str, object]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), **extra}
    env.pop("PYBPF_NO_CACHE", None) if "PYBPF_NO_CACHE" not in extra else None
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_open_parses_once_and_imports_no_kind_file_nor_logging(kernel: None, tmp_path: Path) -> None:
    first, second = _probe(tmp_path), _probe(tmp_path)
    assert first["loaded"] == ["pybpf.btf.ext", "pybpf.btf.relo", "pybpf.spec.elf"]  # parsed at open
    assert second["loaded"] == []  # known bytes: no parser, no kind file, no logging
    assert {k: v for k, v in first.items() if k != "loaded"} == {k: v for k, v in second.items() if k != "loaded"}
    assert first["relos"], "execsnoop is a CO-RE object"
    off = _probe(tmp_path, PYBPF_NO_CACHE="1")
    assert off["loaded"] == first["loaded"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PYBPF_NO_CACHE", raising=False)
    return tmp_path / "pybpf" / "parsed"


def test_verdict_is_kept_for_exactly_these_bytes_name_and_parser(cache: Path, bundled,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = Path(bundled("opensnoop")).read_bytes()
    assert not parsed.known_parsed(data)
    with pybpf.open(data):
        pass
    assert parsed.known_parsed(data)
    assert not parsed.known_parsed(data, "other")         # another object name
    changed = bytearray(data)
    changed[-1] ^= 0xFF
    assert not parsed.known_parsed(bytes(changed))        # other bytes
    with monkeypatch.context() as m:
        m.setattr(parsed, "_key", b"\x01" * 32)           # another parser
        assert not parsed.known_parsed(data)
    with monkeypatch.context() as m:
        m.setenv("PYBPF_NO_CACHE", "1")
        assert not parsed.known_parsed(data)
    assert [p.stat().st_mode & 0o777 for p in cache.iterdir()] == [0o600]
    assert cache.stat().st_mode & 0o777 == 0o700


def test_a_refused_object_is_never_kept_and_a_symlink_is_no_verdict(cache: Path, bundled, tmp_path: Path) -> None:
    data = Path(bundled("opensnoop")).read_bytes()
    bad = data[:len(data) // 2]  # cut: the section headers are gone
    for _ in range(2):
        with pytest.raises(ObjectFormatError):
            pybpf.open(bad)
        assert not parsed.known_parsed(bad)
    cache.mkdir(parents=True, exist_ok=True)
    name = parsed.verdict_name(data, "")
    assert name is not None
    target = tmp_path / "planted"
    target.write_bytes(b"")
    (cache / name).symlink_to(target)
    assert not parsed.known_parsed(data)
    with pybpf.open(data) as obj:  # parsed, and nothing written through the symlink
        assert obj.file_spec.maps
    assert (cache / name).is_symlink() and target.read_bytes() == b""


def test_libbpf_lines_reach_a_logger_configured_after_import(kernel: None) -> None:
    code = """
import sys
import pybpf
assert "logging" not in sys.modules
with pybpf.open(pybpf.bundled("counters")) as obj:
    obj.load()
assert "logging" not in sys.modules
import logging
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())
log = logging.getLogger("pybpf.libbpf")
log.addHandler(Keep())
log.setLevel(logging.DEBUG)
with pybpf.open(pybpf.bundled("counters")) as obj:
    obj.load()
assert any("libbpf" in x or "map" in x for x in lines), lines
assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("pybpf").handlers)
print("ok", len(lines))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr


def test_visible_fast_path_is_the_pattern_s_answer() -> None:
    """``visible`` returns printable ASCII as is without compiling its patterns: the same answer
    as the patterns give, for every ASCII character and mixes around them."""
    import re

    from pybpf import text

    controls = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\udc80-\udc9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
    samples = [chr(c) for c in range(0x80)] + ["comm\tx", "a b", "é", "x\x1b[0m", "\u202e", "ok/path.txt"]
    for s in samples + [a + b for a in samples for b in ("", "z", "\n")]:
        expected = controls.sub(text._escape, s) if controls.search(s) else s
        assert text.visible(s) == expected, repr(s)
