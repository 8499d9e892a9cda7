# pybpf: the two commands of the README.
#   make demo   set everything up, then run the live demo (pybpf demo)
#   make test   set everything up, then run the whole test suite
# Both are idempotent; `make setup` alone does the set-up.

PYTHON ?= python3
APT_PACKAGES := clang llvm libbpf-dev libbpf1 bpftool cmake iproute2 util-linux
DEMO_SECONDS ?= 5

.PHONY: setup apt python bpf demo test bench clean vmlinux

setup: apt python bpf

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

python:
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'

bpf:
	cmake -S . -B build >/dev/null
	cmake --build build

demo: setup
	pybpf demo --duration $(DEMO_SECONDS)

test: setup
	$(PYTHON) -m pytest -q tests

bench: setup
	pybpf bench --quick

# Regenerate the committed CO-RE header from this machine's kernel BTF.
vmlinux:
	$(PYTHON) -m pybpf.cheader --kernel > vmlinux/vmlinux.h

clean:
	rm -rf build src/pybpf/bpf/*.bpf.o
