"""Builds the bundled BPF objects with CMake when a wheel or sdist install
is made, so an installed pybpf carries its compiled .bpf.o files."""

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()


class BuildPyWithBpf(build_py):
    def run(self) -> None:
        if shutil.which("cmake") and (ROOT / "CMakeLists.txt").exists():
            build_dir = ROOT / "build"
            subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir)], check=True)
            subprocess.run(["cmake", "--build", str(build_dir)], check=True)
        super().run()


setup(cmdclass={"build_py": BuildPyWithBpf})
