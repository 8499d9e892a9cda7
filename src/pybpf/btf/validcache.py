"""Validation verdicts kept between runs: "these BTF bytes passed :func:`validate_btf`".

Validating a whole vmlinux BTF is most of what ``pybpf check`` does against one target
(numpy and the vectorised proof: 0.3-0.5 s), and a fleet checks the same few kernels again
and again. A verdict depends on the bytes and on the validator alone, so it is kept as an
empty file named by a keyed BLAKE2b digest of the bytes, the key being a digest of the
validator's own source (parser, model, per-type and vectorised rules): a pybpf whose rules
differ never reads another's verdicts. Only "valid" is kept; a blob that fails is validated
(and named) again every time.

The files live in a per-user directory checked as the BTFHub cache is
(:func:`pybpf.btf.hub.private_cache_dir`: this user's, mode 0700, under parents no other user
can change), so no other user can plant a verdict; an entry counts only if it is a regular
file this user owns. Without a safe directory, or with ``PYBPF_NO_CACHE=1``, nothing is kept
and every run validates. Only blobs that stand alone are kept (no split BTF, no DATASEC
fixed up from an ELF): their verdict is a function of their bytes. Pure: files only.
"""

from __future__ import annotations

import os

try:  # built into CPython; hashlib would also load OpenSSL's libcrypto
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a CPython built without it
    from hashlib import blake2b

from pybpf.btf.model import TypeGraph
from pybpf.btf.verdicts import ENV, VerdictStore

__all__ = ["ENV", "MAX_ENTRIES", "cache_dir", "known_valid", "remember_valid", "verdict_key"]

MAX_ENTRIES = 4096  # beyond this many, the older half is dropped when one is added
_STORE = VerdictStore("valid", "BTF validation verdicts", MAX_ENTRIES)
_SOURCES = ("types.py", "model.py", "validate.py", "fastvalid.py", "elfsection.py")
_validator: bytes | None = None


def _validator_digest() -> bytes:
    """A digest of the code a verdict comes from (b"" when its source cannot be read)."""
    global _validator
    if _validator is None:
        h = blake2b(digest_size=32, person=b"pybpf-validator")
        here = os.path.dirname(os.path.abspath(__file__))
        try:
            for name in _SOURCES:
                with open(os.path.join(here, name), "rb") as f:
                    h.update(f.read())
        except OSError:
            _validator = b""
        else:
            _validator = h.digest()
    return _validator


def verdict_key(btf: TypeGraph) -> str | None:
    """The name of ``btf``'s verdict file, or None when its verdict is not a function of its
    bytes alone (split BTF, fixed-up DATASECs) or the validator's source is unknown."""
    if getattr(btf, "base", None) is not None or getattr(btf, "_datasec_fix", None):
        return None
    key = _validator_digest()
    if not key:
        return None
    return blake2b(btf._data, digest_size=32, key=key).hexdigest()  # type: ignore[attr-defined]


def cache_dir() -> str | None:
    """The checked per-user verdict directory (None: disabled, or no safe place)."""
    return _STORE.directory()


def known_valid(btf: TypeGraph) -> bool:
    """Whether this user's cache says ``btf``'s bytes passed validation before."""
    where = cache_dir()  # first: with the cache off, no digest of the bytes is made
    key = verdict_key(btf) if where is not None else None
    return where is not None and key is not None and _STORE.known(where, key)


def remember_valid(btf: TypeGraph) -> None:
    """Record that ``btf`` passed validation (best effort: a cache that cannot be written is
    simply not used)."""
    where = cache_dir()
    key = verdict_key(btf) if where is not None else None
    if where is not None and key is not None:
        _STORE.remember(where, key)
