"""Finding a BTF for a kernel without ``/sys/kernel/btf/vmlinux`` (BTFHub's layout).

This module owns the fallback lookup ``pybpf.open()`` does when the running
kernel exposes no BTF: in each directory of ``btf_path=`` or ``PYBPF_BTF_PATH``
(``:``-separated), it looks for ``<os id>/<version id>/<arch>/<release>.btf``,
then the same with ``.btf.tar.xz`` (BTFHub archives, unpacked once into a
per-user cache), where the os id and version id come from ``/etc/os-release``
and the release and arch from ``uname`` (each must be one plain path component).
Archives are unpacked into a cache only this user can write (checked, see
``_cache_dir``). Every path it consults is a parameter, so a test can stand for a
machine without kernel BTF. Pure: files only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pybpf.btf.types import KERNEL_BTF_PATH
from pybpf.errors import NotSupportedError

__all__ = ["BtfLookup", "find_btf", "lookup_candidates", "os_release_ids", "private_cache_dir"]

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


def _cache_dir() -> str:
    """The per-user cache of unpacked archives (:func:`private_cache_dir` ``btf``)."""
    return private_cache_dir("btf", "unpacked BTF archives")


def private_cache_dir(sub: str, what: str) -> str:
    """A per-user cache directory, made and checked: ``$XDG_CACHE_HOME/pybpf/SUB`` (else
    ``~/.cache/pybpf/SUB``), or ``$TMPDIR/pybpf-SUB-<uid>`` without a usable home.

    Whatever exists already must be a real directory (no symlink), owned by this user and
    open to no one else, under parents only this user or root can change: otherwise another
    user could plant a file there (CO-RE would trust a BTF, the pre-check a verdict) or make a
    write follow a symlink. NotSupportedError (naming ``what`` it is for) when no place is safe."""
    xdg, home = os.environ.get("XDG_CACHE_HOME", ""), os.path.expanduser("~")
    places = []
    if os.path.isabs(xdg):
        places.append(os.path.join(xdg, "pybpf", sub))
    elif os.path.isabs(home) and os.path.isdir(home):  # a home that exists: never made here
        places.append(os.path.join(home, ".cache", "pybpf", sub))
    places.append("")  # then the temporary directory's (tempfile loads only if it comes to that)
    problems = []
    for place in places:
        if not place:
            import tempfile
            place = os.path.join(tempfile.gettempdir(), f"pybpf-{sub}-{os.geteuid()}")
        try:
            os.makedirs(place, mode=0o700, exist_ok=True)
        except OSError as e:
            problems.append(f"{place}: {e.strerror}")
            continue
        problem = _unsafe(place)
        if problem is None:
            return place
        problems.append(problem)
    raise NotSupportedError(f"no safe per-user cache for {what}: " + "; ".join(problems) +
                            " (set XDG_CACHE_HOME to a directory of your own)", feature="BTF cache")


def _unsafe(directory: str) -> str | None:
    """Why ``directory`` is not safe as this user's private cache (None: it is)."""
    import stat
    uid = os.geteuid()
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return f"{directory} is not a directory of its own (a symlink or a file)"
    if st.st_uid != uid:
        return f"{directory} belongs to uid {st.st_uid}, not to this user (uid {uid})"
    if st.st_mode & 0o077:
        return f"{directory} is open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    parent = os.path.dirname(os.path.realpath(directory))
    while True:  # every parent: only this user or root may rename what is under it
        pst = os.stat(parent)
        if pst.st_uid not in (0, uid):
            return f"{parent} (a parent of {directory}) belongs to uid {pst.st_uid}"
        if pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX:
            return f"{parent} (a parent of {directory}) is writable by other users"
        if parent == "/":
            return None
        parent = os.path.dirname(parent)


def _unpack(archive: str) -> str:
    """A BTFHub ``.btf.tar.xz`` unpacked into the per-user cache (``_cache_dir``); the raw BTF's path.

    Written to a temporary file of a random name made with ``O_CREAT|O_EXCL|O_NOFOLLOW``
    (mode 0600) in that directory, then renamed into place, so no existing file or symlink
    is ever written through."""
    import hashlib  # here, not at import: pybpf.open() imports this module for find_btf()
    import secrets
    import stat

    from pybpf.btf.extract import btf_from_tarball
    st = os.stat(archive)
    key = hashlib.sha256(f"{os.path.abspath(archive)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:24]
    cache = _cache_dir()
    out = os.path.join(cache, key + ".btf")
    try:
        found = os.lstat(out)
        if stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid():
            return out
    except FileNotFoundError:
        pass
    data = btf_from_tarball(archive)
    tmp = os.path.join(cache, f".{key}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)  # replaces a name, never writes through it
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return out


_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]*")


def _component(value: str, what: str) -> str:
    """``value`` as one plain path component of the BTFHub layout, or NotSupportedError."""
    if _COMPONENT.fullmatch(value) is None or value in (".", ".."):
        raise NotSupportedError(f"{what} {value!r} is not a plain name (letters, digits, '._+~-'): "
                                "not looked up in a BTF directory", feature="kernel BTF")
    return value


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
    uname = os.uname()  # platform.uname()'s machine and release, without importing platform
    arch = machine or uname.machine
    what = BtfLookup(_component(os_id or "unknown", "os-release ID"),
                     _component(version_id or "unknown", "os-release VERSION_ID"),
                     _component(_ARCH.get(arch, arch), "machine"), _component(release or uname.release, "release"))
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
