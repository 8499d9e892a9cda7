#!/usr/bin/env python3
"""Fetch real kernel BTFs from Debian's kernel packages, for the CO-RE agreement tests.

For each wanted flavour the newest package apt knows is chosen (``apt-cache``
search, highest ABI/upload number: nothing pinned to one build that may vanish),
downloaded with ``apt-get download``, its ``boot/vmlinuz-*`` unpacked with
``dpkg-deb`` and its BTF extracted with ``pybpf btf extract``. The running
kernel's ``/sys/kernel/btf/vmlinux`` is copied too. Results are cached in
``.cache/kernel-btf/`` (git-ignored); ``manifest.json`` lists them. The
``.deb`` files (~70-110 MB each) are deleted after extraction.

    python tools/fetch_kernel_btfs.py [--dir DIR] [--quiet]

Prints the manifest path. Idempotent: cached BTFs are not fetched again.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(REPO, ".cache", "kernel-btf")
MODULE = "nls_utf8"

# (label, package-name regex with one numeric group to maximise)
WANTED: tuple[tuple[str, str], ...] = (
    ("6.1-generic", r"^linux-image-6\.1\.0-(\d+)-amd64$"),
    ("6.1-rt", r"^linux-image-6\.1\.0-(\d+)-rt-amd64$"),
    ("6.1-cloud", r"^linux-image-6\.1\.0-(\d+)-cloud-amd64$"),
    ("6.12-generic", r"^linux-image-6\.12\.(\d+)\+deb12-amd64$"),
)


def _log(quiet: bool, *msg: object) -> None:
    if not quiet:
        print(*msg, file=sys.stderr, flush=True)


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def available_packages() -> list[str]:
    out = _run(["apt-cache", "search", "--names-only", r"^linux-image-6\.(1|12)\."]).stdout
    names = [line.split(" ", 1)[0] for line in out.splitlines() if line]
    if not names and os.geteuid() == 0:
        _run(["apt-get", "update", "-qq"])
        out = _run(["apt-cache", "search", "--names-only", r"^linux-image-6\.(1|12)\."]).stdout
        names = [line.split(" ", 1)[0] for line in out.splitlines() if line]
    return names


def choose(names: list[str]) -> dict[str, str]:
    """label -> the newest package of that flavour apt offers."""
    chosen: dict[str, str] = {}
    for label, pattern in WANTED:
        best: tuple[int, str] | None = None
        for n in names:
            m = re.match(pattern, n)
            if m and (best is None or int(m.group(1)) > best[0]):
                best = (int(m.group(1)), n)
        if best is not None:
            chosen[label] = best[1]
    return chosen


def _extract(pkg: str, out_btf: str, quiet: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="pybpf-kbtf-") as tmp:
        os.chmod(tmp, 0o755)  # apt's _apt user may download into it
        t0 = time.monotonic()
        _run(["apt-get", "download", "-q", pkg], cwd=tmp)
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if not debs:
            raise RuntimeError(f"apt-get download {pkg} produced no .deb")
        deb = os.path.join(tmp, debs[0])
        version = _run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE) as tar:
            # the image, its config, and one small module (split BTF, for `btf extract --base`)
            subprocess.run(["tar", "-x", "-C", tmp, "--wildcards", "./boot/vmlinuz-*", "./boot/config-*",
                            f"./lib/modules/*/kernel/fs/nls/{MODULE}.ko*"],
                           stdin=tar.stdout, check=False, stderr=subprocess.DEVNULL)
        module = ""
        for root, _dirs, files in os.walk(os.path.join(tmp, "lib")):
            for f in files:
                if f.startswith(MODULE + ".ko"):
                    module = os.path.basename(out_btf).removesuffix(".btf") + "-" + f
                    shutil.copyfile(os.path.join(root, f), os.path.join(os.path.dirname(out_btf), module))
        boot = os.path.join(tmp, "boot")
        vmlinuz = next(os.path.join(boot, f) for f in os.listdir(boot) if f.startswith("vmlinuz-"))
        config = next((os.path.join(boot, f) for f in os.listdir(boot) if f.startswith("config-")), None)
        compression = ""
        if config:
            with open(config) as f:
                m = re.search(r"^CONFIG_KERNEL_(GZIP|XZ|LZMA|LZ4|ZSTD|BZIP2|LZO)=y", f.read(), re.M)
                compression = m.group(1).lower() if m else ""
        release = os.path.basename(vmlinuz)[len("vmlinuz-"):]
        _run([sys.executable, "-m", "pybpf.cli", "btf", "extract", vmlinuz, "-o", out_btf],
             env={**os.environ, "PYTHONPATH": os.path.join(REPO, "src") + os.pathsep
                  + os.environ.get("PYTHONPATH", "")})
        _log(quiet, f"  {pkg}: {release} ({compression}) -> {os.path.getsize(out_btf)} bytes "
                    f"in {time.monotonic() - t0:.1f} s")
        return {"package": pkg, "version": version, "release": release, "compression": compression,
                "image_size": os.path.getsize(vmlinuz), "module": module}


def fetch(directory: str = DEFAULT_DIR, quiet: bool = False) -> str:
    """Make sure every wanted BTF is in ``directory``; return the manifest's path."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # tests of several sessions may fetch at once
        return _fetch(directory, quiet)


def _fetch(directory: str, quiet: bool) -> str:
    manifest_path = os.path.join(directory, "manifest.json")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        manifest = {"targets": []}
    by_label = {t["label"]: t for t in manifest["targets"]
                if os.path.exists(os.path.join(directory, t["file"]))}
    missing = [label for label, _ in WANTED if label not in by_label]
    if missing:
        chosen = choose(available_packages())
        for label in missing:
            pkg = chosen.get(label)
            if pkg is None:
                _log(quiet, f"  no package for {label} in apt's lists")
                continue
            name = pkg.removeprefix("linux-image-") + ".btf"
            info = _extract(pkg, os.path.join(directory, name), quiet)
            by_label[label] = {"label": label, "file": name, **info}
    # the running kernel, by release (machines change between sessions)
    release = platform.release()
    label = "running"
    sysfs = "/sys/kernel/btf/vmlinux"
    name = f"running-{release}.btf"
    if os.path.exists(sysfs) and not os.path.exists(os.path.join(directory, name)):
        shutil.copyfile(sysfs, os.path.join(directory, name))
    if os.path.exists(os.path.join(directory, name)):
        by_label[label] = {"label": label, "file": name, "package": "", "version": "", "release": release,
                           "compression": "", "image_size": 0, "module": ""}
    manifest = {"targets": [by_label[k] for k in [lb for lb, _ in WANTED] + [label] if k in by_label]}
    for t in manifest["targets"]:
        t["size"] = os.path.getsize(os.path.join(directory, t["file"]))
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, manifest_path)
    return manifest_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    print(fetch(args.dir, args.quiet))


if __name__ == "__main__":
    main()
