"""Issue 20, items 3, 4 and 10: a pinned deployment's directory and manifest as another user could leave them.

3. pin names from the manifest only ever resolve inside DIR (a stale pin "../../x" was unlinked);
4. DIR is made 0700 under any umask, refused when another user owns it or others can write it;
   the flock is taken with a timeout and the error names the holder; a pin another user cannot
   open says the pin's file mode, not CAP_BPF;
10. a damaged manifest gives errors that say "manifest".
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

import pybpf
from pybpf.upgrade.manifest import MANIFEST, MANIFEST_SIZE, locked, read_manifest, write_manifest
from tests.conftest import ROOT, run_unprivileged
from tests.procs import env, pybpf_cmd


def _deployed(bundled, directory: str) -> None:
    obj = pybpf.open(bundled("upgrade_count_a"))
    obj.rodata["want_tgid"] = os.getpid()
    with pybpf.deploy(obj) as deployment:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        deployment.pin(directory)


# ---- 3: pins outside DIR ------------------------------------------------------------------

def test_a_manifest_pin_name_never_leaves_the_directory(bundled, kernel, bpffs, tmp_path):
    directory = os.path.join(bpffs, "tool")
    _deployed(bundled, directory)
    precious = tmp_path / f"precious-{uuid.uuid4().hex}"
    precious.write_text("keep me")
    doc = read_manifest(directory)
    assert doc is not None
    escape = os.path.relpath(precious, directory)  # "../../../tmp/.../precious-..."
    doc["programs"].append({"name": "ghost", "pin": escape})  # a stale pin the next upgrade would remove
    write_manifest(directory, doc)
    with pytest.raises(pybpf.ManifestError, match="not a plain name inside the directory"):
        pybpf.upgrade(directory, bundled("upgrade_count_b"))
    assert precious.read_text() == "keep me"
    for bad in ("/etc/passwd", "..", "a/b", "", "x" * 300, 7):
        doc["programs"][-1]["pin"] = bad
        write_manifest(directory, doc)
        with pytest.raises(pybpf.ManifestError, match="manifest"):
            pybpf.Deployment.from_pins(directory)


# ---- 4: DIR, its owner, its mode, its lock, the pins' mode --------------------------------------

def test_load_pin_makes_the_directory_0700_under_umask_000(bundled, kernel, bpffs):
    target = os.path.join(bpffs, "fleet", "tool")
    code = (f"import os, sys, runpy; os.umask(0); sys.argv = ['pybpf', 'load', {bundled('upgrade_count_a')!r}, "
            f"'--pin', {target!r}, '--duration', '0']; runpy.run_module('pybpf.cli', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env(),
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    for path in (os.path.join(bpffs, "fleet"), target):
        assert os.stat(path).st_mode & 0o777 == 0o700, path
    for name in os.listdir(target):
        assert os.stat(os.path.join(target, name)).st_mode & 0o777 == 0o600, name


def test_a_directory_of_another_user_or_writable_by_others_is_refused(bundled, kernel, bpffs):
    theirs = os.path.join(bpffs, "theirs")
    os.mkdir(theirs, 0o700)
    os.chown(theirs, 65534, 65534)
    result = subprocess.run(pybpf_cmd("load", bundled("upgrade_count_a"), "--pin", theirs, "--duration", "0"),
                            capture_output=True, text=True, timeout=120, env=env(), cwd=ROOT, check=False)
    assert result.returncode != 0 and "belongs to uid 65534" in result.stderr, result.stderr
    assert os.listdir(theirs) == []
    shared = os.path.join(bpffs, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    with pytest.raises(pybpf.BpfPermissionError, match=r"writable by group and others \(mode 0777\)"):
        pybpf.upgrade(shared, bundled("upgrade_count_b"))
    os.chmod(shared, 0o700)
    with pytest.raises(pybpf.BpfError, match="holds no pybpf deployment"):
        pybpf.upgrade(shared, bundled("upgrade_count_b"))


def test_the_lock_times_out_and_names_its_holder(bundled, kernel, bpffs):
    directory = os.path.join(bpffs, "tool")
    _deployed(bundled, directory)
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, os, sys, time; fd = os.open({directory!r}, "
                               f"os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                               f"sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(pybpf.BpfError, match=rf"locked by pid {holder.pid} \(python[^)]*, uid 0\).*after 0.5 s"):
            pybpf.upgrade(directory, bundled("upgrade_count_b"), lock_timeout=0.5)
        assert read_manifest(directory)["object"] == "upgrade_count_a"  # type: ignore[index]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()  # type: ignore[union-attr]
    with locked(directory, timeout=5):  # released with its holder
        pass


def test_a_pin_another_user_cannot_open_names_the_file_mode(kernel, bpffs):
    reachable = os.path.join(bpffs, "open")
    os.mkdir(reachable)
    os.chmod(reachable, 0o755)  # others may look inside: only the pin's own mode stops them
    pin = os.path.join(reachable, "counts")
    with pybpf.Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=1) as m:
        m.pin(pin)
    assert os.stat(pin).st_mode & 0o777 == 0o600
    code = (f"import pybpf\ntry:\n    pybpf.Map.from_pin({pin!r})\nexcept pybpf.BpfError as e:\n    print(e)")
    out = run_unprivileged(code)
    assert "file mode 0600" in out.stdout and "owner uid 0" in out.stdout, out.stdout + out.stderr
    assert "CAP_BPF" not in out.stdout


# ---- 10: damaged manifests ----------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"\xff\xfe not utf-8",
    b'{"format": "pybpf-deployment/1", "object": "x", "maps": "error", "programs": [], "attachments": []}',
    b'{"format": "pybpf-deployment/1", "object": "x", "maps": ["counts"], "programs": [], "attachments": []}',
    b"[1, 2, 3]",
    b'{"format": "pybpf-deployment/9"}',
    b'{"format": "pybpf-deployment/1", "object": "x", "maps": [], "programs": [], '
    b'"attachments": [{"program": "p", "type": "tracepoint", "mode": "teleport", "hook": "h", "link": "p_link"}]}',
    b"{truncated",
])
def test_a_damaged_manifest_says_manifest(bundled, kernel, bpffs, raw):
    directory = os.path.join(bpffs, "tool")
    _deployed(bundled, directory)
    with pybpf.Map.from_pin(os.path.join(directory, MANIFEST), key_dtype=np.uint32,
                            value_dtype=f"S{MANIFEST_SIZE}") as store:
        store.update(0, raw)
    result = subprocess.run(pybpf_cmd("upgrade", directory, bundled("upgrade_count_b")), capture_output=True,
                            text=True, timeout=120, env=env(), cwd=ROOT, check=False)
    assert result.returncode != 0
    # ManifestError's own words: the bare word "manifest" is in every error naming the pin DIR/pybpf_manifest
    assert "damaged deployment manifest" in result.stderr and "Traceback" not in result.stderr, result.stderr
    with pytest.raises(pybpf.ManifestError):
        pybpf.Deployment.from_pins(directory)


def test_a_manifest_pin_that_is_not_a_manifest_map_says_manifest(kernel, bpffs):
    directory = os.path.join(bpffs, "tool")
    os.mkdir(directory, 0o700)
    with pybpf.Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=1) as m:
        m.pin(os.path.join(directory, MANIFEST))
    with pytest.raises(pybpf.ManifestError, match="not pybpf's one-element hash"):
        read_manifest(directory)
