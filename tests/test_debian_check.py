"""tools/debian_check.py (``make test-debian13``): reading the machine's apt sources, pure parts.

The check itself runs the README's two commands in a debootstrapped Debian 13 root (CI runs
it after the host suite); here, the part that decides where it downloads from: the machine's
own Debian mirror, read from one-line ``.list`` files and deb822 ``.sources`` files, and the
sources written into the root. The machine's real sources are read too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT


@pytest.fixture(scope="module")
def dc() -> Any:
    spec = importlib.util.spec_from_file_location("debian_check", ROOT / "tools" / "debian_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["debian_check"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_one_line_sources(dc) -> None:
    text = ("# deb http://commented.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n"
            "deb-src http://mirror.example/debian bookworm main\n"
            "deb http://security.example/debian-security bookworm-security main  # trailing\n")
    got = [(s.uri, s.suites, s.components) for s in dc.parse_list(text)]
    assert got == [("http://mirror.example/debian/", ["bookworm"], ["main", "contrib"]),
                   ("http://security.example/debian-security", ["bookworm-security"], ["main"])]


def test_deb822_sources(dc) -> None:
    text = ("Types: deb deb-src\nURIs: http://a.example/debian\n  http://b.example/debian\n"
            "Suites: trixie trixie-updates\nComponents: main\n\n"
            "# a comment stanza line\nTypes: deb\nURIs: http://off.example/debian\nSuites: trixie\n"
            "Enabled: no\n\n"
            "Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n"
            "Types: deb\nURIs: http://sec.example/debian-security\nSuites: trixie-security\nComponents: main\n")
    got = [(s.uri, s.suites) for s in dc.parse_deb822(text)]
    assert got == [("http://a.example/debian", ["trixie", "trixie-updates"]),
                   ("http://b.example/debian", ["trixie", "trixie-updates"]),
                   ("http://sec.example/debian-security", ["trixie-security"])]


def test_mirrors_by_suite(dc) -> None:
    S = dc.Source
    sources = [S("https://packages.vendor.example/apt", ["cloud-sdk-bookworm"]),
               S("http://sec.example/debian-security/", ["bookworm-security"]),
               S("http://mirror.example/debian/", ["bookworm", "bookworm-updates"])]
    assert dc.debian_mirrors(sources, "bookworm") == ("http://mirror.example/debian",
                                                      "http://sec.example/debian-security")
    # another codename on the machine: a URI ending in /debian is taken; nothing: deb.debian.org
    assert dc.debian_mirrors(sources, "sid")[0] == "http://mirror.example/debian"
    assert dc.debian_mirrors([], "bookworm") == (dc.DEFAULT_MIRROR, dc.DEFAULT_SECURITY)


def test_sources_written_into_the_root(dc) -> None:
    text = dc.sources_file("trixie", "http://mirror.example/debian", "http://sec.example/debian-security")
    parsed = [(s.uri, s.suites, s.components) for s in dc.parse_deb822(text)]
    assert parsed == [("http://mirror.example/debian", ["trixie", "trixie-updates"], ["main"]),
                      ("http://sec.example/debian-security", ["trixie-security"], ["main"])]
    assert text.count(f"Signed-By: {dc.KEYRING}") == 2


def test_this_machines_sources(dc) -> None:
    """The machine's own apt configuration parses, and names a Debian archive for its release."""
    if not Path("/etc/apt").is_dir():
        pytest.skip("no apt here")
    from pybpf.distro import os_release

    sources = dc.machine_sources()
    archive, security = dc.debian_mirrors(sources, os_release().get("VERSION_CODENAME", ""))
    assert archive.startswith(("http://", "https://", "file:/")) and security.startswith(("http://", "https://", "file:/"))
    if sources:
        assert archive in {s.uri.rstrip("/") for s in sources} | {dc.DEFAULT_MIRROR}
