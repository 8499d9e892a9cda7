"""Upgrading a running tool without losing an event or a counter.

``pybpf.deploy(obj)`` attaches a version so that it can be replaced;
``pybpf.upgrade(old, new)`` replaces it: the new version is loaded and
verified while the old one runs, maps are reused or migrated by BTF member
name, and every attachment is switched atomically (BPF_LINK_UPDATE, or one
slot update of a tail-call dispatcher for hooks whose links cannot be
updated). Owns: ``attach`` (the kinds of attachment, one file each),
``migrate`` (map state across versions), ``merge`` (the exact merge of what
the old version wrote after the copy), ``manifest`` (a deployment directory:
manifest, pins, ownership, lock), ``core`` (Deployment, deploy, the upgrade
and its crash recovery).

``pybpf.upgrade`` is this package, and calling it calls ``upgrade()``:
``pybpf.upgrade(old, new)`` and ``pybpf.upgrade.Deployment`` both work,
whatever was imported first.
"""

import sys
import types
from typing import Any

from pybpf.upgrade.core import Deployment, UpgradeReport, deploy, plan, recover, upgrade

__all__ = ["Deployment", "UpgradeReport", "deploy", "plan", "recover", "upgrade"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Deployment:
        return upgrade(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
_package = sys.modules[__name__]  # what ``pybpf.upgrade`` resolves to, whatever was imported first
