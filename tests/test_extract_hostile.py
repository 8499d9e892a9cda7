"""Issue 20 items 7, 8 and 15: ``btf extract`` on hostile kernel images and archives, and its errors.

Bombs run in a child with an address-space limit (2 GiB), so an unbounded decompression is a
MemoryError there (a failure of the test), not a machine-wide squeeze; the child reports its
peak RSS. Any user can make these files: ``btf extract`` needs no privileges.
"""

from __future__ import annotations

import io
import lzma
import os
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from pybpf.btf.extract import _tar_bytes, extract_btf
from pybpf.btf.types import Btf
from pybpf.errors import ObjectFormatError
from tests.mutate import bzimage as _bzimage, elf_with_btf as _elf_with_btf, lz4_legacy as _lz4_legacy

ROOT = Path(__file__).resolve().parent.parent
GiB = 1 << 30

_CHILD = r"""
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
sys.path[:0] = {paths!r}
from pybpf.btf import extract
from pybpf.errors import BpfError
limit = {limit!r}
if limit:
    extract._MAX_KERNEL = limit
started = time.monotonic()
try:
    extract.extract_btf({path!r})
    outcome = "accepted"
except BpfError as exc:
    outcome = "typed: " + str(exc)
except BaseException as exc:
    outcome = "foreign: " + type(exc).__name__ + ": " + str(exc)
print(outcome)
print(time.monotonic() - started)
# VmHWM: this process image's own peak (ru_maxrss keeps the forking parent's across exec)
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024)
"""


def _extract_in_child(path: Path, limit: int = 0, timeout: float = 120) -> tuple[str, float, int]:
    """(outcome, seconds, peak RSS in MiB) of extract_btf(path) in a child limited to 2 GiB."""
    code = _CHILD.format(paths=[str(ROOT / "src"), str(ROOT)], path=str(path), limit=limit)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 3, proc.stdout + proc.stderr[-3000:]
    return lines[0], float(lines[1]), int(lines[2])


def _zstd_rle(total: int, first: bytes = b"") -> bytes:
    """A zstd frame of ``first`` (a raw block) then RLE blocks of zeros: ``total`` bytes of output
    from 4 bytes per 128 KiB (no content size in the header: the size is known only at the end)."""
    out = bytearray(b"\x28\xb5\x2f\xfd\x00\x38")  # magic; no FCS, no checksum; window 2**17
    block = 128 << 10
    if first:
        out += struct.pack("<I", len(first) << 3)[:3] + first  # raw block, not last
        total -= len(first)
    n = -(-total // block)
    for i in range(n):
        size = min(block, total - i * block)
        out += struct.pack("<I", (size << 3) | (1 << 1) | (i == n - 1))[:3] + b"\0"
    return bytes(out)


def _gzip_zeros(total: int, first: bytes = b"") -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [c.compress(first)]
    zeros = bytes(1 << 20)
    for _ in range((total - len(first)) >> 20):
        parts.append(c.compress(zeros))
    parts.append(c.flush())
    return b"".join(parts)


def _elf_header(shoff: int, shnum: int) -> bytes:
    hdr = bytearray(64)
    hdr[:16] = b"\x7fELF\x02\x01\x01" + bytes(9)
    struct.pack_into("<HHIQQQIHHHHHH", hdr, 16, 2, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, shnum, 0)
    return bytes(hdr)


# ---- item 7: decompression bombs ----------------------------------------------------------------

def test_zstd_bomb_is_refused_at_its_first_bytes(tmp_path: Path):
    bomb = tmp_path / "vmlinuz"
    bomb.write_bytes(_bzimage(_zstd_rle(8 * GiB)))   # 256 KiB expanding to 8 GiB
    assert bomb.stat().st_size < 300 << 10
    outcome, seconds, rss = _extract_in_child(bomb)
    assert outcome.startswith("typed: ") and "does not decompress to an ELF" in outcome, outcome
    assert rss < 300, rss  # MiB: one chunk of output, not the stream


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_elf_looking_bomb_stops_at_the_limit(tmp_path: Path, codec: str):
    """An ELF header with no section table, then zeros: decompressed up to the limit, then refused
    (the limit is 1 GiB; 64 MiB here, the same code)."""
    head = _elf_header(0, 0)
    stream = _zstd_rle(4 * GiB, head) if codec == "zstd" else _gzip_zeros(256 << 20, head)
    bomb = tmp_path / "vmlinuz"
    bomb.write_bytes(_bzimage(stream))
    outcome, seconds, rss = _extract_in_child(bomb, limit=64 << 20)
    assert outcome.startswith("typed: ") and "more than 1 GiB" in outcome, outcome
    assert rss < 64 + 300, rss


def test_elf_header_placing_sections_past_1_gib_is_refused_at_once(tmp_path: Path):
    bomb = tmp_path / "vmlinuz"
    bomb.write_bytes(_bzimage(_zstd_rle(8 * GiB, _elf_header(2 * GiB, 40))))
    outcome, seconds, rss = _extract_in_child(bomb)
    assert outcome.startswith("typed: ") and "past" in outcome and "1 GiB" in outcome, outcome
    assert rss < 300, rss


@pytest.mark.parametrize("codec", ["gzip", "xz", "lzma", "bzip2", "lz4", "zstd"])
def test_non_elf_payloads_of_every_codec_are_refused(codec: str):
    import bz2
    import zstandard
    junk = bytes(range(256)) * 4096  # 1 MiB, not an ELF
    comp = {"gzip": lambda d: _gzip_zeros(0, d), "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
            "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE), "bzip2": bz2.compress,
            "lz4": _lz4_legacy, "zstd": lambda d: zstandard.ZstdCompressor().compress(d)}[codec]
    with pytest.raises(ObjectFormatError, match=f"the {codec} payload does not decompress to an ELF"):
        extract_btf(_bzimage(comp(junk)), where="junk")


def test_xz_dictionary_beyond_the_memory_limit_is_a_typed_error():
    # an LZMA header asking for a 4 GiB dictionary: refused by the decoder's memory limit
    header = b"\x5d" + struct.pack("<I", 0xFFFF0000) + struct.pack("<q", -1)
    with pytest.raises(ObjectFormatError, match="lzma payload"):
        extract_btf(_bzimage(header + bytes(64)), where="dict")


def _gnu_sparse_tar_xz(name: str, realsize: int) -> bytes:
    """An old-GNU sparse member: no data stored, ``realsize`` bytes claimed (all a hole)."""
    block = bytearray(512)
    block[0:len(name)] = name.encode()
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = b"00000000000\0"                  # size stored: 0
    block[136:148] = b"00000000000\0"
    block[156:157] = b"S"                              # GNUTYPE_SPARSE
    block[257:265] = b"ustar  \0"                      # old GNU magic
    block[386:398] = b"%011o\0" % realsize            # sparse[0].offset: the hole ends here
    block[398:410] = b"%011o\0" % 0                    # sparse[0].numbytes
    block[483:495] = b"%011o\0" % realsize             # realsize
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return lzma.compress(bytes(block) + bytes(1024), format=lzma.FORMAT_XZ)


def test_sparse_archive_member_is_refused(tmp_path: Path):
    archive = tmp_path / "evil.btf.tar.xz"
    archive.write_bytes(_gnu_sparse_tar_xz("5.10.0.btf", 8 * GiB))
    assert archive.stat().st_size < 300
    with tarfile.open(archive) as tar:  # what the archive claims
        assert tar.getmembers()[0].size == 8 * GiB and tar.getmembers()[0].issparse()
    outcome, seconds, rss = _extract_in_child(archive)
    assert outcome.startswith("typed: ") and "sparse" in outcome, outcome
    assert rss < 300, rss


def test_btfhub_archives_still_read(bundled, tmp_path: Path):
    raw = Btf.from_file(bundled("counters"))._data
    for suffix, data in [(".btf.tar.xz", _tar_bytes("5.10.0-1.btf", raw))]:
        path = tmp_path / ("k" + suffix)
        path.write_bytes(data)
        assert extract_btf(str(path)) == raw
    buf = io.BytesIO()  # a gzip one, with a directory and another file before the BTF
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in [("README", b"hello"), ("5.10/x86_64/k.btf", raw)]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    (tmp_path / "k.tar.gz").write_bytes(buf.getvalue())
    assert extract_btf(str(tmp_path / "k.tar.gz")) == raw


# ---- item 8: the scan without a boot header ---------------------------------------------------

def test_file_of_magics_is_scanned_in_linear_time(tmp_path: Path):
    junk = tmp_path / "magics"
    junk.write_bytes(b"MZ" + bytes(62) + b"\x1f\x8b\x08" * 400_000 + b"\x5d\x00\x00" * 10_000)  # 1.2 MB of magics
    outcome, seconds, rss = _extract_in_child(junk, timeout=60)
    assert outcome.startswith("typed: ") and "not a kernel image" in outcome, outcome
    assert rss < 300, rss


def test_scan_finds_a_payload_after_false_magics(bundled):
    raw = Btf.from_file(bundled("counters"))._data
    payload = _gzip_zeros(0, _elf_with_btf(raw))
    image = b"MZ" + bytes(1000) + b"\x5d\x00\x00junk" * 10 + b"\x1f\x8b\x08" + bytes(100) + payload + bytes(64)
    assert extract_btf(image, where="headerless") == raw


# ---- item 15: errors ---------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpf.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src")), timeout=300)


def test_base_that_is_a_module_and_complete_btf_with_base(kernel_btfs, tmp_path: Path):
    from tests.conftest import KERNEL_BTF_DIR
    # Debian 12 ships nls_utf8.ko (6.1) and .ko.xz (6.12); Debian 13 only .ko.xz: a plain one when there is one
    with_module = sorted((t for t in kernel_btfs if t.get("module")), key=lambda t: not t["module"].endswith(".ko"))
    assert with_module, "no kernel of the corpus came with its nls_utf8 module"
    t = with_module[0]
    ko = str(KERNEL_BTF_DIR / t["module"])
    proc = _cli("btf", "extract", ko, "--base", ko, "-o", str(tmp_path / "m.btf"))
    assert proc.returncode == 1 and "--base" in proc.stderr and "module" in proc.stderr, proc.stderr
    assert "give its base" not in proc.stderr, proc.stderr  # --base was given: say what is wrong with it
    proc = _cli("btf", "extract", t["path"], "--base", t["path"], "-o", str(tmp_path / "v.btf"))
    assert proc.returncode == 1 and "complete BTF" in proc.stderr and "drop --base" in proc.stderr, proc.stderr
    elf = tmp_path / "vmlinux"
    elf.write_bytes(_elf_with_btf(Path(t["path"]).read_bytes()))  # an ELF vmlinux, not a module
    proc = _cli("btf", "extract", str(elf), "--base", t["path"], "-o", str(tmp_path / "e.btf"))
    assert proc.returncode == 1 and "drop --base" in proc.stderr, proc.stderr
    split = tmp_path / "split.btf"
    assert _cli("btf", "extract", ko, "--base", t["path"], "-o", str(split)).returncode == 0
    proc = _cli("btf", "extract", str(split), "-o", str(tmp_path / "s.btf"))  # raw split BTF, no base
    assert proc.returncode == 1 and "give its base" in proc.stderr, proc.stderr


def test_btf_custom_path_errors_name_the_errno_once(bundled, tmp_path: Path):
    import pybpf
    big = tmp_path / "big.btf"
    with open(big, "wb") as f:  # sparse: larger than any BTF pybpf reads
        f.truncate(600 << 20)
    with pytest.raises(ObjectFormatError) as info:
        pybpf.open(bundled("counters"), btf_custom_path=str(big))
    assert str(info.value).count("EFBIG") == 1, str(info.value)
    import shutil
    import tempfile
    where = Path(tempfile.mkdtemp(prefix="pybpf-eacces-"))  # under /tmp: nobody may search it
    where.chmod(0o755)
    unreadable = where / "secret.btf"
    unreadable.write_bytes(bytes(4096))
    unreadable.chmod(0)
    code = f"""
import ctypes, pybpf
obj = open({bundled("counters")!r}, "rb").read()
pybpf.open(obj).close()  # pybpf's modules read now, while a checkout under /root is readable
libc = ctypes.CDLL(None, use_errno=True)
hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)()
assert libc.capset(hdr, data) == 0  # drop CAP_DAC_READ_SEARCH (kept to import pybpf): mode 0 is enforced
try:
    pybpf.open(obj, btf_custom_path={str(unreadable)!r})
except pybpf.BpfError as exc:
    print(exc)
"""
    from tests.conftest import run_unprivileged
    try:
        result = run_unprivileged(code)
    finally:
        shutil.rmtree(where)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("EACCES") == 1 and "Permission denied" in result.stdout, result.stdout
