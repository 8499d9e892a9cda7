"""libbpf's ``btf_dump`` C writer, run entirely in C, behind a binding of its own.

``btf_dump__new`` takes a printf-like callback that libbpf calls once per
fragment of output (millions for vmlinux). A Python callback there costs a cffi
crossing and a ``vsnprintf`` per fragment; instead libc's own ``vfprintf`` is
the callback and its context a ``FILE *`` from ``open_memstream``, so libbpf
formats straight into a growing C buffer. Python only loops over the type ids
and copies the finished text out once. (libbpf calls the callback with a
``va_list`` exactly as ``vfprintf`` takes one, and the ``int`` ``vfprintf``
returns is not read.)

The few declarations this needs get their own small cffi ``FFI``: parsing
:mod:`pybpf._sys.cdef` whole costs more than the dump itself, and ``pybpf btf
dump`` should cost what the dump costs. Failures are reported through
:mod:`pybpf._sys.libbpf` (loaded then), with libbpf's own reason.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cffi import FFI

__all__ = ["dump_c"]

_ffi = FFI()
_ffi.cdef("""
struct btf;
struct btf_ext;
struct btf_dump;
typedef void (*btf_dump_printf_fn_t)(void *ctx, const char *fmt, void *args);
struct btf_dump_opts { size_t sz; };
struct btf *btf__parse(const char *path, struct btf_ext **btf_ext);
void btf__free(struct btf *btf);
unsigned int btf__type_cnt(const struct btf *btf);
int btf__find_by_name(const struct btf *btf, const char *type_name);
struct btf_dump *btf_dump__new(const struct btf *btf, btf_dump_printf_fn_t printf_fn, void *ctx,
                               const struct btf_dump_opts *opts);
void btf_dump__free(struct btf_dump *d);
int btf_dump__dump_type(struct btf_dump *d, unsigned int id);

typedef struct _IO_FILE FILE;
FILE *open_memstream(char **ptr, size_t *sizeloc);
int vfprintf(FILE *stream, const char *format, void *ap);
int fclose(FILE *stream);
void free(void *ptr);
""")
_lib: Any = _ffi.dlopen("libbpf.so.1")
_libc: Any = _ffi.dlopen(None)
_VFPRINTF = _ffi.cast("btf_dump_printf_fn_t", _ffi.addressof(_libc, "vfprintf"))


def _parse_failed(path: str) -> BaseException:
    """The error libbpf's parse gives, with its logged reason (through the full binding)."""
    from pybpf._sys import libbpf as full
    from pybpf.errors import ObjectFormatError

    with full.capture() as log:
        btf = full.lib.btf__parse(path.encode(), full.ffi.NULL)
    err = full.ffi.errno
    if btf != full.ffi.NULL:  # parsed the second time: report the first errno
        full.lib.btf__free(btf)
    lines = log.text.strip().splitlines()
    why = lines[-1].removeprefix("libbpf: ") if lines else full.strerror(err)
    return ObjectFormatError(f"{path}: cannot parse BTF: {why}", err, path=path, log=log.text)


def _check(ret: int, what: str) -> None:
    if ret < 0:
        from pybpf._sys import libbpf as full

        full.check(ret, what)


def dump_c(path: str, type_names: Sequence[str] | None = None) -> bytes:
    """The C declarations libbpf's btf_dump writes for every type of the BTF in ``path`` (a raw
    BTF file or an ELF with ``.BTF``), or for ``type_names`` and what they need."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    btf = _lib.btf__parse(path.encode(), _ffi.NULL)
    if btf == _ffi.NULL:
        raise _parse_failed(path)
    buf = _ffi.new("char **")
    size = _ffi.new("size_t *")
    stream = _ffi.NULL
    dumper = _ffi.NULL
    try:
        if type_names:
            ids = []
            for name in type_names:
                type_id = _lib.btf__find_by_name(btf, name.encode())
                if type_id < 0:
                    raise KeyError(f"no type named {name!r} in {path}")
                ids.append(type_id)
        else:
            ids = range(1, _lib.btf__type_cnt(btf))  # type: ignore[assignment]
        stream = _libc.open_memstream(buf, size)
        if stream == _ffi.NULL:
            raise MemoryError("open_memstream failed")
        opts = _ffi.new("struct btf_dump_opts *", {"sz": _ffi.sizeof("struct btf_dump_opts")})
        dumper = _lib.btf_dump__new(btf, _VFPRINTF, stream, opts)
        if dumper == _ffi.NULL:
            _check(-(_ffi.errno or 22), "btf_dump__new")
        dump = _lib.btf_dump__dump_type
        for type_id in ids:
            err = dump(dumper, type_id)
            if err:
                _check(err, f"btf_dump__dump_type({type_id})")
    finally:
        if dumper != _ffi.NULL:
            _lib.btf_dump__free(dumper)
        if stream != _ffi.NULL:
            _libc.fclose(stream)  # flushes: *buf and *size now hold the whole text
        _lib.btf__free(btf)
    try:
        return bytes(_ffi.buffer(buf[0], size[0]))
    finally:
        _libc.free(buf[0])
