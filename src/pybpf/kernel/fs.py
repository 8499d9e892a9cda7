"""The pseudo file systems BPF depends on: tracefs, bpffs and cgroup v2.

libbpf attaches tracepoints through tracefs and pins objects on bpffs; on
machines where neither is mounted by default, pybpf mounts them on demand
(as root) rather than failing with a bare ENOENT.
"""

from __future__ import annotations

import errno
import os

from pybpf._sys import libbpf as _libbpf
from pybpf.errors import BpfError, BpfPermissionError

__all__ = ["TRACEFS", "BPFFS_MAGIC", "ensure_tracefs", "ensure_bpffs", "is_bpffs", "cgroup2_root",
           "mount", "umount"]

TRACEFS = "/sys/kernel/tracing"
BPFFS_MAGIC = 0xCAFE4A11
TRACEFS_MAGIC = 0x74726163

def _fs_magic(path: str) -> int | None:
    return _libbpf.fs_magic(path)


mount = _libbpf.mount
umount = _libbpf.umount


def ensure_tracefs() -> str:
    """Make sure tracefs is mounted where libbpf looks for it; returns its path."""
    for path in (TRACEFS, "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(path, "events")):
            return path
    if _fs_magic(TRACEFS) == TRACEFS_MAGIC:  # mounted, but this user cannot look inside
        try:
            mode = f" (mode {os.stat(TRACEFS).st_mode & 0o7777:o}, owner uid {os.stat(TRACEFS).st_uid})"
        except OSError:
            mode = ""
        raise BpfPermissionError(
            f"tracefs is mounted at {TRACEFS}{mode} but this user (uid {os.getuid()}) cannot read "
            f"{TRACEFS}/events, which libbpf needs to attach tracepoints: run as root, or give this "
            f"user read access to tracefs (e.g. mount it with gid= and mode=)", errno.EACCES,
            capability="read access to tracefs")
    mount("tracefs", TRACEFS, "tracefs")
    return TRACEFS


def is_bpffs(path: str) -> bool:
    """Whether ``path`` is on a BPF file system."""
    return _fs_magic(path) == BPFFS_MAGIC


def ensure_bpffs(path: str = "/sys/fs/bpf") -> str:
    """Mount a bpffs at ``path`` (created if needed) unless one is already there."""
    os.makedirs(path, exist_ok=True)
    if not is_bpffs(path):
        mount("bpf", path, "bpf")
    return path


def cgroup2_root() -> str:
    """Where the cgroup v2 hierarchy is mounted."""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    raise BpfError("no cgroup v2 hierarchy is mounted")


def check_pin(ret: int, what: str, path: str) -> None:
    """Raise a pin failure with the reason bpffs actually has (not just "needs a capability")."""
    if ret >= 0:
        return
    err = -ret
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if err in (errno.EPERM, errno.EACCES, errno.EINVAL) and os.path.isdir(directory) \
            and not is_bpffs(directory):
        raise BpfError(f"{what}: {directory} is not on a bpffs (mount one: mount -t bpf bpf {directory})",
                       err)
    if err in (errno.EPERM, errno.EACCES):
        if "." in os.path.basename(path):
            reason = "bpffs does not allow '.' in pin names"
        else:
            reason = "permission denied; this needs CAP_SYS_ADMIN (or CAP_BPF with write access)"
        raise BpfError(f"{what}: {reason}", err)
    if err == errno.ENOENT:
        raise BpfError(f"{what}: the directory {directory} does not exist", err)
    if err == errno.EEXIST:
        raise BpfError(f"{what}: something is already pinned there", err)
    raise _libbpf.make_error(err, what)



def pin_open_error(path: str, err: int, what: str) -> BpfError:
    """Why opening the pin at ``path`` was refused: the pin's file mode when it bars this user.

    bpffs checks the pin like a file (``bpf_obj_get`` needs read access, and
    write access for a writable fd) before any capability comes into it, so a
    0600 pin of another user is refused whatever CAP_BPF says."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and err in (errno.EACCES, errno.EPERM):
        uid = os.geteuid()
        mode = st.st_mode & 0o7777
        allowed = uid == 0 or (st.st_uid == uid and mode & 0o600 == 0o600) or \
            (st.st_uid != uid and st.st_gid in os.getgroups() and mode & 0o060 == 0o060) or mode & 0o006 == 0o006
        if not allowed:
            return BpfPermissionError(
                f"{what}: permission denied by the pin's file mode {mode:04o} (owner uid {st.st_uid}, "
                f"group {st.st_gid}; this process runs as uid {uid}): open it as its owner, or have the owner "
                f"give this user read and write access to the pin (chmod/chown)", err,
                capability=f"read and write access to {path}")
    if err in (errno.EACCES, errno.EPERM):
        return BpfPermissionError(f"{what}: permission denied; this needs CAP_BPF (run as root or grant it)", err,
                                  capability="CAP_BPF")
    if err == errno.ENOENT:
        return BpfError(f"{what}: no such pin", err)
    return _libbpf.make_error(err, what)
