"""BPF tokens (kernel 6.9): delegated BPF rights for a process without capabilities in the init
user namespace.

A privileged process mounts a bpffs for a user namespace with ``delegate_cmds``,
``delegate_maps``, ``delegate_progs`` and ``delegate_attachs``; a process in that user namespace
makes a token from the mount (``BPF_TOKEN_CREATE``) and passes it with each bpf(2) call it makes.
Objects get it through libbpf >= 1.4 (``pybpf.open(path, token_path=MOUNT)``, or
``LIBBPF_BPF_TOKEN_PATH``): libbpf 1.1 makes its bpf(2) calls without one, so pybpf refuses a
token request there instead of loading without it. :class:`Token` makes one directly (pybpf's own
``BPF_TOKEN_CREATE``, any libbpf), to check a delegation or hold it.
"""

from __future__ import annotations

import errno
import os

from pybpf._sys import bpfsys
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.resource import Resource
from pybpf.errors import BpfError, BpfPermissionError, ClosedError, NotSupportedError

__all__ = ["ENV", "LIBBPF_TOKEN_RELEASE", "Token", "requested_path", "token_error"]

ENV = "LIBBPF_BPF_TOKEN_PATH"
LIBBPF_TOKEN_RELEASE = (1, 4)  # bpf_object_open_opts.bpf_token_path


def requested_path(token_path: str | os.PathLike[str] | None) -> str | None:
    """The token path an open asks for: ``token_path``, else ``$LIBBPF_BPF_TOKEN_PATH`` (libbpf's
    rule: an empty string means no token); None when neither asks for one."""
    if token_path is not None:
        return os.fsdecode(os.fspath(token_path))
    return os.environ.get(ENV) or None


def token_error(err: int, path: str) -> BpfError:
    """What a failed BPF_TOKEN_CREATE means."""
    what = f"creating a BPF token from {path}"
    if err == errno.EPERM:
        return BpfPermissionError(f"{what}: refused: the bpffs must be mounted for this process's user namespace "
                                  f"(not the initial one) with delegate_cmds/maps/progs/attachs, and the process "
                                  "needs CAP_BPF in that namespace", err, capability="CAP_BPF (in the token's "
                                  "user namespace)")
    if err == errno.EINVAL:
        return BpfError(f"{what}: not the root of a bpffs mount", err)
    if err == errno.ENOENT:
        return BpfError(f"{what}: no such bpffs", err)
    if err in (errno.EOPNOTSUPP, _libbpf.ENOTSUPP):
        return NotSupportedError(f"{what}: the bpffs delegates nothing (mount it with delegate_* options)", err,
                                 feature="bpf_token")
    return _libbpf.make_error(err, what)


class Token(Resource):
    """A BPF token made from a delegating bpffs mount; close releases it."""

    _fd = -1

    def __init__(self, bpffs: str | os.PathLike[str]) -> None:
        path = os.fsdecode(os.fspath(bpffs))
        try:
            mount_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise BpfError(f"creating a BPF token from {path}: {exc.strerror}", exc.errno) from None
        try:
            fd = bpfsys.token_create(mount_fd)
        finally:
            os.close(mount_fd)
        if fd == -errno.EINVAL and not _kernel_has_tokens():
            raise NotSupportedError("creating a BPF token: this kernel has no BPF tokens (Linux >= 6.9)", errno.EINVAL,
                                    feature="bpf_token")
        if fd < 0:
            raise token_error(-fd, path)
        self._fd = fd
        self.path = path

    def __repr__(self) -> str:
        return f"<Token from {getattr(self, 'path', '?')} {'closed' if self.closed else f'fd {self._fd}'}>"

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._fd < 0

    def fileno(self) -> int:
        """The token fd (owned by the token)."""
        if self._fd < 0:
            raise ClosedError("BPF token")
        return self._fd

    def close(self) -> None:
        """Release the token."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _kernel_has_tokens() -> bool:
    """BPF_TOKEN_CREATE with a bad fd: EBADF where the command exists, EINVAL where it does not."""
    return bpfsys.token_create(-1) != -errno.EINVAL
