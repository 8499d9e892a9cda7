"""Verdicts kept between runs as empty files: "these bytes passed this code before".

One mechanism for :mod:`pybpf.btf.validcache` (BTF validation) and :mod:`pybpf.spec.parsed`
(object parses). A verdict is an empty file named by a keyed digest its caller computes (the
key covers the code that gave the verdict); nothing is read from it but its existence, and it
counts only as a regular file this user owns, in a per-user directory checked as the BTFHub
cache is (:func:`pybpf.btf.hub.private_cache_dir`: this user's, mode 0700, under parents no
other user can change). ``PYBPF_NO_CACHE=1``, or no safe directory, keeps and reads nothing.
Only passing verdicts are kept. Pure: files only.
"""

from __future__ import annotations

import os
import stat

from pybpf.errors import BpfError

__all__ = ["ENV", "VerdictStore"]

ENV = "PYBPF_NO_CACHE"  # "1": keep and read no verdicts


class VerdictStore:
    """The verdict files of one kind, under the private cache's ``subdir``."""

    def __init__(self, subdir: str, what: str, max_entries: int) -> None:
        self.subdir, self.what, self.max_entries = subdir, what, max_entries

    def directory(self) -> str | None:
        """The checked per-user directory (None: disabled, or no safe place)."""
        if os.environ.get(ENV) == "1":
            return None
        from pybpf.btf.hub import private_cache_dir
        try:
            return private_cache_dir(self.subdir, self.what)
        except (BpfError, OSError):
            return None

    @staticmethod
    def known(where: str, name: str) -> bool:
        """Whether verdict ``name`` is in ``where``, as a regular file of this user's."""
        try:
            st = os.lstat(os.path.join(where, name))
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()

    def remember(self, where: str, name: str) -> None:
        """Record verdict ``name`` in ``where`` (best effort: a cache that cannot be written is
        simply not used); past ``max_entries``, the older half is dropped."""
        try:
            fd = os.open(os.path.join(where, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600)
        except OSError:  # there already, or the cache cannot be written: not kept
            return
        os.close(fd)
        self._trim(where)

    def _trim(self, where: str) -> None:
        try:
            names = os.listdir(where)
            if len(names) <= self.max_entries:
                return
            aged = []
            for n in names:
                try:
                    aged.append((os.lstat(os.path.join(where, n)).st_mtime_ns, n))
                except OSError:
                    continue
            for _t, n in sorted(aged)[:len(aged) // 2]:
                try:
                    os.unlink(os.path.join(where, n))
                except OSError:
                    continue
        except OSError:
            return
