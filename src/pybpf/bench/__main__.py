"""``python -m pybpf.bench [--quick] [--json FILE] [--plot FILE]`` (same as ``pybpf bench``)."""

import typer

from pybpf.bench import bench_command

if __name__ == "__main__":
    typer.run(bench_command)
