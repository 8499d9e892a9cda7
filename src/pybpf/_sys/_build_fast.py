"""Build script of ``pybpf._sys._fast``: the compiled (cffi API-mode) binding and hot-path helpers.

``pybpf._sys.libbpf`` binds libbpf either through this module or, when it is
absent, in cffi's ABI mode (no compiler needed, the cdef parsed at every start,
every call through libffi). This out-of-line module, linked with ``-lbpf``, holds:

* the whole binding of ``pybpf._sys.cdef`` (``CDEF``, ``OPTIONAL_CDEF``,
  ``LIBC_CDEF``), compiled from those same declarations (not from libbpf's
  headers: the layouts are the ones ``tests/test_binding_layout.py`` checks
  against the headers, on both paths alike), so importing pybpf parses no C;
  ``pb_cdef_crc()`` says which declarations it was built from, and a module
  older than the installed ``cdef.py`` is not used;
* the symbols newer than libbpf 1.1 (``OPTIONAL_CDEF``) as weak references: the
  module loads with any libbpf >= 1.1, ``pb_has_symbol(name)`` says which the
  running libbpf has, and calling one it lacks fails with ``-EOPNOTSUPP`` (a
  pointer-returning one with NULL and errno ``EOPNOTSUPP``), never a jump to NULL;
* typed per-key helpers: ``pb_lookup_<K>(fd, key, value*)``, ``pb_delete_<K>(fd, key)``,
  ``pb_update_<K>(fd, key, value*, flags)`` and ``pb_update_<K>_<V>(fd, key, value, flags)``
  for integer keys ``K`` and integer/float values ``V`` passed by value (cffi
  converts and range-checks the Python int; no buffer write from Python);
* loops over numpy key arrays: ``pb_lookup_keys``, ``pb_update_keys``,
  ``pb_delete_keys``: one ``bpf()`` syscall per key, no Python per key;
* libbpf's print callback in C, and the ring buffer's copying reader (``pb_ring_copy``).

Built by the package build (``setup.py`` adds it as an optional extension: a
machine without a compiler or ``libbpf-dev`` gets the ABI-mode paths) and, for
a dev tree, by ``make setup`` / ``python src/pybpf/_sys/_build_fast.py``,
which writes ``_fast.*.so`` next to this file. ``pybpf._sys.libbpf`` picks it up.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import zlib
from pathlib import Path
from typing import Any

from cffi import FFI

MODULE = "pybpf._sys._fast"

# (name, C type) of the integer types keys may have, and the scalar types values may have
KEY_TYPES = [("u8", "uint8_t"), ("u16", "uint16_t"), ("u32", "uint32_t"), ("u64", "uint64_t"),
             ("i8", "int8_t"), ("i16", "int16_t"), ("i32", "int32_t"), ("i64", "int64_t")]
VALUE_TYPES = KEY_TYPES + [("f32", "float"), ("f64", "double")]

_LOOPS_CDEF = """
long pb_lookup_keys(int fd, const void *keys, size_t key_size, size_t n,
                    void *values, size_t value_size, uint8_t *found, size_t *failed);
long pb_update_keys(int fd, const void *keys, size_t key_size, size_t n,
                    const void *values, size_t value_size, uint64_t flags, size_t *failed);
long pb_delete_keys(int fd, const void *keys, size_t key_size, size_t n,
                    uint8_t *deleted, size_t *failed);
int pb_lookup(int fd, const void *key, void *value);
void pb_install_print(void);
size_t pb_capture_begin(int level);
size_t pb_capture_length(void);
size_t pb_capture_copy(size_t start, char *out, size_t room);
void pb_capture_end(int level, size_t keep);
void pb_set_forward_level(int level);
extern "Python" void pb_forward(int level, const char *text);
int pb_update(int fd, const void *key, const void *value, uint64_t flags);
int pb_delete(int fd, const void *key);
long pb_ring_copy(const void *data, uint64_t mask, const uint64_t *producer, uint64_t pos, uint32_t size,
                  void *out, size_t limit, uint64_t *end, uint32_t *stop_header);
"""

_LOOPS_SOURCE = r"""

/* libbpf's print callback, in C. libbpf prints ~10-200 lines per open+load
   (every CO-RE relocation at DEBUG); formatting each through a Python
   callback cost a large share of pybpf's open+load overhead. Here each line
   is formatted with vsnprintf into this thread's capture buffer (records of
   one level byte, the text, a NUL) while a capture is active, and handed to
   Python (pb_forward) only when the pybpf.libbpf logger wants its level. */
static void pb_forward(int level, const char *text);
static __thread char *pb_cap;
static __thread size_t pb_cap_len, pb_cap_room;
static __thread int pb_cap_level = -1;   /* capture lines of level <= this (0 warn, 1 info, 2 debug) */
static int pb_fwd_level = 0;             /* forward lines of level <= this to Python */

static void pb_append(int level, const char *text, size_t n)
{
    if (pb_cap_len + n + 2 > pb_cap_room) {
        size_t room = pb_cap_room ? pb_cap_room : 16384;
        char *grown;
        while (pb_cap_len + n + 2 > room)
            room *= 2;
        grown = realloc(pb_cap, room);
        if (!grown)
            return;  /* out of memory: the line is lost, never the process */
        pb_cap = grown;
        pb_cap_room = room;
    }
    pb_cap[pb_cap_len++] = (char)('0' + level);
    memcpy(pb_cap + pb_cap_len, text, n);
    pb_cap_len += n;
    pb_cap[pb_cap_len++] = '\0';
}

static int pb_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
    int saved = errno;
    char local[1024], *text = local, *heap = NULL;
    va_list copy;
    int n;

    if ((int)level > pb_cap_level && (int)level > pb_fwd_level)
        return 0;
    va_copy(copy, args);
    n = vsnprintf(local, sizeof(local), fmt, copy);
    va_end(copy);
    if (n >= (int)sizeof(local) && (heap = malloc((size_t)n + 1)) != NULL) {
        va_copy(copy, args);
        vsnprintf(heap, (size_t)n + 1, fmt, copy);
        va_end(copy);
        text = heap;
    } else if (n >= (int)sizeof(local)) {
        n = sizeof(local) - 1;
    }
    if (n > 0 && (int)level <= pb_cap_level)
        pb_append((int)level, text, (size_t)n);
    if (n > 0 && (int)level <= pb_fwd_level)
        pb_forward((int)level, text);
    free(heap);
    errno = saved;
    return 0;
}

static void pb_install_print(void) { libbpf_set_print((libbpf_print_fn_t)(void *)pb_print); }
static void pb_set_forward_level(int level) { pb_fwd_level = level; }
static size_t pb_capture_begin(int level)
{
    if (level > pb_cap_level)
        pb_cap_level = level;
    return pb_cap_len;
}
static size_t pb_capture_length(void) { return pb_cap_len; }
static size_t pb_capture_copy(size_t start, char *out, size_t room)
{
    size_t n = start < pb_cap_len ? pb_cap_len - start : 0;
    if (n > room)
        n = room;
    memcpy(out, pb_cap + start, n);
    return n;
}
static void pb_capture_end(int level, size_t keep)
{
    pb_cap_level = level;
    if (keep < pb_cap_len)
        pb_cap_len = keep;
}

/* Every helper returns what libbpf returns: 0 or -errno. The loops return the
   number of keys found/deleted (>= 0), or -errno of the first error other than
   ENOENT, with its index in *failed. */

static int pb_lookup(int fd, const void *key, void *value)
{ return bpf_map_lookup_elem(fd, key, value); }
static int pb_update(int fd, const void *key, const void *value, uint64_t flags)
{ return bpf_map_update_elem(fd, key, value, flags); }
static int pb_delete(int fd, const void *key)
{ return bpf_map_delete_elem(fd, key); }

static long pb_lookup_keys(int fd, const void *keys, size_t key_size, size_t n,
                           void *values, size_t value_size, uint8_t *found, size_t *failed)
{
    const char *k = keys;
    char *v = values;
    long hits = 0;
    for (size_t i = 0; i < n; i++, k += key_size, v += value_size) {
        int ret = bpf_map_lookup_elem(fd, k, v);
        if (ret == 0) {
            found[i] = 1;
            hits++;
        } else if (ret == -ENOENT) {
            found[i] = 0;
            memset(v, 0, value_size);
        } else {
            *failed = i;
            return ret;
        }
    }
    return hits;
}

static long pb_update_keys(int fd, const void *keys, size_t key_size, size_t n,
                           const void *values, size_t value_size, uint64_t flags, size_t *failed)
{
    const char *k = keys;
    const char *v = values;
    for (size_t i = 0; i < n; i++, k += key_size, v += value_size) {
        int ret = bpf_map_update_elem(fd, k, v, flags);
        if (ret < 0) {
            *failed = i;
            return ret;
        }
    }
    return (long)n;
}

/* The ring buffer's copying reader (RingBuffer.drain(into=...)): walk the record headers
   from `pos` up to the producer position and copy each committed record of `size`
   bytes into `out`, back to back, up to `limit` records. Discarded records are skipped;
   the walk stops before a busy record, or before a committed record of another size
   (its header in *stop_header, else 0). *end is where the next read starts: the caller
   stores it as the consumer position once it no longer reads the copied bytes. The
   data area is mapped twice, so a record that wraps past the end is contiguous. The
   producer position is loaded (acquire) before the headers, each header (acquire)
   before its payload, as libbpf's consumer does. */
#define PB_RB_BUSY (1U << 31)
#define PB_RB_DISCARD (1U << 30)
#define PB_RB_HDR 8

#define PB_RING_LOOP(SIZE)                                                            \
    while (pos < prod && n < limit) {                                                 \
        const char *rec = base + (pos & mask);                                        \
        uint32_t hdr = __atomic_load_n((const uint32_t *)rec, __ATOMIC_ACQUIRE);      \
        uint32_t len = hdr & (PB_RB_DISCARD - 1);                                     \
        if (hdr & PB_RB_BUSY)                                                         \
            break;                                                                    \
        if (!(hdr & PB_RB_DISCARD)) {                                                 \
            if (len != (SIZE)) {                                                      \
                *stop_header = hdr;                                                   \
                break;                                                                \
            }                                                                         \
            memcpy(o, rec + PB_RB_HDR, (SIZE));                                       \
            o += (SIZE);                                                              \
            n++;                                                                      \
        }                                                                             \
        pos += (PB_RB_HDR + len + 7) & ~7ULL;                                         \
    }

static long pb_ring_copy(const void *data, uint64_t mask, const uint64_t *producer, uint64_t pos, uint32_t size,
                         void *out, size_t limit, uint64_t *end, uint32_t *stop_header)
{
    const char *base = data;
    char *o = out;
    size_t n = 0;
    uint64_t prod = __atomic_load_n(producer, __ATOMIC_ACQUIRE);

    *stop_header = 0;
    /* constant sizes let the compiler inline the copy of the common record sizes */
    switch (size) {
    case 16: PB_RING_LOOP(16) break;
    case 24: PB_RING_LOOP(24) break;
    case 32: PB_RING_LOOP(32) break;
    case 48: PB_RING_LOOP(48) break;
    case 64: PB_RING_LOOP(64) break;
    default: PB_RING_LOOP(size) break;
    }
    *end = pos;
    return (long)n;
}

static long pb_delete_keys(int fd, const void *keys, size_t key_size, size_t n,
                           uint8_t *deleted, size_t *failed)
{
    const char *k = keys;
    long hits = 0;
    for (size_t i = 0; i < n; i++, k += key_size) {
        int ret = bpf_map_delete_elem(fd, k);
        if (ret == 0) {
            deleted[i] = 1;
            hits++;
        } else if (ret == -ENOENT) {
            deleted[i] = 0;
        } else {
            *failed = i;
            return ret;
        }
    }
    return hits;
}
"""


def _typed() -> tuple[str, str]:
    """cdef and C source of the typed per-key helpers."""
    cdef, source = [], []
    for kn, kt in KEY_TYPES:
        cdef.append(f"int pb_lookup_{kn}(int fd, {kt} key, void *value);")
        cdef.append(f"int pb_delete_{kn}(int fd, {kt} key);")
        cdef.append(f"int pb_update_{kn}(int fd, {kt} key, const void *value, uint64_t flags);")
        source.append(f"static int pb_lookup_{kn}(int fd, {kt} key, void *value)"
                      f" {{ return bpf_map_lookup_elem(fd, &key, value); }}")
        source.append(f"static int pb_delete_{kn}(int fd, {kt} key)"
                      f" {{ return bpf_map_delete_elem(fd, &key); }}")
        source.append(f"static int pb_update_{kn}(int fd, {kt} key, const void *value, uint64_t flags)"
                      f" {{ return bpf_map_update_elem(fd, &key, value, flags); }}")
        for vn, vt in VALUE_TYPES:
            cdef.append(f"int pb_update_{kn}_{vn}(int fd, {kt} key, {vt} value, uint64_t flags);")
            source.append(f"static int pb_update_{kn}_{vn}(int fd, {kt} key, {vt} value, uint64_t flags)"
                          f" {{ return bpf_map_update_elem(fd, &key, &value, flags); }}")
    return "\n".join(cdef), "\n".join(source)


# Headers of the C source: libc only. libbpf's declarations come from pybpf's own cdef text
# (the headers' would clash with its renamed padding fields and its void * va_list).
_PRELUDE = r"""
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/types.h>
"""


def _c_text(cdef: str) -> str:
    """cdef text as C: the kernel's own ``__u64``... (``<linux/types.h>``: same sizes, and
    Python.h may already have them) instead of the cdef's typedefs."""
    return re.sub(r"(?m)^typedef [a-z0-9_ ]+ __[us]\d+;.*\n", "", cdef)


def cdef_texts() -> dict[str, str]:
    """``CDEF``, ``OPTIONAL_CDEF`` and ``LIBC_CDEF`` of ``cdef.py`` beside this file (run by path:
    a package build runs this script without pybpf on ``sys.path``)."""
    names = runpy.run_path(str(Path(__file__).resolve().parent / "cdef.py"))
    return {name: names[name] for name in ("CDEF", "OPTIONAL_CDEF", "LIBC_CDEF")}


def cdef_crc(texts: dict[str, str]) -> int:
    """What ``pb_cdef_crc()`` returns: which declarations a module was built from."""
    return zlib.crc32("\0".join(texts[n] for n in ("CDEF", "OPTIONAL_CDEF", "LIBC_CDEF")).encode())


def _optional_functions(texts: dict[str, str]) -> list[tuple[str, Any]]:
    """(name, cffi function type) of every function ``OPTIONAL_CDEF`` declares."""
    parser = FFI()
    parser.cdef(texts["CDEF"])
    declarations = parser._parser._declarations  # cffi's parsed model of the cdef
    base = set(declarations)
    parser.cdef(texts["OPTIONAL_CDEF"])
    return sorted((key[len("function "):], tp) for key, (tp, _quals) in declarations.items()
                  if key.startswith("function ") and key not in base)


def _optional_source(functions: list[tuple[str, Any]]) -> str:
    """C making each optional function a weak reference behind a guard, and ``pb_has_symbol``."""
    guards, has, renames = [], ["static int pb_has_symbol(const char *name)", "{"], []
    for name, tp in functions:
        if tp.ellipsis:
            raise ValueError(f"optional function {name} is variadic: declare it with fixed arguments")
        params = ", ".join(arg.get_c_name(f" a{i}") for i, arg in enumerate(tp.args)) or "void"
        call = f"{name}({', '.join(f'a{i}' for i in range(len(tp.args)))})"
        result = tp.result.get_c_name("")
        if result == "void":
            fail, body = "return;", f"{call};"
        elif result.rstrip().endswith("*"):
            fail, body = "return NULL;", f"return {call};"
        else:
            fail, body = "return -EOPNOTSUPP;", f"return {call};"
        guards.append(f"#pragma weak {name}\n"
                      f"static {result} pb_opt_{name}({params})\n"
                      f"{{\n    if (!{name}) {{\n        errno = EOPNOTSUPP;\n        {fail}\n    }}\n    {body}\n}}")
        has.append(f'    if (!strcmp(name, "{name}"))\n        return {name} != NULL;')
        renames.append(f"#define {name} pb_opt_{name}")  # what cffi's wrappers call from here on
    has += ["    return -1;  /* not an optional symbol */", "}"]
    return "\n".join(guards + has + renames)


def builder() -> FFI:
    """The cffi builder of ``pybpf._sys._fast`` (the binding, the helpers; linked with libbpf)."""
    texts = cdef_texts()
    optional = _optional_functions(texts)
    typed_cdef, typed_source = _typed()
    ffibuilder = FFI()
    ffibuilder.cdef(texts["CDEF"])
    ffibuilder.cdef(texts["OPTIONAL_CDEF"])
    ffibuilder.cdef(texts["LIBC_CDEF"])
    ffibuilder.cdef(_LOOPS_CDEF + typed_cdef + "\nint pb_has_symbol(const char *name);\nunsigned int pb_cdef_crc(void);\n")
    # vsnprintf comes from <stdio.h> (with its va_list): the cdef's void * converts to it
    libc = "\n".join(line for line in texts["LIBC_CDEF"].splitlines() if "vsnprintf" not in line)
    source = "\n".join([
        _PRELUDE, _c_text(texts["CDEF"]), _c_text(texts["OPTIONAL_CDEF"]), libc,
        _optional_source(optional),
        f"static unsigned int pb_cdef_crc(void) {{ return {cdef_crc(texts)}U; }}",
        _LOOPS_SOURCE, typed_source])
    ffibuilder.set_source(MODULE, source, libraries=["bpf"], extra_compile_args=["-O2"])
    return ffibuilder


ffibuilder = builder()


KEYOPS = "pybpf._sys._keyops"


def keyops_extension() -> Any:
    """The setuptools ``Extension`` of ``pybpf._sys._keyops`` (``_keyops.c``: per-key map
    access as a CPython type, no cffi per call), linked with libbpf."""
    from setuptools import Extension

    source = Path(__file__).resolve().parent / "_keyops.c"
    return Extension(KEYOPS, [str(source)], libraries=["bpf"], extra_compile_args=["-O2"])


def _install(built: Path, here: Path) -> Path:
    target = here / built.name
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(built, tmp)
    os.replace(tmp, target)  # atomic: a process importing it meanwhile never sees half a file
    return target


def build_in_place(tmpdir: str | None = None) -> list[Path]:
    """Compile both modules (in ``tmpdir``, default ``build/cffi`` of the checkout) and copy them
    next to this file; returns their paths."""
    from cffi import ffiplatform

    here = Path(__file__).resolve().parent
    work = Path(tmpdir) if tmpdir else here.parent.parent.parent / "build" / "cffi"
    work.mkdir(parents=True, exist_ok=True)
    built = [Path(ffibuilder.compile(tmpdir=str(work), verbose=False)),
             Path(ffiplatform.compile(str(work), keyops_extension()))]
    return [_install(path, here) for path in built]


if __name__ == "__main__":
    for path in build_in_place():
        print(path)
