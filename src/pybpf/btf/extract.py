"""BTF out of kernel images: bzImage/vmlinuz, ELF vmlinux, kernel modules, BTFHub tarballs.

This module owns finding the ``.BTF`` section of a kernel build artefact:

* a **bzImage** (``/boot/vmlinuz-*``): the x86 boot header (``HdrS``) gives the
  compressed payload's offset and length (boot protocol 2.08+); the payload is
  recognised by its magic and decompressed with maintained libraries: stdlib
  ``gzip``/``lzma`` (xz and legacy lzma)/``bz2``, PyPI ``lz4`` (the kernel's
  legacy LZ4 frame format, block by block) and ``zstandard``. Images without a
  usable header (other architectures' ``Image.gz``...) are scanned for the
  first payload that decompresses to an ELF;
* an **ELF vmlinux**: the ``.BTF`` section, read from the section headers;
* a **module** (``.ko``): its ``.BTF`` is split BTF on top of vmlinux's, so the
  base BTF is required to check it;
* a raw BTF file (returned as is, after a parse) and a BTFHub ``.btf.tar.xz``.

Pure: stdlib plus the two decompression packages, no kernel access.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from pybpf.btf.types import BTF_MAGIC, Btf, read_file
from pybpf.errors import BpfError, NotSupportedError, ObjectFormatError

__all__ = ["extract_btf", "elf_section", "decompress_kernel", "btf_from_tarball"]

_MAX_KERNEL = 1 << 30  # no vmlinux is bigger than 1 GiB: what a stream may decompress to, at most
_CHUNK = 256 << 10       # output taken from a decompressor at a time
_LZMA_MEMLIMIT = 256 << 20  # xz/lzma dictionaries: the kernel's use 32-64 MiB; a header may ask for 4 GiB
_ZSTD_WINDOW = 1 << 27   # zstd's own default limit (128 MiB), stated
_SCAN_PER_CODEC = 16     # without a boot header: offsets tried per codec, in file order
_LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
_LZ4_LEGACY_BLOCK = 8 << 20

# (name, magic at payload start)
_MAGICS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b\x08"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("lz4", _LZ4_LEGACY_MAGIC),
    ("bzip2", b"BZh"),
    ("lzma", b"\x5d\x00\x00"),
    ("lzo", b"\x89LZO\x00"),
)

Buffer = bytes | bytearray | memoryview


class _NotElf(Exception):
    """The stream's first bytes are not an ELF header (internal: a candidate to skip)."""


# ---- streaming decompressors: each yields the output in chunks of at most _CHUNK bytes -----------

def _gunzip(data: Buffer) -> Iterator[bytes]:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending: Buffer = data
    while not d.eof:
        out = d.decompress(pending, _CHUNK)
        if out:
            yield out
        elif len(d.unconsumed_tail) == len(pending):
            return  # no progress: the input ended inside the stream
        pending = d.unconsumed_tail


def _lzma_stream(data: Buffer, fmt: int) -> Iterator[bytes]:
    d = lzma.LZMADecompressor(fmt, memlimit=_LZMA_MEMLIMIT)
    pending: Buffer = data
    while not d.eof:
        out = d.decompress(pending, _CHUNK)
        pending = b""
        if out:
            yield out
        elif d.needs_input:
            return  # the input ended inside the stream


def _unxz(data: Buffer) -> Iterator[bytes]:
    return _lzma_stream(data, lzma.FORMAT_XZ)


def _unlzma(data: Buffer) -> Iterator[bytes]:
    return _lzma_stream(data, lzma.FORMAT_ALONE)


def _bunzip2(data: Buffer) -> Iterator[bytes]:
    d = bz2.BZ2Decompressor()
    pending: Buffer = data
    while not d.eof:
        out = d.decompress(pending, _CHUNK)
        pending = b""
        if out:
            yield out
        elif d.needs_input:
            return


def _unzstd(data: Buffer) -> Iterator[bytes]:
    try:
        import zstandard
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise NotSupportedError(f"zstd kernel images need the 'zstandard' package: {e}",
                                feature="zstd") from None
    reader = zstandard.ZstdDecompressor(max_window_size=_ZSTD_WINDOW).stream_reader(data)
    while chunk := reader.read(_CHUNK):
        yield chunk


def _unlz4_legacy(data: Buffer) -> Iterator[bytes]:
    """The kernel's LZ4 'legacy' format: magic, then [u32 size][block] up to 8 MiB each."""
    try:
        import lz4.block
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise NotSupportedError(f"LZ4 kernel images need the 'lz4' package: {e}", feature="lz4") from None
    view = memoryview(data)
    pos = 4
    first = True
    while pos + 4 <= len(view):
        (size,) = struct.unpack_from("<I", view, pos)
        if size == 0 or view[pos:pos + 4] == _LZ4_LEGACY_MAGIC or pos + 4 + size > len(view):
            return  # the end (what follows is the image's trailer: the uncompressed size)
        pos += 4
        try:
            block = lz4.block.decompress(view[pos:pos + size], uncompressed_size=_LZ4_LEGACY_BLOCK)
        except lz4.block.LZ4BlockError:
            if not first:
                return  # trailing bytes after the last block
            raise
        first = False
        pos += size
        for i in range(0, len(block), _CHUNK):
            yield block[i:i + _CHUNK]


_DECOMPRESS: dict[str, Callable[[Buffer], Iterator[bytes]]] = {
    "gzip": _gunzip, "xz": _unxz, "zstd": _unzstd, "lz4": _unlz4_legacy, "bzip2": _bunzip2,
    "lzma": _unlzma,
}


def _codec_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [zlib.error, lzma.LZMAError, OSError, EOFError, ValueError,
                                         MemoryError]
    try:
        import zstandard
        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import lz4.block
        errors.append(lz4.block.LZ4BlockError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _elf_extent(out: bytearray) -> tuple[int | None, int]:
    """(bytes the ELF image in ``out`` needs, or None while unknown; the least it needs so far).

    Its section header table (usually at the end) and every section with contents: what is
    decompressed past that is not part of the image."""
    cls = out[4]
    if cls == 2:
        (shoff,) = struct.unpack_from("<Q", out, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", out, 0x3A)
        fmt, off_at, size_at, type_at = "<QQ", 0x18, 0x20, 4
    else:
        (shoff,) = struct.unpack_from("<I", out, 0x20)
        shentsize, shnum = struct.unpack_from("<HH", out, 0x2E)
        fmt, off_at, size_at, type_at = "<II", 0x10, 0x14, 4
    if shoff == 0 or shentsize < size_at + struct.calcsize(fmt) // 2:
        return None, 0  # no section headers here: elf_section will say what is wrong
    if shnum == 0:  # more than 0xff00 sections: the count is section 0's size
        if len(out) < shoff + shentsize:
            return None, shoff + shentsize
        shnum = struct.unpack_from(fmt, out, shoff + off_at)[1]
    table_end = shoff + shnum * shentsize
    if len(out) < table_end:
        return None, table_end
    end = table_end
    for i in range(shnum):
        at = shoff + i * shentsize
        (sh_type,) = struct.unpack_from("<I", out, at + type_at)
        if sh_type != 8:  # SHT_NOBITS takes no room in the file
            off, size = struct.unpack_from(fmt, out, at + off_at)
            end = max(end, off + size)
    return end, end


def _inflate(fmt: str, payload: Buffer, where: str) -> bytearray:
    """The ELF image a compressed stream holds, decompressed as a stream: refused at its first
    bytes when they are not an ELF header (``_NotElf``), stopped where the ELF image ends, and
    refused past ``_MAX_KERNEL`` (memory is bounded by that size, whatever the stream says)."""
    out = bytearray()
    need: int | None = None   # the ELF image's size, once its headers tell it
    least = 0
    checked = False
    try:
        for chunk in _DECOMPRESS[fmt](payload):
            out += chunk
            if not checked and len(out) >= 64:
                if out[:4] != b"\x7fELF":
                    raise _NotElf
                checked = True
            if checked and need is None and len(out) >= least:
                need, least = _elf_extent(out)
                if max(least, need or 0) > _MAX_KERNEL:
                    raise ObjectFormatError(
                        f"{where}: the {fmt} payload's ELF header places its sections past "
                        f"{max(least, need or 0)} bytes, more than any vmlinux (1 GiB): refused", path=where)
            if need is not None and len(out) >= need:
                del out[need:]
                break  # the rest is not part of the ELF image
            if len(out) > _MAX_KERNEL:
                raise ObjectFormatError(f"{where}: the {fmt} payload decompresses to more than 1 GiB, more "
                                        "than any vmlinux (a decompression bomb?): refused", path=where)
    except _codec_errors() as e:
        if isinstance(e, BpfError):  # ours (the 1 GiB refusal, a missing codec package)
            raise
        if not checked and len(out) < 64:
            raise _NotElf from None
        raise ObjectFormatError(f"{where}: the {fmt} payload is corrupt ({type(e).__name__}: {e})",
                                path=where) from None
    if not checked:
        raise _NotElf
    return out


def _bzimage_payload(data: Buffer) -> memoryview | None:
    """The compressed payload of an x86 bzImage, from its setup header (boot protocol >= 2.08)."""
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return None
    (version,) = struct.unpack_from("<H", data, 0x206)
    if version < 0x208:
        return None
    setup_sects = data[0x1F1] or 4
    pm_start = (setup_sects + 1) * 512
    off, length = struct.unpack_from("<II", data, 0x248)
    start = pm_start + off
    if length == 0 or start + length > len(data):
        return None
    return memoryview(data)[start:start + length]


def _which(payload: Buffer) -> str | None:
    head = bytes(payload[:8])
    for name, magic in _MAGICS:
        if head.startswith(magic):
            return name
    return None


def _vmlinux(data: bytes | bytearray, where: str) -> bytearray:
    """The ELF vmlinux inside a compressed kernel image (decompressed once, as a stream)."""
    payload = _bzimage_payload(data)
    if payload is not None:
        fmt = _which(payload)
        if fmt == "lzo":
            raise NotSupportedError(f"{where}: LZO-compressed kernel images are not supported "
                                    "(no maintained Python LZO library)", feature="lzo")
        if fmt is None:
            raise ObjectFormatError(f"{where}: bzImage payload has an unknown compression "
                                    f"(starts with {bytes(payload[:6]).hex()})", path=where)
        return _checked(fmt, payload, where)
    fmt = _which(data)
    if fmt is not None and fmt in _DECOMPRESS:
        return _checked(fmt, data, where)
    # No boot header: the first payload that decompresses to an ELF, among at most
    # _SCAN_PER_CODEC offsets per codec; each is dropped at its first bytes that are not ELF.
    view = memoryview(data)
    candidates: list[tuple[int, str]] = []
    for name, magic in _MAGICS:
        if name not in _DECOMPRESS:
            continue
        pos = data.find(magic)
        for _ in range(_SCAN_PER_CODEC):
            if pos < 0:
                break
            candidates.append((pos, name))
            pos = data.find(magic, pos + 1)
    for pos, name in sorted(candidates):
        try:
            return _inflate(name, view[pos:], where)
        except _NotElf:
            continue
        except ObjectFormatError:
            continue  # a corrupt stream at this offset: maybe the next one
    raise ObjectFormatError(f"{where}: not a kernel image (no bzImage header and no compressed "
                            "ELF payload found)", path=where)


def decompress_kernel(data: bytes, where: str = "") -> bytes:
    """The ELF vmlinux inside a compressed kernel image (bzImage, or a bare compressed file)."""
    return bytes(_vmlinux(data, where))


def _checked(fmt: str, payload: Buffer, where: str) -> bytearray:
    try:
        return _inflate(fmt, payload, where)
    except _NotElf:
        raise ObjectFormatError(f"{where}: the {fmt} payload does not decompress to an ELF vmlinux",
                                path=where) from None


def elf_section(data: bytes | bytearray, name: str, where: str = "") -> bytes | None:
    """Contents of section ``name`` of a little-endian ELF (32 or 64 bit), or None."""
    if data[:4] != b"\x7fELF" or len(data) < 52:
        raise ObjectFormatError(f"{where}: not an ELF file", path=where)
    cls, endian = data[4], data[5]
    if endian != 1:
        raise NotSupportedError(f"{where}: big-endian ELF is not supported", feature="big-endian")
    try:
        if cls == 2:
            shoff, = struct.unpack_from("<Q", data, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
            fmt, fields = "<IIQQQQIIQQ", (0, 4, 5)  # name, offset, size
        else:
            shoff, = struct.unpack_from("<I", data, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
            fmt, fields = "<IIIIIIIIII", (0, 4, 5)
        if shnum == 0 and shoff:  # more than 0xff00 sections: count in section 0's size
            shnum = struct.unpack_from(fmt, data, shoff)[5]
        headers = [struct.unpack_from(fmt, data, shoff + i * shentsize) for i in range(shnum)]
        strtab = headers[shstrndx]
        strs = data[strtab[fields[1]]:strtab[fields[1]] + strtab[fields[2]]]
        for h in headers:
            n = h[fields[0]]
            sname = strs[n:strs.index(b"\0", n)].decode("latin-1")
            if sname == name:
                off, size = h[fields[1]], h[fields[2]]
                if h[1] == 8:  # SHT_NOBITS
                    return b""
                if off + size > len(data):
                    raise ObjectFormatError(f"{where}: section {name} runs past the end of the file",
                                            path=where)
                return bytes(data[off:off + size])
    except (struct.error, IndexError, ValueError) as e:
        raise ObjectFormatError(f"{where}: corrupted ELF section headers ({e})", path=where) from None
    return None


class _Stream(io.RawIOBase):
    """A read-only file over decompressed chunks, refusing to give more than ``limit`` bytes."""

    def __init__(self, chunks: Iterator[bytes], limit: int, what: str) -> None:
        self._chunks = chunks
        self._buf = b""
        self._given = 0
        self._limit = limit
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = chunk
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self._given += n
        if self._given > self._limit:
            raise ObjectFormatError(f"{self._what}: decompresses to more than {self._limit >> 20} MiB: refused",
                                    path=self._what)
        return n


def _plain_chunks(data: Buffer) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(view), _CHUNK):
        yield bytes(view[i:i + _CHUNK])


def btf_from_tarball(path: str) -> bytes:
    """The ``*.btf`` member of a BTFHub archive (``<release>.btf.tar.xz``; gzip, bzip2, zstd or none).

    Read as a stream (the archive is never unpacked whole): a member larger than any BTF
    (1 GiB), a sparse member (its size is a claim, not data) or an archive decompressing past
    1 GiB is refused; nothing is written anywhere."""
    data = read_file(path, what="BTF archive")
    fmt = _which(data)
    chunks = _DECOMPRESS[fmt](data) if fmt in ("xz", "gzip", "bzip2", "zstd") else _plain_chunks(data)
    try:
        with tarfile.open(fileobj=io.BufferedReader(_Stream(chunks, _MAX_KERNEL, path)), mode="r|") as tar:
            for m in tar:
                if not (m.isfile() and m.name.endswith(".btf")):
                    continue
                if m.issparse():
                    raise ObjectFormatError(f"{path}: member {m.name!r} is a sparse file, not a BTF", path=path)
                if m.size > _MAX_KERNEL:
                    raise ObjectFormatError(f"{path}: member {m.name!r} claims {m.size} bytes, more than any "
                                            "BTF: refused", path=path)
                f = tar.extractfile(m)
                if f is not None:
                    return f.read(m.size)
    except ObjectFormatError:
        raise
    except (tarfile.TarError, EOFError) + _codec_errors() as e:
        raise ObjectFormatError(f"{path}: cannot read BTF archive: {e}", path=path) from None
    raise ObjectFormatError(f"{path}: archive holds no *.btf file", path=path)


def _btf_of(data: bytes | bytearray, where: str) -> tuple[bytes, bool]:
    """(the raw BTF of raw BTF, an ELF or a compressed kernel image; True if it is a module's)."""
    if bytes(data[:2]) == struct.pack("<H", BTF_MAGIC):
        return bytes(data), False
    if bytes(data[:4]) != b"\x7fELF":
        data = _vmlinux(data, where)
    sec = elf_section(data, ".BTF", where)
    if sec is None:
        raise ObjectFormatError(f"{where}: ELF has no .BTF section (kernel built without "
                                "CONFIG_DEBUG_INFO_BTF?)", path=where)
    return bytes(sec), elf_section(data, ".gnu.linkonce.this_module", where) is not None


def _starts_with_nul(raw: bytes) -> bool:
    """Whether a BTF's string section starts with NUL, as a base BTF's must (a split one's need not)."""
    try:
        hdr_len, _, _, str_off, str_len = struct.unpack_from("<IIIII", raw, 4)
    except struct.error:
        return True  # too short to tell: the parse says what is wrong
    start = hdr_len + str_off
    return not (str_len and start < len(raw) and raw[start] != 0)


def extract_btf(path: str | os.PathLike[str] | bytes, *, base: Btf | str | os.PathLike[str] | None = None,
                where: str = "") -> bytes:
    """The raw BTF of a kernel image, ELF vmlinux, module (with ``base``), raw BTF or BTFHub
    tarball; parsed once to make sure it is BTF (split BTF against ``base``)."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        data: bytes | bytearray = bytes(path)
    else:
        where = where or os.fspath(path)
        if where.endswith((".tar.xz", ".tar.gz", ".tar", ".txz", ".tgz")):
            data = btf_from_tarball(where)
        else:
            data = read_file(where)
    raw, module = _btf_of(data, where)
    del data  # a decompressed vmlinux: only its .BTF is kept
    base_btf: Btf | None
    if base is None or isinstance(base, Btf):
        base_btf = base
    else:
        shown = os.fspath(base)
        base_raw, base_module = _btf_of(read_file(shown), shown) if not shown.endswith(
            (".tar.xz", ".tar.gz", ".tar", ".txz", ".tgz")) else (btf_from_tarball(shown), False)
        if base_module or not _starts_with_nul(base_raw):
            raise ObjectFormatError(f"--base {shown}: is a kernel module's (split) BTF; the base must be "
                                    "the vmlinux BTF (a raw BTF, a vmlinux or a kernel image)", path=shown)
        base_btf = Btf.from_bytes(base_raw, name=shown)
    if base_btf is None and (module or not _starts_with_nul(raw)):
        raise ObjectFormatError(f"{where}: a kernel module's BTF is split BTF: give its base "
                                "(the vmlinux BTF) with --base", path=where)
    if base_btf is not None and not module and _starts_with_nul(raw):
        raise ObjectFormatError(f"{where}: is a complete BTF (not a kernel module's split BTF): "
                                "drop --base", path=where)
    Btf.from_bytes(raw, base=base_btf, name=where)  # raises a precise error if it is not BTF
    return raw


def _tar_bytes(name: str, data: bytes) -> bytes:  # used by tests and the fetch tool
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
