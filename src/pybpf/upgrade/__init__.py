"""Upgrading a running tool without losing an event or a counter.

``pybpf.deploy(obj)`` attaches a version so that it can be replaced;
``pybpf.upgrade(old, new)`` replaces it: the new version is loaded and
verified while the old one runs, maps are reused or migrated by BTF member
name, and every attachment is switched atomically (BPF_LINK_UPDATE, or one
slot update of a tail-call dispatcher for hooks whose links cannot be
updated). Owns: ``attachments`` (the two ways to switch), ``migrate`` (map
state across versions), ``core`` (Deployment, deploy, pins and manifest, the
upgrade itself).

``pybpf.upgrade`` is this package, and calling it calls ``upgrade()``:
``pybpf.upgrade(old, new)`` and ``pybpf.upgrade.Deployment`` both work,
whatever was imported first.
"""

import sys
import types
from typing import Any

from pybpf.upgrade.core import Deployment, UpgradeReport, deploy, upgrade

__all__ = ["Deployment", "UpgradeReport", "deploy", "upgrade"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Deployment:
        return upgrade(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
_package = sys.modules[__name__]  # what ``pybpf.upgrade`` resolves to, whatever was imported first
