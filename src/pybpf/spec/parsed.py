"""Parse verdicts kept between runs: "these object bytes passed :class:`ObjectSpec`".

``pybpf.open()`` parses an object in Python before libbpf sees it (precise errors; libbpf
never sees a malformed ELF). For a tool that is the same bundled object at every start, and
the parse with the modules it needs (:mod:`pybpf.spec.elf`, ``.BTF.ext``, the CO-RE engine
that spells relocations out) is ~15 ms of CPU each time. A verdict depends on the bytes, the
object name given and the parser alone, so it is kept as an empty file named by a keyed
BLAKE2b digest of the bytes and the name; the key is a digest of the parser itself: path,
size, mtime and inode of every module of :mod:`pybpf.spec` and :mod:`pybpf.btf` (with
:mod:`pybpf.errors` and :mod:`pybpf.kinds`) and the Python version, so an edited or
reinstalled pybpf never reads another's verdicts. Only "parsed" is kept: a file that failed
is parsed (and refused) again every time. Nothing is read from a verdict but its existence.

The files live in a per-user directory checked as the BTFHub cache is
(:func:`pybpf.btf.hub.private_cache_dir`: this user's, mode 0700, under parents no other user
can change), and count only as regular files this user owns; without a safe directory, or with
``PYBPF_NO_CACHE=1``, nothing is kept and every open parses. Pure: files only.
"""

from __future__ import annotations

import os
import sys

try:  # built into CPython; hashlib would also load OpenSSL's libcrypto
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a CPython built without it
    from hashlib import blake2b

from pybpf.btf.verdicts import ENV, VerdictStore

__all__ = ["ENV", "MAX_ENTRIES", "cache_dir", "known_parsed", "parser_key", "remember_parsed", "verdict_name"]

MAX_ENTRIES = 1024  # beyond this many, the older half is dropped when one is added
_STORE = VerdictStore("parsed", "object parse verdicts", MAX_ENTRIES)
_key: bytes | None = None


def parser_key() -> bytes:
    """A digest of the parser's files (b"" when one cannot be read: then nothing is kept)."""
    global _key
    if _key is None:
        h = blake2b(digest_size=32, person=b"pybpf-objparse")
        h.update(repr(sys.version_info).encode())
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        try:
            for sub, names in (("spec", None), ("btf", None), ("", ("errors.py", "kinds.py"))):
                where = os.path.join(pkg, sub)
                for name in sorted(names or (n for n in os.listdir(where) if n.endswith(".py"))):
                    st = os.stat(os.path.join(where, name))
                    h.update(f"{sub}/{name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}\n".encode())
        except OSError:
            _key = b""
        else:
            _key = h.digest()
    return _key


def verdict_name(data: bytes, name: str) -> str | None:
    """The name of the verdict file of ``data`` opened with object name ``name`` (None: no key)."""
    key = parser_key()
    if not key:
        return None
    h = blake2b(digest_size=32, key=key)
    h.update(name.encode("utf-8", "surrogateescape") + b"\0")
    h.update(data)
    return h.hexdigest()


def cache_dir() -> str | None:
    """The checked per-user verdict directory (None: disabled, or no safe place)."""
    return _STORE.directory()


def known_parsed(data: bytes, name: str = "") -> bool:
    """Whether this user's cache says ``data`` (opened as ``name``) passed the parse before."""
    where = cache_dir()
    key = verdict_name(data, name) if where is not None else None
    return where is not None and key is not None and _STORE.known(where, key)


def remember_parsed(data: bytes, name: str = "") -> None:
    """Record that ``data`` (opened as ``name``) passed the parse (best effort)."""
    where = cache_dir()
    key = verdict_name(data, name) if where is not None else None
    if where is not None and key is not None:
        _STORE.remember(where, key)
