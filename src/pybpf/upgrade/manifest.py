"""A deployment directory on bpffs: its manifest, its pins, who may use it, and its lock.

bpffs holds no regular files, so the manifest (JSON) is itself a pinned
one-element hash map, ``DIR/pybpf_manifest``, replaced whole on update (one
RCU element swap: readers never see a torn JSON). What it names is data from
a file system other users may reach, so:

* it is validated whole (``ManifestError`` says "manifest" and what is wrong);
* pin names are plain names (letters, digits, ``_``, ``-``) that resolve
  inside DIR, never a path (``pin_path``);
* DIR is made 0700 whatever the umask, and a DIR that exists with another
  owner or writable by group or others is refused (``check_directory``);
* one upgrade at a time holds an ``flock`` on DIR, taken with a timeout; the
  error names the process holding it (``locked``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from pybpf.errors import BpfError, BpfPermissionError, ManifestError
from pybpf.kernel import fs
from pybpf.maps.map import Map

__all__ = ["FORMAT", "MANIFEST", "check_directory", "locked", "make_directory", "pin_path", "read_manifest",
           "write_manifest"]

MANIFEST = "pybpf_manifest"
FORMAT = "pybpf-deployment/1"
MANIFEST_SIZE = 32768
_PIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,254}")
LOCK_TIMEOUT = 30.0


def pin_path(directory: str, name: Any, manifest: str | None = None) -> str:
    """``DIR/name`` for a pin name from a manifest, refused unless it is a plain name inside DIR."""
    where = manifest or os.path.join(directory, MANIFEST)
    if not isinstance(name, str) or not _PIN_NAME.fullmatch(name) or name == MANIFEST and manifest is not None:
        raise ManifestError(where, f"pin name {name!r} is not a plain name inside the directory "
                                   f"(letters, digits, '_' and '-')")
    path = os.path.join(directory, name)
    if os.path.dirname(path) != directory.rstrip("/") and os.path.dirname(path) != directory:
        raise ManifestError(where, f"pin name {name!r} leaves the directory")
    return path


def check_directory(directory: str) -> None:
    """Refuse a deployment directory that is not on bpffs, not ours, or writable by others."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such deployment directory", directory) from None
    if stat.S_ISLNK(st.st_mode):
        raise BpfPermissionError(f"{directory} is a symbolic link: refusing to use it as a deployment directory",
                                 None, capability="")
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", directory)
    if not fs.is_bpffs(directory):
        raise BpfError(f"{directory} is not on a bpffs: deployments are pinned on one (mount one with "
                       f"`mount -t bpf bpf DIR`, or use a directory under /sys/fs/bpf)")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise BpfPermissionError(f"{directory} belongs to uid {st.st_uid}, not to this user (uid {uid}): "
                                 f"refusing to use a deployment directory another user made", None, capability="")
    mode = st.st_mode & 0o7777
    if mode & 0o022:
        raise BpfPermissionError(f"{directory} is writable by {'group and others' if mode & 0o022 == 0o022 else 'group' if mode & 0o020 else 'others'} "
                                 f"(mode {mode:04o}): another user could replace its pins; "
                                 f"make it 0700 (chmod 700 {directory})", None, capability="")


def make_directory(directory: str) -> str:
    """Make DIR (and missing parents) 0700 whatever the umask, then check it (``check_directory``)."""
    directory = os.path.abspath(directory)
    missing = []
    head = directory
    while not os.path.exists(head):
        missing.append(head)
        head = os.path.dirname(head)
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # the umask cannot widen it, but may have narrowed it: exactly 0700
    check_directory(directory)
    return directory


# ---- the manifest ------------------------------------------------------------------------

def read_manifest(directory: str) -> dict[str, Any] | None:
    """The manifest pinned in DIR, validated; None when DIR holds none."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.lexists(path):
        return None
    try:
        with Map.from_pin(path, key_dtype=np.uint32, value_dtype=f"S{MANIFEST_SIZE}") as store:
            if store.type != "hash" or store.key_size != 4 or store.value_size != MANIFEST_SIZE:
                raise ManifestError(path, f"it is a {store.type} map (key {store.key_size} B, value "
                                          f"{store.value_size} B), not pybpf's one-element hash of {MANIFEST_SIZE} B")
            try:
                raw = bytes(store.lookup(0))
            except KeyError:
                raise ManifestError(path, "the map holds no manifest (element 0 is missing)") from None
    except ManifestError:
        raise
    except BpfError as exc:
        if isinstance(exc, PermissionError):
            raise
        raise ManifestError(path, f"cannot open it as a map: {exc}") from None
    try:
        doc = json.loads(raw.rstrip(b"\0").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(path, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(path, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    validate(doc, directory, path)
    return doc


def _need(cond: bool, path: str, what: str) -> None:
    if not cond:
        raise ManifestError(path, what)


def validate(doc: Any, directory: str, path: str) -> None:
    """Check the shape of a manifest and every pin name in it (``ManifestError`` otherwise)."""
    _need(isinstance(doc, dict), path, f"the top level is a {type(doc).__name__}, not an object")
    _need(doc.get("format") == FORMAT, path, f"unknown format {doc.get('format')!r} (expected {FORMAT!r})")
    _need(isinstance(doc.get("object"), str), path, "'object' is missing or not a string")
    for key, fields in (("maps", ("name", "pin")), ("programs", ("name", "pin")),
                        ("attachments", ("program", "type", "mode", "hook", "link"))):
        items = doc.get(key)
        _need(isinstance(items, list), path, f"{key!r} is missing or not a list")
        for i, item in enumerate(items):
            _need(isinstance(item, dict), path, f"{key}[{i}] is a {type(item).__name__}, not an object")
            for f in fields:
                _need(isinstance(item.get(f), str), path, f"{key}[{i}].{f} is missing or not a string")
            for f in ("pin", "link", "slot"):
                if f in item and item[f] is not None:
                    pin_path(directory, item[f], path)
        if key == "maps":
            for i, item in enumerate(items):
                _need(item.get("section") is None or isinstance(item.get("section"), str), path,
                      f"maps[{i}].section is not a string or null")
                _need(item.get("id") is None or isinstance(item.get("id"), int), path, f"maps[{i}].id is not an int")
    pending = doc.get("pending")
    if pending is not None:
        _need(isinstance(pending, dict), path, "'pending' is not an object")
        _need(isinstance(pending.get("next"), dict), path, "pending.next is not an object")
        validate(pending["next"], directory, path)
        temps = pending.get("temp")
        _need(isinstance(temps, dict), path, "pending.temp is not an object")
        for final, temp in temps.items():
            pin_path(directory, final, path)
            pin_path(directory, temp, path)
        merges = pending.get("merges")
        _need(isinstance(merges, list), path, "pending.merges is not a list")
        for i, m in enumerate(merges):
            _need(isinstance(m, dict), path, f"pending.merges[{i}] is not an object")
            for f in ("name", "old", "new", "snapshot"):
                _need(isinstance(m.get(f), str), path, f"pending.merges[{i}].{f} is missing or not a string")
                if f != "name":
                    pin_path(directory, m[f], path)
        _need(pending.get("phase") in ("prepared", "merged"), path, f"pending.phase {pending.get('phase')!r} is unknown")


def write_manifest(directory: str, manifest: dict[str, Any]) -> None:
    """Store ``manifest`` in DIR's manifest map (made and pinned on first use)."""
    data = json.dumps(manifest, sort_keys=True).encode()
    path = os.path.join(directory, MANIFEST)
    if len(data) >= MANIFEST_SIZE:
        raise ManifestError(path, f"the manifest needs {len(data)} bytes (at most {MANIFEST_SIZE - 1})")
    if os.path.lexists(path):
        store = Map.from_pin(path, key_dtype=np.uint32, value_dtype=f"S{MANIFEST_SIZE}")
    else:
        # a hash map: an update replaces the element as a whole (RCU), readers never see a torn JSON
        store = Map.create("hash", key_dtype=np.uint32, value_dtype=f"S{MANIFEST_SIZE}", max_entries=1,
                           flags="no_prealloc", name=MANIFEST[:15])
        try:
            store.pin(path)
        except BaseException:
            store.close()
            raise
    with store:
        store.update(0, data)


# ---- the lock ------------------------------------------------------------------------------

def _holders(directory: str) -> list[str]:
    """Who holds an flock on DIR, from /proc/locks: ``pid N (comm), uid U``."""
    try:
        st = os.stat(directory)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue
        pid, ident = fields[4], fields[5]
        try:
            # MAJOR:MINOR:INODE (hex, hex, decimal): the same inode number exists on other file systems
            major, minor, inode = ident.split(":")
            if (int(major, 16), int(minor, 16), int(inode)) != want:
                continue
        except ValueError:
            continue
        try:
            with open(f"/proc/{pid}/comm") as c:
                comm = c.read().strip()
            owner = os.stat(f"/proc/{pid}").st_uid
        except (OSError, ValueError):
            comm, owner = "?", -1
        found.append(f"pid {pid} ({comm}, uid {owner})")
    return found


@contextlib.contextmanager
def locked(directory: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """One upgrade (or removal) of DIR at a time: an flock on it, waited for up to ``timeout`` seconds."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holders = _holders(directory)
                    who = ", ".join(holders) if holders else "a process this user cannot see"
                    raise BpfError(f"{directory} is locked by {who}: another upgrade or removal is running "
                                   f"(gave up after {timeout:g} s)") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
