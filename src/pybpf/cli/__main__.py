"""``python -m pybpf.cli``: the same as the ``pybpf`` command."""

from pybpf.cli import main

main()
