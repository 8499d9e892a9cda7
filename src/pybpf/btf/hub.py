"""Finding a BTF for a kernel without ``/sys/kernel/btf/vmlinux`` (BTFHub's layout).

This module owns the fallback lookup ``pybpf.open()`` does when the running
kernel exposes no BTF: in each directory of ``btf_path=`` or ``PYBPF_BTF_PATH``
(``:``-separated), it looks for ``<os id>/<version id>/<arch>/<release>.btf``,
then the same with ``.btf.tar.xz`` (BTFHub archives, unpacked once into a
per-user cache), where the os id and version id come from ``/etc/os-release``
and the release and arch from ``uname``. Every path it consults is a parameter,
so a test can stand for a machine without kernel BTF. Pure: files only.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from pybpf.btf.types import KERNEL_BTF_PATH
from pybpf.errors import NotSupportedError

__all__ = ["BtfLookup", "find_btf", "lookup_candidates", "os_release_ids"]

ENV = "PYBPF_BTF_PATH"
# Where the kernel's own BTF would be, and the os-release file: module attributes (and
# parameters of find_btf) so that a test can stand for a machine without kernel BTF.
SYSFS_BTF = KERNEL_BTF_PATH
OS_RELEASE = "/etc/os-release"
_ARCH = {"aarch64": "arm64", "amd64": "x86_64"}


@dataclass(frozen=True)
class BtfLookup:
    """What a lookup is for: the keys of BTFHub's directory layout."""

    os_id: str
    version_id: str
    arch: str
    release: str

    def relative(self) -> str:
        """The BTFHub-layout path: ``<os id>/<version id>/<arch>/<release>``."""
        return os.path.join(self.os_id, self.version_id, self.arch, self.release)


def os_release_ids(path: str = "/etc/os-release") -> tuple[str, str]:
    """``ID`` and ``VERSION_ID`` of an os-release file ("" where missing)."""
    values: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    values[key] = value.strip().strip('"').strip("'")
    except OSError:
        pass
    return values.get("ID", ""), values.get("VERSION_ID", "")


def _dirs(btf_path: str | os.PathLike[str] | list[str] | None) -> list[str]:
    if btf_path is None:
        env = os.environ.get(ENV, "")
        return [d for d in env.split(os.pathsep) if d]
    if isinstance(btf_path, (list, tuple)):
        return [os.fspath(d) for d in btf_path]
    return [d for d in os.fspath(btf_path).split(os.pathsep) if d]


def lookup_candidates(dirs: list[str], what: BtfLookup) -> list[str]:
    """Every path the lookup consults, in order."""
    rel = what.relative()
    out = []
    for d in dirs:
        out += [os.path.join(d, rel + ".btf"), os.path.join(d, rel + ".btf.tar.xz")]
    return out


def _unpack(archive: str) -> str:
    """A BTFHub ``.btf.tar.xz`` unpacked into the per-user cache; the raw BTF's path."""
    import hashlib  # here, not at import: pybpf.open() imports this module for find_btf()
    import tempfile

    from pybpf.btf.extract import btf_from_tarball
    st = os.stat(archive)
    key = hashlib.sha256(f"{os.path.abspath(archive)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:24]
    cache = os.path.join(tempfile.gettempdir(), f"pybpf-btf-{os.getuid()}")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    out = os.path.join(cache, key + ".btf")
    if not os.path.exists(out):
        tmp = f"{out}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(btf_from_tarball(archive))
        os.replace(tmp, out)
    return out


def find_btf(btf_path: str | os.PathLike[str] | list[str] | None = None, *,
             sysfs_btf: str | None = None, os_release: str | None = None,
             release: str | None = None, machine: str | None = None) -> str | None:
    """The BTF file to relocate against when the kernel has none.

    Returns None when ``sysfs_btf`` exists (libbpf uses it); else the first BTF found
    under the BTF directories (``btf_path``, else ``$PYBPF_BTF_PATH``); else raises
    :class:`NotSupportedError` saying what it looked for and every place it looked."""
    sysfs_btf = SYSFS_BTF if sysfs_btf is None else sysfs_btf
    if os.path.exists(sysfs_btf):
        return None
    os_id, version_id = os_release_ids(OS_RELEASE if os_release is None else os_release)
    uname = platform.uname()
    arch = machine or uname.machine
    what = BtfLookup(os_id or "unknown", version_id or "unknown", _ARCH.get(arch, arch),
                     release or uname.release)
    dirs = _dirs(btf_path)
    places = lookup_candidates(dirs, what)
    for p in places:
        if os.path.isfile(p):
            return _unpack(p) if p.endswith(".tar.xz") else p
    where = ", ".join(places) if places else (f"nowhere: no BTF directory given (pass btf_path= or "
                                              f"set {ENV})")
    raise NotSupportedError(
        f"this kernel has no BTF ({sysfs_btf} is absent) and no BTF for it was found: looked for "
        f"{what.relative()}.btf[.tar.xz] (os {what.os_id} {what.version_id}, arch {what.arch}, "
        f"release {what.release}) in {where}", feature="kernel BTF")
