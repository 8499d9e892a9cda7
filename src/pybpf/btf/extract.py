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
from typing import Callable

from pybpf.btf.types import BTF_MAGIC, Btf, read_file
from pybpf.errors import NotSupportedError, ObjectFormatError

__all__ = ["extract_btf", "elf_section", "decompress_kernel", "btf_from_tarball"]

_MAX_KERNEL = 1 << 30  # no vmlinux is bigger than 1 GiB: a guard against decompression bombs
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


def _gunzip(data: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data, _MAX_KERNEL)
    return out


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data, _MAX_KERNEL)


def _unlzma(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data, _MAX_KERNEL)


def _bunzip2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data, _MAX_KERNEL)


def _unzstd(data: bytes) -> bytes:
    try:
        import zstandard
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise NotSupportedError(f"zstd kernel images need the 'zstandard' package: {e}",
                                feature="zstd") from None
    dobj = zstandard.ZstdDecompressor().decompressobj()
    return bytes(dobj.decompress(data))


def _unlz4_legacy(data: bytes) -> bytes:
    """The kernel's LZ4 'legacy' format: magic, then [u32 size][block] up to 8 MiB each."""
    try:
        import lz4.block
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise NotSupportedError(f"LZ4 kernel images need the 'lz4' package: {e}", feature="lz4") from None
    pos = 4
    out = bytearray()
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        if size == 0 or data[pos:pos + 4] == _LZ4_LEGACY_MAGIC or pos + 4 + size > len(data):
            break  # the end (what follows is the image's trailer: the uncompressed size)
        pos += 4
        try:
            out += lz4.block.decompress(data[pos:pos + size], uncompressed_size=_LZ4_LEGACY_BLOCK)
        except lz4.block.LZ4BlockError:
            if out:
                break  # trailing bytes after the last block
            raise
        pos += size
        if len(out) > _MAX_KERNEL:
            break
    return bytes(out)


_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": _gunzip, "xz": _unxz, "zstd": _unzstd, "lz4": _unlz4_legacy, "bzip2": _bunzip2,
    "lzma": _unlzma,
}


def _bzimage_payload(data: bytes) -> bytes | None:
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
    return data[start:start + length]


def _which(payload: bytes) -> str | None:
    for name, magic in _MAGICS:
        if payload.startswith(magic):
            return name
    return None


def decompress_kernel(data: bytes, where: str = "") -> bytes:
    """The ELF vmlinux inside a compressed kernel image (bzImage, or a bare compressed file)."""
    payload = _bzimage_payload(data)
    if payload is not None:
        fmt = _which(payload)
        if fmt == "lzo":
            raise NotSupportedError(f"{where}: LZO-compressed kernel images are not supported "
                                    "(no maintained Python LZO library)", feature="lzo")
        if fmt is None:
            raise ObjectFormatError(f"{where}: bzImage payload has an unknown compression "
                                    f"(starts with {payload[:6].hex()})", path=where)
        return _checked(_DECOMPRESS[fmt](payload), fmt, where)
    fmt = _which(data)
    if fmt is not None and fmt in _DECOMPRESS:
        return _checked(_DECOMPRESS[fmt](data), fmt, where)
    # no boot header: scan for the first payload that decompresses to an ELF
    for name, magic in _MAGICS:
        if name not in _DECOMPRESS:
            continue
        pos = data.find(magic)
        while pos >= 0:
            try:
                out = _DECOMPRESS[name](data[pos:])
            except Exception:  # not a real stream at this offset: try the next one
                out = b""
            if out[:4] == b"\x7fELF":
                return out
            pos = data.find(magic, pos + 1)
    raise ObjectFormatError(f"{where}: not a kernel image (no bzImage header and no compressed "
                            "ELF payload found)", path=where)


def _checked(out: bytes, fmt: str, where: str) -> bytes:
    if out[:4] != b"\x7fELF":
        raise ObjectFormatError(f"{where}: the {fmt} payload does not decompress to an ELF vmlinux",
                                path=where)
    return out


def elf_section(data: bytes, name: str, where: str = "") -> bytes | None:
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
                return data[off:off + size]
    except (struct.error, IndexError, ValueError) as e:
        raise ObjectFormatError(f"{where}: corrupted ELF section headers ({e})", path=where) from None
    return None


def btf_from_tarball(path: str) -> bytes:
    """The ``*.btf`` member of a BTFHub archive (``<release>.btf.tar.xz``)."""
    try:
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.endswith(".btf"):
                    f = tar.extractfile(m)
                    if f is not None:
                        return f.read()
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as e:
        raise ObjectFormatError(f"{path}: cannot read BTF archive: {e}", path=path) from None
    raise ObjectFormatError(f"{path}: archive holds no *.btf file", path=path)


def extract_btf(path: str | os.PathLike[str] | bytes, *, base: Btf | str | os.PathLike[str] | None = None,
                where: str = "") -> bytes:
    """The raw BTF of a kernel image, ELF vmlinux, module (with ``base``), raw BTF or BTFHub
    tarball; parsed once to make sure it is BTF (split BTF against ``base``)."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        data = bytes(path)
    else:
        where = where or os.fspath(path)
        if where.endswith((".tar.xz", ".tar.gz", ".tar", ".txz", ".tgz")):
            data = btf_from_tarball(where)
        else:
            data = read_file(where)
    if data[:2] == struct.pack("<H", BTF_MAGIC):
        raw = data
    else:
        if data[:4] != b"\x7fELF":
            data = decompress_kernel(data, where)
        sec = elf_section(data, ".BTF", where)
        if base is None and elf_section(data, ".gnu.linkonce.this_module", where) is not None:
            raise ObjectFormatError(f"{where}: a kernel module's BTF is split BTF: give its base "
                                    "(the vmlinux BTF) with --base", path=where)
        if sec is None:
            raise ObjectFormatError(f"{where}: ELF has no .BTF section (kernel built without "
                                    "CONFIG_DEBUG_INFO_BTF?)", path=where)
        raw = sec
    base_btf: Btf | None
    if base is None or isinstance(base, Btf):
        base_btf = base
    else:
        base_btf = Btf.from_bytes(extract_btf(base), name=os.fspath(base))
    Btf.from_bytes(raw, base=base_btf, name=where)  # raises a precise error if it is not BTF
    return raw


def _tar_bytes(name: str, data: bytes) -> bytes:  # used by tests and the fetch tool
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
