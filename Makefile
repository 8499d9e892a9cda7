# pybpf: the two commands of the README.
#   make demo   set everything up, then run the live demo (pybpf demo)
#   make test   set everything up, then run the whole test suite
# Both are idempotent; `make setup` alone does the set-up.
#
# The set-up installs the apt packages below (apt-get update only when one is missing), makes a
# project virtual environment in .venv/ (python3 -m venv: PEP 668 forbids pip in Debian's own
# Python), installs pybpf into it editable with the test extra, and builds the BPF objects.
# Every target then runs that environment's tools (.venv/bin/python, .venv/bin/pybpf), whatever
# python3 comes first on PATH.
#
# The venv is made from Debian's /usr/bin/python3 when it exists: that CPython carries the USDT
# probes (provider "python") that tests and tools attach to, and it is the interpreter a Debian
# user has. Elsewhere, or with `make PYTHON=/path/to/python3`, another python3 is used.

# Shared by every part of the project: append what you need (one list, space-separated).
APT_PACKAGES := clang llvm libbpf-dev libbpf1 bpftool cmake make iproute2 util-linux \
                python3 python3-venv \
                gcc python3.11 systemtap-sdt-dev \
                clang-19 \
                prometheus libbpf-tools

PYTHON ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
VENV := $(CURDIR)/.venv
VENV_PYTHON := $(VENV)/bin/python
VENV_PYBPF := $(VENV)/bin/pybpf
# Tests also run `pybpf` as a command: the venv's, first on PATH.
VENV_RUN := env PATH="$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(VENV)"
STAMP := $(VENV)/.pybpf-installed
DEMO_SECONDS ?= 5

.PHONY: setup apt venv python bpf ext demo test bench clean distclean vmlinux

setup: apt venv bpf ext

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# (Re)make .venv when it is missing or broken (e.g. made before python3-venv was installed),
# then install pybpf editable with the test extra whenever pyproject.toml or setup.py changed.
venv: apt
	@if ! "$(VENV_PYTHON)" -m pip --version >/dev/null 2>&1; then \
	  echo "venv: $(VENV) from $$(command -v $(PYTHON)) ($$($(PYTHON) --version 2>&1))"; \
	  rm -rf "$(VENV)" && $(PYTHON) -m venv "$(VENV)" || exit 1; \
	fi
	@if [ ! -f "$(STAMP)" ] || [ pyproject.toml -nt "$(STAMP)" ] || [ setup.py -nt "$(STAMP)" ]; then \
	  echo "venv: pip install -e '.[test]'"; \
	  "$(VENV_PYTHON)" -m pip install -q --disable-pip-version-check -e '.[test]' && touch "$(STAMP)"; \
	fi

python: venv

bpf:
	cmake -S . -B build >/dev/null
	cmake --build build

# The compiled cffi helpers (pybpf._sys._fast) in the source tree; optional: pybpf runs without them.
ext: venv
	"$(VENV_PYTHON)" src/pybpf/_sys/_build_fast.py

demo: setup
	$(VENV_RUN) "$(VENV_PYBPF)" demo --duration $(DEMO_SECONDS)

# pytest's exit code 5 means it collected no test: a broken collection here, so it fails loudly.
test: setup
	@$(VENV_RUN) "$(VENV_PYTHON)" -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing" >&2; fi; \
	exit $$rc

bench: setup
	$(VENV_RUN) "$(VENV_PYBPF)" bench --quick

# Regenerate the committed CO-RE header from this machine's kernel BTF.
vmlinux: venv
	"$(VENV_PYTHON)" -m pybpf.cheader --kernel > vmlinux/vmlinux.h.tmp && mv vmlinux/vmlinux.h.tmp vmlinux/vmlinux.h

clean:
	rm -rf build src/pybpf/bpf/*.bpf.o

distclean: clean
	rm -rf "$(VENV)" dist src/*.egg-info
