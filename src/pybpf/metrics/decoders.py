"""Label decoders: a raw key field (a number, a ``char[]``, address bytes) -> label text.

Owns the table of decoder names a metrics config may use (``decoder = "syscall"``)
and the per-value cache that makes decoding 10k series per scrape cheap: each
distinct raw value is decoded once per collector. The decoding itself lives in
:mod:`pybpf.toolkit`, where tools use it too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from pybpf import toolkit

__all__ = ["BATCH_DECODERS", "DECODERS", "CachedDecoder", "decoder_names", "label_text"]


# Label text of a C string: valid UTF-8 as it is, a backslash doubled, every byte that is not
# UTF-8 as \xNN (surrogateescape keeps it as U+DC80..U+DCFF until then). One label value per
# byte string and back: names that differ only in invalid bytes never share a series.
_LABEL_ESCAPES = {0x5C: "\\\\", **{0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)}}


def label_text(value: Any) -> str:
    """A ``char[N]`` value (bytes up to the first NUL) as a lossless, collision-free label value."""
    if isinstance(value, np.ndarray):
        value = value.tobytes()
    raw = bytes(value).split(b"\0", 1)[0]
    if raw.isascii() and b"\\" not in raw:
        return raw.decode("ascii")
    return raw.decode("utf-8", "surrogateescape").translate(_LABEL_ESCAPES)


def _text(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return label_text(value)
    if isinstance(value, np.ndarray):
        return " ".join(str(v) for v in value.tolist())
    return str(value)


def _ipv4(value: Any) -> str:
    return toolkit.ip_address(value if isinstance(value, (int, np.integer)) else bytes(value)[:4], 2)


def _ipv6(value: Any) -> str:
    return toolkit.ip_address(bytes(value)[:16], 10)


def _inet(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return _ipv4(value)
    data = bytes(value)
    # a 16-byte field holding a v4 address in its first 4 bytes (zeros after), as tracepoints store them
    if len(data) == 4 or (len(data) == 16 and not any(data[4:])):
        return toolkit.ip_address(data[:4], 2)
    return toolkit.ip_address(data, 10)


_SYMBOLIZER: Any = None
_STACKS: dict[bytes, str] = {}
_MAX_PROCESSES = 512      # process snapshots the ustack decoder keeps before dropping exited ones


def _symbolizer() -> Any:
    global _SYMBOLIZER
    if _SYMBOLIZER is None:
        from pybpf.symbolize import Symbolizer
        _SYMBOLIZER = Symbolizer()
    return _SYMBOLIZER


def _addresses(value: Any) -> np.ndarray:
    """A zero-padded address array (a numpy field, or its raw bytes as a scrape passes them)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        a = np.frombuffer(raw[:len(raw) - len(raw) % 8], np.uint64)
    else:
        a = np.asarray(value).reshape(-1).astype(np.uint64)
    zero = np.flatnonzero(a == 0)
    return a[:zero[0]] if len(zero) else a


def _kstack(value: Any) -> str:
    """A ``u64[N]`` field of kernel addresses (``bpf_get_stack()``, zero-padded) -> its symbol
    names, innermost first, one per line (as ebpf_exporter's kstack decoder)."""
    return _kstacks([value])[0]


def _pid_and_addresses(value: Any) -> tuple[int, np.ndarray]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        # a scrape passes a struct field as its bytes: { __u32 pid; (pad) __u64 addrs[N]; }
        raw = bytes(value)
        if len(raw) < 16:
            raise ValueError("the ustack decoder needs a struct field: { __u32 pid; __u64 addrs[N]; }")
        return int.from_bytes(raw[:4], "little"), _addresses(raw[8:])
    names = getattr(getattr(value, "dtype", None), "names", None)
    if not names:
        raise ValueError("the ustack decoder needs a struct field: { __u32 pid; __u64 addrs[N]; }")
    pid_name = next((n for n in names if value.dtype[n].kind in "iu" and value.dtype[n].shape == ()), None)
    arr_name = next((n for n in names if value.dtype[n].shape != ()), None)
    if pid_name is None or arr_name is None:
        raise ValueError("the ustack decoder needs a pid member and an address array member")
    return int(value[pid_name]), _addresses(value[arr_name])


def _ustack(value: Any) -> str:
    """A struct field holding a pid (its first integer member: ``pid``/``tgid``) and a ``u64[N]``
    of that process's user addresses -> names, innermost first, one per line. A process is
    read when its first stack is named (an exporter names stacks at scrape time: one that has
    exited by then reads ``[unknown]``); snapshots of exited processes are let go."""
    return _ustacks([value])[0]


def _name_all(stacks: list[np.ndarray], resolve: Callable[[np.ndarray], np.ndarray]) -> list[str]:
    """The text of each stack, with the addresses of all of them resolved in one call."""
    flat = np.concatenate(stacks) if stacks else np.zeros(0, np.uint64)
    names = resolve(flat).tolist() if len(flat) else []
    out, at = [], 0
    for stack in stacks:
        out.append("\n".join(names[at:at + len(stack)]))
        at += len(stack)
    return out


def _keep(texts: dict[bytes, str]) -> None:
    if len(_STACKS) + len(texts) >= 50_000:
        _STACKS.clear()
    _STACKS.update(texts)


def _kstacks(values: list[Any]) -> list[str]:
    """Many kstack labels: every kernel address not named yet is resolved in one lookup."""
    stacks = [_addresses(v) for v in values]
    keys = [b"k" + a.tobytes() for a in stacks]
    texts = {k: _STACKS[k] for k in keys if k in _STACKS}
    todo = [i for i, k in enumerate(keys) if k not in texts]
    if todo:
        new = _name_all([stacks[i] for i in todo], lambda a: _symbolizer().kernel(a).names)
        fresh = {keys[i]: t for i, t in zip(todo, new)}
        _keep(fresh)
        texts.update(fresh)
    return [texts[k] for k in keys]


def _user_names(sym: Any, pid: int, addrs: np.ndarray) -> np.ndarray:
    return sym.user(pid, addrs).names  # type: ignore[no-any-return]


def _ustacks(values: list[Any]) -> list[str]:
    """Many ustack labels: per process, every address not named yet is resolved in one lookup."""
    found = [_pid_and_addresses(v) for v in values]
    keys = [b"u%d:" % pid + a.tobytes() for pid, a in found]
    texts = {k: _STACKS[k] for k in keys if k in _STACKS}
    todo: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        if k not in texts:
            todo.setdefault(found[i][0], []).append(i)
    if todo:
        sym = _symbolizer()
        if len(sym.processes) >= _MAX_PROCESSES:
            sym.forget_exited()
        fresh: dict[bytes, str] = {}
        for pid, rows in todo.items():
            new = _name_all([found[i][1] for i in rows], functools.partial(_user_names, sym, pid))
            fresh.update((keys[i], t) for i, t in zip(rows, new))
        _keep(fresh)
        texts.update(fresh)
    return [texts[k] for k in keys]


DECODERS: dict[str, Callable[[Any], str]] = {
    "none": _text,
    "cstring": label_text,
    "syscall": lambda v: toolkit.syscall_name(int(v)),
    "ksym": lambda v: toolkit.ksym(int(v)),
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "inet": _inet,
    "cgroup": lambda v: toolkit.cgroup_path(int(v)),
    "errno": lambda v: toolkit.errno_name(int(v)),
    "tcp_state": lambda v: toolkit.tcp_state(int(v)),
    "hex": lambda v: f"0x{int(v):x}",
    "kstack": _kstack,
    "ustack": _ustack,
}

# decoders that name a whole column at once (one symbolizer lookup for all its stacks)
BATCH_DECODERS: dict[str, Callable[[list[Any]], list[str]]] = {
    "kstack": _kstacks,
    "ustack": _ustacks,
}


def decoder_names() -> list[str]:
    """The names a config's ``decoder =`` accepts."""
    return sorted(DECODERS)


class CachedDecoder:
    """One decoder with a cache of raw value -> text (cleared when it passes ``limit`` entries)."""

    __slots__ = ("_cache", "_fn", "_limit", "name")

    def __init__(self, name: str, limit: int = 200_000) -> None:
        self.name = name
        self._fn = DECODERS[name]
        self._cache: dict[Any, str] = {}
        self._limit = limit

    def __call__(self, value: Any) -> str:
        """The label text of one raw value (cached)."""
        try:
            return self._cache[value]
        except KeyError:
            pass
        except TypeError:  # unhashable (an array field): decode every time
            return self._fn(value)
        if len(self._cache) >= self._limit:
            self._cache.clear()
        text = self._cache[value] = self._fn(value)
        return text

    def many(self, values: list[Any]) -> list[str]:
        """Decode a column of raw values (the values not cached yet in one call, for a decoder
        that has a batch form)."""
        batch = BATCH_DECODERS.get(self.name)
        if batch is None:
            return [self(v) for v in values]
        try:
            out: list[str | None] = [self._cache.get(v) for v in values]
        except TypeError:   # unhashable values (array fields): no cache
            return batch(values)
        missing = [i for i, text in enumerate(out) if text is None]
        if missing:
            if len(self._cache) + len(missing) >= self._limit:
                self._cache.clear()
            for i, text in zip(missing, batch([values[i] for i in missing])):
                out[i] = self._cache[values[i]] = text
        return out  # type: ignore[return-value]
