"""Issue 20 item 2: the BTFHub fallback's cache and lookup against another local user.

The other user is uid 65534 (``run_unprivileged``). pybpf trusts the BTF it finds for CO-RE,
so a BTF planted in the cache, a write that follows a planted symlink, or a lookup walked out of
the BTF directory by ``/etc/os-release`` would each let that user steer root.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

from pybpf.btf import hub
from pybpf.btf.types import Btf
from pybpf.errors import NotSupportedError
from tests.conftest import run_unprivileged


def _archive(directory: Path, btf: bytes, os_id: str = "pybpfos", version: str = "1") -> Path:
    arch = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    where = directory / os_id / version / arch
    where.mkdir(parents=True)
    src = directory / "k.btf"
    src.write_bytes(btf)
    path = where / f"{platform.release()}.btf.tar.xz"
    with tarfile.open(path, "w:xz", preset=0) as tar:
        tar.add(src, arcname=f"{platform.release()}.btf")
    src.unlink()
    return path


def _old_key(archive: Path) -> str:
    """The cache file name the old code used (predictable: path, size and mtime)."""
    st = archive.stat()
    return hashlib.sha256(f"{os.path.abspath(archive)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:24]


@pytest.fixture
def machine(bundled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A machine without kernel BTF whose os-release names an archive in a BTF directory, a
    shared sticky temp directory as every machine has, and no home directory."""
    btf = Btf.from_file(bundled("counters"))._data
    hub_dir = tmp_path / "hub"
    archive = _archive(hub_dir, btf)
    release = tmp_path / "os-release"
    release.write_text('ID=pybpfos\nVERSION_ID="1"\n')
    shared = Path(tempfile.mkdtemp(prefix="pybpf-shared-"))
    shared.chmod(0o1777)
    monkeypatch.setattr(hub, "SYSFS_BTF", str(tmp_path / "no-sysfs-btf"))
    monkeypatch.setattr(hub, "OS_RELEASE", str(release))
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("HOME", str(tmp_path / "no-home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    try:
        yield hub_dir, archive, btf, shared
    finally:
        shutil.rmtree(shared)


def test_a_cache_another_user_made_first_is_not_used(kernel, machine):
    hub_dir, archive, btf, shared = machine
    planted = shared / f"pybpf-btf-{os.geteuid()}"
    code = (f"import os; os.umask(0); os.mkdir({str(planted)!r}, 0o777); "
            f"open(os.path.join({str(planted)!r}, {_old_key(archive) + '.btf'!r}), 'wb').write(b'PLANTED')")
    result = run_unprivileged(code)
    assert result.returncode == 0, result.stderr
    assert planted.stat().st_uid == 65534
    with pytest.raises(NotSupportedError) as info:
        found = hub.find_btf(str(hub_dir))
        assert Path(found).read_bytes() == btf, "the planted BTF was used"  # what the old code did
    assert "uid 65534" in str(info.value) and "XDG_CACHE_HOME" in str(info.value), str(info.value)


def test_cache_writes_never_follow_a_symlink(kernel, machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    hub_dir, archive, btf, shared = machine
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    victim = tmp_path / "victim"
    victim.write_bytes(b"VICTIM")
    # symlinks at every name a write could take, in both places the cache may be
    for cache in (shared / f"pybpf-btf-{os.geteuid()}", home / ".cache" / "pybpf" / "btf"):
        cache.mkdir(parents=True, mode=0o700)
        (cache / f"{_old_key(archive)}.btf.{os.getpid()}.tmp").symlink_to(victim)
    found = hub.find_btf(str(hub_dir))
    assert victim.read_bytes() == b"VICTIM"
    assert found is not None and Path(found).read_bytes() == btf
    assert Path(found).parent == home / ".cache" / "pybpf" / "btf"
    assert (Path(found).stat().st_mode & 0o777) == 0o600
    assert hub.find_btf(str(hub_dir)) == found  # unpacked once


def test_os_release_cannot_walk_out_of_the_btf_directory(kernel, machine, tmp_path: Path):
    hub_dir, archive, btf, shared = machine
    outside = tmp_path / "escaped"
    arch = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    (outside / "1" / arch).mkdir(parents=True)
    (outside / "1" / arch / f"{platform.release()}.btf").write_bytes(b"OUTSIDE")
    deep = hub_dir / "a" / "b"
    deep.mkdir(parents=True)
    release = tmp_path / "evil-os-release"
    release.write_text(f"ID={os.path.relpath(outside, deep)}\nVERSION_ID=1\n")  # ../../../escaped
    with pytest.raises(NotSupportedError, match="os-release ID .* is not a plain name"):
        found = hub.find_btf(str(deep), os_release=str(release))
        assert found is None or Path(found).read_bytes() != b"OUTSIDE", "walked out of the BTF directory"
    for bad in ("..", ".", "a/b", "", "-x"):
        release.write_text(f"ID=debian\nVERSION_ID={bad}\n")
        if bad == "":
            continue  # missing: "unknown"
        with pytest.raises(NotSupportedError, match="VERSION_ID"):
            hub.find_btf(str(deep), os_release=str(release))
