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

__all__ = ["FASTCALL_TAG", "KFUNC_TAG", "dump_c"]

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

/* struct btf_type, and the 4 bytes after it: a DECL_TAG's component_idx (read for DECL_TAGs only) */
struct btf_type_then { unsigned int name_off; unsigned int info; unsigned int size_or_type; int then; };
const struct btf_type_then *btf__type_by_id(const struct btf *btf, unsigned int id);
const char *btf__name_by_offset(const struct btf *btf, unsigned int offset);
struct btf_dump_emit_type_decl_opts { size_t sz; const char *field_name; int indent_level; bool strip_mods; };
int btf_dump__emit_type_decl(struct btf_dump *d, unsigned int id, const struct btf_dump_emit_type_decl_opts *opts);

typedef struct _IO_FILE FILE;
int fputs(const char *s, FILE *stream);
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


_KIND_FUNC, _KIND_DECL_TAG = 12, 17
KFUNC_TAG, FASTCALL_TAG = b"bpf_kfunc", b"bpf_fastcall"


def _tagged_funcs(btf: Any) -> tuple[list[tuple[bytes, int, Any]], set[int]]:
    """(name, FUNC id, name pointer) of every function tagged ``bpf_kfunc``, sorted by name, and
    the ids of those tagged ``bpf_fastcall``: the kernel's kfuncs, as pahole marks them in
    vmlinux BTF. A few Python calls per kfunc, none per type (the C dump's own rule)."""
    type_by_id, name_of, string = _lib.btf__type_by_id, _lib.btf__name_by_offset, _ffi.string
    tag_names: dict[int, bytes] = {}  # the strings are deduplicated: one name_off per tag name
    kfuncs: list[tuple[bytes, int, Any]] = []
    fastcall: set[int] = set()
    for type_id in range(1, _lib.btf__type_cnt(btf)):
        t = type_by_id(btf, type_id)
        if (t.info >> 24) & 0x1F != _KIND_DECL_TAG or t.then != -1:
            continue  # a tag on the whole declaration has component_idx -1
        target = t.size_or_type
        target_type = type_by_id(btf, target)
        if target_type == _ffi.NULL or (target_type.info >> 24) & 0x1F != _KIND_FUNC:
            continue
        tag = tag_names.get(t.name_off)
        if tag is None:
            tag = tag_names[t.name_off] = string(name_of(btf, t.name_off))
        if tag == KFUNC_TAG:
            c_name = name_of(btf, target_type.name_off)  # lives as long as the BTF
            kfuncs.append((string(c_name), target, c_name))
        elif tag == FASTCALL_TAG:
            fastcall.add(target)
    kfuncs.sort()
    return kfuncs, fastcall


def _dump_kfuncs(btf: Any, dumper: Any, stream: Any) -> None:
    """bpftool's kfunc block: ``extern <prototype> __weak __ksym;`` for each kfunc, under
    ``#ifndef BPF_NO_KFUNC_PROTOTYPES`` (what bpftool >= 7.5 writes into vmlinux.h)."""
    kfuncs, fastcall = _tagged_funcs(btf)
    opts = _ffi.new("struct btf_dump_emit_type_decl_opts *", {"sz": _ffi.sizeof("struct btf_dump_emit_type_decl_opts")})
    fputs, emit, type_by_id = _libc.fputs, _lib.btf_dump__emit_type_decl, _lib.btf__type_by_id
    fputs(b"\n/* BPF kfuncs */\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n", stream)
    for name, func_id, c_name in kfuncs:
        opts.field_name = c_name
        fputs(b"extern __bpf_fastcall " if func_id in fastcall else b"extern ", stream)
        err = emit(dumper, type_by_id(btf, func_id).size_or_type, opts)
        if err:
            _check(err, f"btf_dump__emit_type_decl({name.decode()})")
        fputs(b" __weak __ksym;\n", stream)
    fputs(b"#endif\n\n", stream)


def dump_c(path: str, type_names: Sequence[str] | None = None, *, kfuncs: bool = False) -> bytes:
    """The C declarations libbpf's btf_dump writes for every type of the BTF in ``path`` (a raw
    BTF file or an ELF with ``.BTF``), or for ``type_names`` and what they need; ``kfuncs``
    adds the prototypes of the functions the BTF tags ``bpf_kfunc`` (whole dumps only)."""
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
        if kfuncs and not type_names:
            _dump_kfuncs(btf, dumper, stream)
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
