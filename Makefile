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
# Prerequisites on a bare Debian: `apt-get install make` (git to clone); the rest is installed here.

# The Debian release (/etc/os-release): it picks the per-release apt list below.
OS_CODENAME := $(shell . /etc/os-release 2>/dev/null; echo "$${VERSION_CODENAME:-unknown}")

# apt packages, shared by every part of the project: append what you need (space-separated).
#   APT_COMMON     names that are the same on every supported release
#   APT_bookworm   Debian 12 only (names that differ, or that 13 installs through another package)
#   APT_trixie     Debian 13 only
# A name apt does not know on this release is reported and skipped, not a failed transaction.
APT_COMMON := clang llvm libbpf-dev libbpf1 bpftool cmake make iproute2 util-linux \
              python3 python3-venv python3-dev \
              gcc systemtap-sdt-dev \
              prometheus libbpf-tools \
              chromium binutils
# Debian 12: clang 14 by default; clang-19 for bpf_core_type_matches() (tests/test_core.py)
APT_bookworm := clang-19
# Debian 13: clang is 19; libbpf-tools are named NAME-libbpf (pybpf.toolchain finds both)
APT_trixie :=
APT_PACKAGES := $(APT_COMMON) $(APT_$(OS_CODENAME))
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3

# Debian's python3 under its real name (python3.11 on 12, python3.13 on 13: pybpf.distro, run by
# Debian's own python3 after apt installed it); any python3 on PATH elsewhere.
PYTHON ?= $(or $(shell [ -x /usr/bin/python3 ] && /usr/bin/python3 src/pybpf/distro.py python 2>/dev/null),python3)
VENV := $(CURDIR)/.venv
VENV_PYTHON := $(VENV)/bin/python
VENV_PYBPF := $(VENV)/bin/pybpf
# Tests also run `pybpf` as a command: the venv's, first on PATH.
VENV_RUN := env PATH="$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(VENV)"
STAMP := $(VENV)/.pybpf-installed
DEMO_SECONDS ?= 5

.PHONY: setup apt venv python bpf ext demo test test-debian13 bench clean distclean vmlinux

setup: apt venv bpf ext

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$p"; done; \
	[ -z "$$missing" ] && exit 0; \
	echo "apt ($(OS_CODENAME)): installing$$missing"; \
	$(APT_GET) update -qq || exit 1; \
	known=""; for p in $$missing; do \
	  if apt-cache show "$$p" >/dev/null 2>&1; then known="$$known $$p"; \
	  else echo "apt ($(OS_CODENAME)): no package '$$p' on this release: skipped" >&2; fi; done; \
	[ -z "$$known" ] || $(APT_GET) install -y -qq $$known >/dev/null

# (Re)make .venv when it is missing or broken (e.g. made before python3-venv was installed),
# then install pybpf editable with the test extra whenever pyproject.toml or setup.py changed.
# A venv of Python >= 3.12 carries no setuptools/wheel: cffi's compile of the extension needs them.
venv: apt
	@if ! "$(VENV_PYTHON)" -m pip --version >/dev/null 2>&1; then \
	  echo "venv: $(VENV) from $$(command -v $(PYTHON)) ($$($(PYTHON) --version 2>&1))"; \
	  rm -rf "$(VENV)" && $(PYTHON) -m venv "$(VENV)" || exit 1; \
	fi
	@if ! "$(VENV_PYTHON)" -c "import setuptools, wheel" >/dev/null 2>&1; then \
	  echo "venv: pip install setuptools wheel"; \
	  "$(VENV_PYTHON)" -m pip install -q --disable-pip-version-check setuptools wheel || exit 1; \
	fi
	@if [ ! -f "$(STAMP)" ] || [ pyproject.toml -nt "$(STAMP)" ] || [ setup.py -nt "$(STAMP)" ]; then \
	  echo "venv: pip install -e '.[test]'"; \
	  "$(VENV_PYTHON)" -m pip install -q --disable-pip-version-check -e '.[test]' && touch "$(STAMP)"; \
	fi

python: venv

bpf:
	cmake -S . -B build >/dev/null
	cmake --build build

# The compiled cffi helpers (pybpf._sys._fast) in the source tree. Optional: when they cannot be
# built, the set-up goes on and pybpf uses its ABI-mode binding (same results, slower per call);
# it says so in one line, with the compiler's last words (the whole log in .venv/pybpf-ext.log).
EXT_LOG := $(VENV)/pybpf-ext.log
ext: venv
	@if "$(VENV_PYTHON)" src/pybpf/_sys/_build_fast.py >"$(EXT_LOG)" 2>&1; then \
	  echo "ext: compiled extension pybpf._sys._fast built"; \
	else \
	  echo "ext: the compiled extension was not built ($$(grep -v '^\s*$$' "$(EXT_LOG)" | tail -n 1)); pybpf uses the ABI-mode binding (see $(EXT_LOG))"; \
	fi

demo: setup
	$(VENV_RUN) "$(VENV_PYBPF)" demo --duration $(DEMO_SECONDS)

# pytest's exit code 5 means it collected no test: a broken collection here, so it fails loudly.
test: setup
	@$(VENV_RUN) "$(VENV_PYTHON)" -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing" >&2; fi; \
	exit $$rc

# The README's two commands on Debian 13 (trixie), in a root made by debootstrap from this machine's
# Debian mirror (cached under ~/.cache/pybpf/debian-check/), on a fresh clone of the committed HEAD.
# Runs as root on the host's own python3 (stdlib only): see tools/debian_check.py.
test-debian13:
	@python3 tools/debian_check.py --suite trixie

bench: setup
	$(VENV_RUN) "$(VENV_PYBPF)" bench --quick

# Regenerate the committed CO-RE header from this machine's kernel BTF.
vmlinux: venv
	"$(VENV_PYTHON)" -m pybpf.cheader --kernel > vmlinux/vmlinux.h.tmp && mv vmlinux/vmlinux.h.tmp vmlinux/vmlinux.h

clean:
	rm -rf build src/pybpf/bpf/*.bpf.o

distclean: clean
	rm -rf "$(VENV)" dist src/*.egg-info
