#!/usr/bin/env python3
"""Run the README's two commands on another Debian release, in a root made by debootstrap.

    python3 tools/debian_check.py [--suite trixie] [--commands "make demo" "make test"] [--keep]
    python3 tools/debian_check.py --root /var/tmp/pybpf-debian-check-trixie-XXXX --commands "make test"
    make test-debian13                      # the same, for Debian 13 (trixie)

What it does, as a new user of that release would see it, on this machine's kernel:

1. A base root of SUITE (``debootstrap --variant=minbase``) from this machine's own Debian
   mirror, read from its apt sources (one-line ``.list`` and deb822 ``.sources`` files), cached
   as a tarball under ``~/.cache/pybpf/debian-check/`` (made again after 14 days or with
   ``--refresh``). A run extracts a fresh copy into ``/var/tmp``.
2. The root gets what belongs to the machine, not to the user: the release's apt sources
   (SUITE, SUITE-updates, SUITE-security) on that mirror, the machine's DNS and hosts, its local
   CA certificates (``/usr/local/share/ca-certificates``: an egress proxy may re-sign TLS),
   proxy variables, and a ``policy-rc.d`` that keeps packages from starting services.
3. Inside a private mount namespace (nothing it mounts is ever visible outside, and all of it
   goes when the namespace ends, even after SIGKILL), the root is bind-mounted on itself (a mount
   point: ``ip netns`` and ``unshare`` need one) and gets /proc, the machine's /sys (with
   tracefs, cgroup v2 and bpffs mounted when missing), /dev and a tmpfs /run; then it becomes
   the namespace's root with ``pivot_root`` (not ``chroot``: the kernel refuses a user namespace
   to a chrooted process, and prints paths of other mount namespaces from outside a chroot).
4. In the root, with an empty environment: ``apt-get install make git`` (what the README asks
   for first), ``git clone`` of this repository's committed HEAD (a bundle), then each command
   (default: ``make demo``, ``make test``) with ``PYBPF_REQUIRE_KERNEL=1``, as CI runs them.
5. Afterwards, on success, failure, Ctrl-C or SIGTERM: every process left in the root is killed
   (a cgroup v2 ``cgroup.kill``, then any process whose root is the root), the explicit mounts
   are undone, and the root is removed (``--keep`` keeps it for a look).

Downloads are cached across runs (apt's ``.deb`` files, pip's cache, the kernel-BTF corpus
under ``PYBPF_KERNEL_BTF_DIR``); nothing else carries over. Exit status: the first failing
command's, 0 when all pass. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MAX_AGE_DAYS = 14
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
# Debian's dpkg architecture names (debootstrap --arch), from the kernel's machine name
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "ppc64le": "ppc64el", "s390x": "s390x",
            "riscv64": "riscv64", "armv7l": "armhf"}


def log(*msg: object) -> None:
    print("debian-check:", *msg, file=sys.stderr, flush=True)


# ---- the machine's apt sources --------------------------------------------------------------

@dataclass
class Source:
    """One ``deb`` entry of the apt sources: a URI and its suites."""

    uri: str
    suites: list[str]
    components: list[str] = field(default_factory=list)


def parse_list(text: str) -> list[Source]:
    """The ``deb`` lines of a one-line-style sources.list (options in ``[...]`` are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            out.append(Source(words[0], [words[1]], words[2:]))
    return out


def parse_deb822(text: str) -> list[Source]:
    """The enabled ``Types: deb`` stanzas of a deb822 ``.sources`` file."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:  # a continuation line
                fields[key] += " " + raw.strip()
                continue
            k, sep, v = raw.partition(":")
            if sep:
                key = k.strip().lower()
                fields[key] = v.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(Source(uri, fields.get("suites", "").split(), fields.get("components", "").split()))
    return out


def machine_sources(etc: str = "/etc/apt") -> list[Source]:
    """Every enabled ``deb`` source of this machine, in apt's order."""
    sources: list[Source] = []
    paths = [os.path.join(etc, "sources.list")]
    paths += sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.list")))
    paths += sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.sources")))
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        sources += parse_deb822(text) if path.endswith(".sources") else parse_list(text)
    return sources


def debian_mirrors(sources: list[Source], codename: str) -> tuple[str, str]:
    """(the Debian archive, the security archive) this machine uses, by the suites they serve.

    The archive is the source of the machine's own suite (``bookworm``), or of any suite that
    is not a security one on a URI that looks like Debian's; the security archive is the source
    of ``CODENAME-security``. Each falls back to deb.debian.org when the machine has none."""
    archive = security = ""
    for s in sources:
        uri = s.uri.rstrip("/")
        if not security and any(x.endswith("-security") or x.endswith("/updates") for x in s.suites):
            security = uri
        elif not archive and codename and codename in s.suites:
            archive = uri
    if not archive:
        archive = next((s.uri.rstrip("/") for s in sources if s.uri.rstrip("/").endswith("/debian")
                        and not any(x.endswith("-security") for x in s.suites)), "")
    return archive or DEFAULT_MIRROR, security or DEFAULT_SECURITY


def sources_file(suite: str, archive: str, security: str) -> str:
    """The deb822 sources of a standard SUITE installation on these mirrors."""
    return (f"Types: deb\nURIs: {archive}\nSuites: {suite} {suite}-updates\nComponents: main\n"
            f"Signed-By: {KEYRING}\n\n"
            f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
            f"Signed-By: {KEYRING}\n")


# ---- the cached base root -------------------------------------------------------------------

def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pybpf" / "debian-check"


def run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def ensure_host_tools() -> None:
    """debootstrap (and the other host programs used) installed, apt waiting for others' locks."""
    missing = [pkg for tool, pkg in (("debootstrap", "debootstrap"), ("unshare", "util-linux"),
                                     ("git", "git"), ("chroot", "coreutils")) if shutil.which(tool) is None]
    if missing:
        log("installing on this machine:", *missing)
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(apt + ["update", "-qq"], env=env)
        run(apt + ["install", "-y", "-qq", *missing], env=env, stdout=subprocess.DEVNULL)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another run holding {path}")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def base_tarball(suite: str, arch: str, mirror: str, refresh: bool) -> Path:
    """The cached ``debootstrap`` root of SUITE as a tarball; made when missing, old or stale."""
    cache = cache_dir()
    tarball = cache / f"{suite}-{arch}-minbase.tar.gz"
    meta_path = tarball.with_suffix(".json")
    with locked(cache / f".{suite}.lock"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        fresh = (tarball.exists() and meta.get("mirror") == mirror
                 and time.time() - meta.get("created", 0) < MAX_AGE_DAYS * 86400)
        if fresh and not refresh:
            return tarball
        t0 = time.monotonic()
        log(f"debootstrap {suite} ({arch}) from {mirror} into the cache ...")
        tmp = tempfile.mkdtemp(prefix=f"pybpf-debootstrap-{suite}-", dir="/var/tmp")
        try:
            root = os.path.join(tmp, "root")
            # in its own mount namespace: whatever debootstrap mounts in the target (proc, sys) goes
            # with it, also when it fails or is interrupted, and is never seen by the host
            cmd = ["unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase",
                   f"--arch={arch}", "--include=ca-certificates", f"--keyring={KEYRING}", suite, root, mirror]
            for attempt in range(1, 4):  # a mirror hiccup on a fresh CI machine is not a failed check
                with open(os.path.join(tmp, "debootstrap.log"), "w") as out:
                    ok = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode == 0
                if ok:
                    break
                tail = Path(tmp, "debootstrap.log").read_text().splitlines()[-15:]
                if attempt == 3:
                    raise SystemExit("debian-check: debootstrap failed 3 times:\n  " + "\n  ".join(tail))
                log(f"debootstrap failed (attempt {attempt}): {tail[-1] if tail else ''}; again in 30 s")
                _remove_tree(root)
                time.sleep(30)
            # the downloaded .debs would double the tarball; a run refills apt's cache itself
            for deb in glob.glob(os.path.join(root, "var/cache/apt/archives/*.deb")):
                os.unlink(deb)
            partial = tarball.with_name(tarball.name + ".part")
            run(["tar", "--numeric-owner", "-C", root, "-czf", str(partial), "."])
            os.replace(partial, tarball)
        finally:
            _remove_tree(tmp)
        meta_path.write_text(json.dumps({"suite": suite, "arch": arch, "mirror": mirror, "created": time.time()}))
        log(f"cached {tarball} ({tarball.stat().st_size >> 20} MiB) in {time.monotonic() - t0:.0f} s")
        return tarball


# ---- one run ----------------------------------------------------------------------------------

INNER = r"""
set -uo pipefail
step() { local what=$1; shift; local t0=$SECONDS; echo "debian-check: [$what] $*" >&2
  "$@"; local rc=$?; echo "debian-check: [$what] exit $rc after $((SECONDS - t0)) s" >&2; return $rc; }
export DEBIAN_FRONTEND=noninteractive
update-ca-certificates >/dev/null 2>&1 || true   # the machine's local CAs, copied in
cd /root
step prerequisites sh -c 'apt-get -o DPkg::Lock::Timeout=600 -qq update && apt-get -o DPkg::Lock::Timeout=600 install -y -qq make git >/dev/null' || exit 90
if [ -d pybpf/.git ]; then  # a kept root (--root): the new HEAD into the same clone
  step update sh -c 'git -C pybpf fetch -q ../pybpf.bundle HEAD && git -C pybpf -c advice.detachedHead=false checkout -q -f FETCH_HEAD' || exit 91
else
  step clone git -c advice.detachedHead=false -c init.defaultBranch=main clone -q pybpf.bundle pybpf || exit 91
fi
cd pybpf
git log -1 --format='debian-check: testing %h %s' >&2
status=0
for command in "$@"; do
  step "$command" sh -c "$command" || { rc=$?; [ $status -ne 0 ] || status=$rc; }
done
exit $status
"""

# run on the host, inside the new mount namespace: $1 root, $2 pip cache, $3 kernel-BTF cache;
# then the command to run in the chroot
MOUNTS = r"""
set -eu
R=$1; PIP_CACHE=$2; BTF_CACHE=$3; shift 3
undo() { umount -R "$R" 2>/dev/null || umount -R -l "$R" 2>/dev/null || true; }
trap undo EXIT
trap 'exit 130' INT TERM HUP
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mkdir -p "$R/run/lock"
mountpoint -q "$R/sys/kernel/tracing" || mount -t tracefs tracefs "$R/sys/kernel/tracing"
mountpoint -q "$R/sys/fs/bpf" || mount -t bpf bpf "$R/sys/fs/bpf"
if ! grep -q ' - cgroup2 ' /proc/self/mountinfo; then
  if mountpoint -q "$R/sys/fs/cgroup"; then mkdir -p "$R/sys/fs/cgroup/unified"; mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup/unified"
  else mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"; fi
fi
mkdir -p "$R/root/.cache/pip" "$R/var/cache/pybpf-kernel-btf"
mount --bind "$PIP_CACHE" "$R/root/.cache/pip"
mount --bind "$BTF_CACHE" "$R/var/cache/pybpf-kernel-btf"
# The root becomes this namespace's root (pivot_root, not chroot): the kernel treats the processes
# as it would on a machine booted from it (a chrooted process may not make a user namespace, and
# /proc/PID/maps of another namespace's files would print paths from outside the root).
cd "$R"
mkdir -p .pybpf-oldroot
pivot_root . .pybpf-oldroot
trap - EXIT
umount -l /.pybpf-oldroot
rmdir /.pybpf-oldroot
exec "$@"
"""


class Interrupted(Exception):
    """SIGTERM or SIGHUP: end the run as Ctrl-C does."""


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


class ProcessGroup:
    """Every process of the run in one cgroup v2, killed together at the end (``cgroup.kill``).

    Processes that the tests move into cgroups of their own, or a machine without cgroup v2,
    are caught afterwards by their root directory (``/proc/PID/root``)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = ""
        mount = next((line.split()[4] for line in open("/proc/self/mountinfo")
                      if " - cgroup2 " in line), "")
        own = next((line.strip().split("::", 1)[1] for line in open("/proc/self/cgroup")
                    if line.startswith("0::")), "/")
        if mount:
            path = os.path.join(mount, own.lstrip("/"), f"pybpf-debian-check-{uuid.uuid4().hex[:12]}")
            try:
                os.mkdir(path)
                self.path = path
            except OSError as exc:
                log(f"no cgroup for the run ({exc}); leftovers are found by their root directory")

    def enter(self) -> None:
        """preexec_fn of the run's first process: move itself into the cgroup before exec; Ctrl-C
        and SIGQUIT as a user's terminal has them (a run started with `&` by a script inherits
        them ignored, and the suite stops commands with SIGINT)."""
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write("0")

    def kill_all(self) -> None:
        if self.path:
            try:
                with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                    f.write("1")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and open(os.path.join(self.path, "cgroup.procs")).read():
                    time.sleep(0.1)
                os.rmdir(self.path)
            except OSError as exc:
                log(f"cgroup {self.path}: {exc}")
        for _ in range(3):  # anything else whose root is the root
            found = False
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    root = os.readlink(f"/proc/{entry}/root")
                except OSError:
                    continue
                if root == self.root or root.startswith(self.root + "/"):
                    found = True
                    try:
                        os.kill(int(entry), signal.SIGKILL)
                    except OSError:
                        pass
            if not found:
                break
            time.sleep(0.5)


def _remove_tree(path: str) -> None:
    """``rm -rf`` that never crosses into a mounted file system (unmounting any first)."""
    if _mounts_under(path):
        subprocess.run(["umount", "-R", "-l", path], check=False)
    if not _mounts_under(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == root or p.startswith(root + "/")]


def prepare_root(root: str, tarball: Path, suite: str, archive: str, security: str, cache: Path) -> None:
    run(["tar", "--numeric-owner", "-C", root, "-xzf", str(tarball)])
    apt = Path(root, "etc/apt")
    for old in [apt / "sources.list", *apt.glob("sources.list.d/*")]:
        old.unlink()
    (apt / "sources.list.d" / "debian.sources").write_text(sources_file(suite, archive, security))
    for name in ("resolv.conf", "hosts"):
        target = Path(root, "etc", name)
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            shutil.copyfile(f"/etc/{name}", target)
        except OSError:
            pass
    cas = Path(root, "usr/local/share/ca-certificates")
    cas.mkdir(parents=True, exist_ok=True)
    for ca in glob.glob("/usr/local/share/ca-certificates/**/*.crt", recursive=True):
        shutil.copyfile(ca, cas / os.path.basename(ca))
    # downloads retried (a fresh CI machine meets a mirror's hiccups too)
    Path(root, "etc/apt/apt.conf.d/80pybpf-retries").write_text('Acquire::Retries "5";\n')
    policy = Path(root, "usr/sbin/policy-rc.d")
    policy.write_text("#!/bin/sh\nexit 101\n")  # a chroot: no package starts a service
    policy.chmod(0o755)
    # apt's .deb cache: hard links in (a run's own directory, no lock shared between runs)
    archives = Path(root, "var/cache/apt/archives")
    archives.mkdir(parents=True, exist_ok=True)
    for deb in (cache / "apt-archives").glob("*.deb"):
        _link_or_copy(deb, archives / deb.name)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def save_debs(root: str, cache: Path) -> None:
    for deb in Path(root, "var/cache/apt/archives").glob("*.deb"):
        _link_or_copy(deb, cache / "apt-archives" / deb.name)


def repo_bundle(dest: str) -> str:
    """A git bundle of this repository's committed HEAD; returns the commit."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        log("uncommitted changes are not tested: the clone is of the committed HEAD")
    run(["git", "-C", str(REPO), "bundle", "create", "-q", dest, "HEAD"], stderr=subprocess.DEVNULL)
    return head


def check(suite: str, commands: list[str], keep: bool, refresh: bool, shell: bool, reuse: str = "") -> int:
    if os.geteuid() != 0:
        raise SystemExit("debian-check: must run as root (debootstrap, mounts, pivot_root)")
    ensure_host_tools()
    host = {}
    with open("/etc/os-release") as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            host[k] = v.strip('"')
    archive, security = debian_mirrors(machine_sources(), host.get("VERSION_CODENAME", ""))
    arch = DEB_ARCH.get(platform.machine(), platform.machine())
    log(f"{suite} on {platform.release()}: mirror {archive}, security {security}")
    cache = cache_dir()
    for sub in ("apt-archives", "pip", "kernel-btf"):
        (cache / sub / suite if sub == "kernel-btf" else cache / sub).mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    if reuse:  # a root kept by an earlier run: no extraction, the clone is updated to HEAD
        root, keep, tarball = os.path.realpath(reuse), True, None
        if not os.path.isfile(os.path.join(root, "root", "pybpf-check.sh")):
            raise SystemExit(f"debian-check: {root} is not a root kept by an earlier run (--keep)")
    else:
        tarball = base_tarball(suite, arch, archive, refresh)
        root = tempfile.mkdtemp(prefix=f"pybpf-debian-check-{suite}-", dir="/var/tmp")
        os.chmod(root, 0o755)
    t_base = time.monotonic() - t_start
    group = ProcessGroup(root)
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    status = 1
    proc: subprocess.Popen[bytes] | None = None
    try:
        if tarball is not None:
            prepare_root(root, tarball, suite, archive, security, cache)
        commit = repo_bundle(os.path.join(root, "root", "pybpf.bundle"))
        Path(root, "root", "pybpf-check.sh").write_text(INNER)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "TERM": os.environ.get("TERM", "dumb"), "LANG": "C.UTF-8", "PYBPF_REQUIRE_KERNEL": "1",
               "PYBPF_KERNEL_BTF_DIR": "/var/cache/pybpf-kernel-btf"}
        env.update({k: os.environ[k] for k in PROXY_VARS if k in os.environ})
        inner = ["/usr/bin/env", "-i", *[f"{k}={v}" for k, v in env.items()]]
        inner += ["/bin/bash", "-l"] if shell else ["/bin/bash", "/root/pybpf-check.sh", *commands]
        # the kernel-BTF corpus is the release's: CACHE/kernel-btf/SUITE
        argv = ["unshare", "--mount", "--propagation", "private", "/bin/bash", "-c", MOUNTS, "debian-check",
                root, str(cache / "pip"), str(cache / "kernel-btf" / suite), *inner]
        log(f"root {root}; commit {commit[:12]}; running: {' ; '.join(commands) if not shell else 'a shell'}")
        t_run = time.monotonic()
        proc = subprocess.Popen(argv, preexec_fn=group.enter)
        status = proc.wait()
        proc = None
        log(f"{suite}: exit {status}; base root {t_base:.0f} s (cached: {t_base < 5}), "
            f"run {time.monotonic() - t_run:.0f} s, total {time.monotonic() - t_start:.0f} s")
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({type(exc).__name__} {exc}): cleaning up")
        status = 130
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        group.kill_all()
        if proc is not None:
            proc.wait()
        save_debs(root, cache)
        left = _mounts_under(root)
        if left:  # never expected: the mounts live in the run's own namespace
            log(f"mounts left under {root}: {left}; unmounting")
            subprocess.run(["umount", "-R", "-l", root], check=False)
        if keep:
            log(f"kept {root}")
        else:
            _remove_tree(root)
            log(f"removed {root}" if not os.path.exists(root) else f"could not remove {root}")
    return status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="trixie", help="the Debian release to check (default: trixie)")
    ap.add_argument("--commands", nargs="+", default=["make demo", "make test"],
                    help="run in the clone, in order (default: the README's two)")
    ap.add_argument("--keep", action="store_true", help="keep the root afterwards (its path is printed)")
    ap.add_argument("--refresh", action="store_true", help="debootstrap again even if the cached root is fresh")
    ap.add_argument("--shell", action="store_true", help="an interactive shell in the prepared root instead")
    ap.add_argument("--root", default="", help="run again in a root an earlier run kept (--keep), on the new HEAD")
    ap.add_argument("--print-mirrors", action="store_true", help="print the mirrors read from apt's sources")
    args = ap.parse_args()
    if args.print_mirrors:
        with open("/etc/os-release") as f:
            codename = next((line.strip().split("=", 1)[1].strip('"') for line in f
                             if line.startswith("VERSION_CODENAME=")), "")
        print(*debian_mirrors(machine_sources(), codename))
        return 0
    return check(args.suite, args.commands, args.keep, args.refresh, args.shell, args.root)


if __name__ == "__main__":
    sys.exit(main())
