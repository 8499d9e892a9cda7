"""Builds the bundled BPF objects and stages the BPF include set with CMake
whenever the package is built (wheel, sdist install or editable install), so
an installed pybpf carries its compiled ``.bpf.o`` files and the headers that
``pybpf.include_dir()`` names.

A wheel build writes nothing into the source tree's package: CMake builds in
setuptools' temporary directory and places its outputs in the wheel's staging
directory (``build/lib*``). Only an editable install (``make setup``) builds
into ``src/pybpf/bpf`` and ``src/pybpf/include``, where the source tree's
package finds them. A missing cmake, clang, llvm-strip or libbpf-dev fails the
build with a message saying which: a wheel without its objects is never made.

The compiled binding ``pybpf._sys._fast`` (src/pybpf/_sys/_build_fast.py) and the per-key
type ``pybpf._sys._keyops`` (src/pybpf/_sys/_keyops.c) are *optional* extensions: without
a C compiler or libbpf's headers the build warns and the
package falls back to its ABI-mode cffi paths (same results, slower per call).
"""

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()


class BpfBuildError(SystemExit):
    pass


def _cmake_build(build_dir: Path, bpf_out: Path, include_out: Path) -> None:
    if not (ROOT / "CMakeLists.txt").exists():  # an sdist without it cannot build the objects
        raise BpfBuildError("pybpf: CMakeLists.txt is missing: cannot build the bundled BPF objects")
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BpfBuildError("pybpf: building the package needs cmake, clang, llvm-strip and libbpf's "
                            "headers to compile the bundled BPF objects; cmake is not on PATH "
                            "(Debian: apt-get install cmake clang llvm libbpf-dev)")
    configure = [cmake, "-S", str(ROOT), "-B", str(build_dir),
                 f"-DPYBPF_BPF_OUT={bpf_out}", f"-DPYBPF_INCLUDE_OUT={include_out}"]
    for step in (configure, [cmake, "--build", str(build_dir)]):
        if subprocess.run(step).returncode != 0:
            raise BpfBuildError(f"pybpf: building the bundled BPF objects failed: {' '.join(step)} "
                                "(see CMake's message above)")
    if not list(bpf_out.glob("*.bpf.o")):
        raise BpfBuildError(f"pybpf: CMake built no .bpf.o into {bpf_out}")


class BuildPyWithBpf(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            # the package is the source tree: build where src/pybpf finds the outputs
            _cmake_build(ROOT / "build", ROOT / "src" / "pybpf" / "bpf", ROOT / "src" / "pybpf" / "include")
        else:
            build_temp = Path(self.get_finalized_command("build").build_temp).resolve()
            package = Path(self.build_lib).resolve() / "pybpf"
            _cmake_build(build_temp / "cmake", package / "bpf", package / "include")


def _scratch_dir() -> str:
    """A fresh directory for this build's intermediate files, removed when the build ends: no
    build/ or egg-info left in the source tree, and no stale build/lib leaking into a wheel."""
    path = tempfile.mkdtemp(prefix="pybpf-build-")
    atexit.register(shutil.rmtree, path, True)
    return path


class OptionalBuildExt(build_ext):
    """The compiled helpers are optional: a failed compile (no C compiler, no libbpf headers) is a
    warning, and pybpf uses its ABI-mode cffi paths instead."""

    def finalize_options(self) -> None:
        super().finalize_options()
        for ext in self.extensions:
            ext.optional = True


_SCRATCH = _scratch_dir()
setup(
    cmdclass={"build_py": BuildPyWithBpf, "build_ext": OptionalBuildExt},
    # cffi generates the C source of pybpf._sys._fast into build_ext's temporary directory
    cffi_modules=["src/pybpf/_sys/_build_fast.py:ffibuilder"],
    # per-key map access as a CPython type (optional too, like every extension here)
    ext_modules=[Extension("pybpf._sys._keyops", ["src/pybpf/_sys/_keyops.c"], libraries=["bpf"],
                           extra_compile_args=["-O2"])],
    options={"build": {"build_base": str(Path(_SCRATCH) / "build")},
             "egg_info": {"egg_base": _SCRATCH}},
)
