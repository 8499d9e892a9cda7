#!/usr/bin/env python3
"""Fetch real kernel BTFs from the Debian release's kernel packages, for the CO-RE agreement tests.

What is fetched follows what the release's archive offers (``apt-cache search``), not a
fixed list: every flavour (generic, rt, cloud) of the release's own kernel series (the
oldest series it has: 6.1 on Debian 12, 6.12 on Debian 13), and the generic flavour of each
newer series (backports: 6.12 on Debian 12). For each, the newest package is chosen
(highest ABI/upload number; the signed image, or ``-unsigned`` when only that exists),
downloaded with ``apt-get download``, its ``boot/vmlinuz-*`` unpacked with ``dpkg-deb`` and
its BTF extracted with ``pybpf btf extract``. The running kernel's
``/sys/kernel/btf/vmlinux`` is copied too. Results are cached in ``.cache/kernel-btf/``
(git-ignored), or in ``$PYBPF_KERNEL_BTF_DIR``; ``manifest.json`` lists them with the
release they came from. The ``.deb`` files (~70-110 MB each) are deleted after extraction.

    python tools/fetch_kernel_btfs.py [--dir DIR] [--quiet] [--list]

Prints the manifest path (``--list``: the packages it would take). Idempotent: cached BTFs
are not fetched again.
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
DEFAULT_DIR = os.environ.get("PYBPF_KERNEL_BTF_DIR") or os.path.join(REPO, ".cache", "kernel-btf")
MODULE = "nls_utf8"
FLAVOURS = ("generic", "rt", "cloud")
# 2: modules looked for under /usr/lib too (an entry of 1 without a module is extracted again)
EXTRACTOR = 2

# Debian's image package names: linux-image-6.1.0-37-amd64, linux-image-6.1.0-37-cloud-amd64,
# linux-image-6.12.117+deb13-rt-amd64-unsigned ... (series, ABI/upload number, flavour, unsigned)
_IMAGE = re.compile(r"^linux-image-(?P<series>\d+\.\d+)\.(?:0-(?P<abi>\d+)|(?P<upload>\d+)\+deb\d+)"
                    r"-(?:(?P<flavour>rt|cloud)-)?(?P<arch>[a-z0-9]+)(?P<unsigned>-unsigned)?$")


def _log(quiet: bool, *msg: object) -> None:
    if not quiet:
        print(*msg, file=sys.stderr, flush=True)


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def deb_arch() -> str:
    """dpkg's architecture name (amd64, arm64...)."""
    try:
        return _run(["dpkg", "--print-architecture"]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def available_packages() -> list[str]:
    pattern = r"^linux-image-[0-9]"
    out = _run(["apt-cache", "search", "--names-only", pattern]).stdout
    names = [line.split(" ", 1)[0] for line in out.splitlines() if line]
    if not names and os.geteuid() == 0:
        _run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"])
        out = _run(["apt-cache", "search", "--names-only", pattern]).stdout
        names = [line.split(" ", 1)[0] for line in out.splitlines() if line]
    return names


def _series_key(series: str) -> tuple[int, ...]:
    return tuple(int(x) for x in series.split("."))


def choose(names: list[str], arch: str = "amd64") -> dict[str, str]:
    """label (``6.1-generic``...) -> the package to fetch, from the names apt offers.

    Every flavour of the oldest series (the release's own kernel), the generic flavour of each
    newer one (backports); per label the newest build, signed before ``-unsigned``."""
    best: dict[tuple[str, str], tuple[tuple[int, int], str]] = {}
    for name in names:
        m = _IMAGE.match(name)
        if m is None or m["arch"] != arch:
            continue
        flavour = m["flavour"] or "generic"
        rank = (int(m["abi"] or m["upload"]), 0 if m["unsigned"] else 1)
        key = (m["series"], flavour)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, name)
    series = sorted({s for s, _ in best}, key=_series_key)
    chosen: dict[str, str] = {}
    for i, ser in enumerate(series):
        for flavour in FLAVOURS if i == 0 else ("generic",):
            if (ser, flavour) in best:
                chosen[f"{ser}-{flavour}"] = best[(ser, flavour)][1]
    return chosen


def _release() -> str:
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return fields.get("PRETTY_NAME", "").strip('"')
    except OSError:
        return ""


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
            # modules are under /lib on Debian 12, under /usr/lib on 13 (merged /usr)
            subprocess.run(["tar", "-x", "-C", tmp, "--wildcards", "./boot/vmlinuz-*", "./boot/config-*",
                            f"./lib/modules/*/kernel/fs/nls/{MODULE}.ko*",
                            f"./usr/lib/modules/*/kernel/fs/nls/{MODULE}.ko*"],
                           stdin=tar.stdout, check=False, stderr=subprocess.DEVNULL)
        module = ""
        for root, _dirs, files in os.walk(tmp):
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
                "image_size": os.path.getsize(vmlinuz), "module": module, "extractor": EXTRACTOR}


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
    by_label = {t["label"]: t for t in manifest.get("targets", [])
                if t.get("label") != "running" and os.path.exists(os.path.join(directory, t["file"]))}
    chosen = choose(available_packages(), deb_arch())
    if not chosen:
        _log(quiet, "  apt offers no kernel image package (linux-image-*) here")
    for label, pkg in chosen.items():
        cached = by_label.get(label)
        if cached is not None and (cached.get("module") or cached.get("extractor", 1) >= EXTRACTOR):
            continue  # cached (a newer upload of the same flavour is not fetched again)
        name = pkg.removeprefix("linux-image-").removesuffix("-unsigned") + ".btf"
        info = _extract(pkg, os.path.join(directory, name), quiet)
        by_label[label] = {"label": label, "file": name, **info}
    # the running kernel, by release (machines change between sessions)
    release = platform.release()
    sysfs = "/sys/kernel/btf/vmlinux"
    name = f"running-{release}.btf"
    if os.path.exists(sysfs) and not os.path.exists(os.path.join(directory, name)):
        shutil.copyfile(sysfs, os.path.join(directory, name))
    targets = [by_label[k] for k in sorted(by_label, key=_label_key) if k in chosen or not chosen]
    if os.path.exists(os.path.join(directory, name)):
        targets.append({"label": "running", "file": name, "package": "", "version": "", "release": release,
                        "compression": "", "image_size": 0, "module": ""})
    for t in targets:
        t["size"] = os.path.getsize(os.path.join(directory, t["file"]))
    manifest = {"distribution": _release(), "targets": targets}
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, manifest_path)
    return manifest_path


def _label_key(label: str) -> tuple[tuple[int, ...], int]:
    series, _, flavour = label.partition("-")
    return _series_key(series), FLAVOURS.index(flavour) if flavour in FLAVOURS else len(FLAVOURS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the packages it would take, fetch nothing")
    args = ap.parse_args()
    if args.list:
        for label, pkg in choose(available_packages(), deb_arch()).items():
            print(f"{label}\t{pkg}")
        return
    print(fetch(args.dir, args.quiet))


if __name__ == "__main__":
    main()
