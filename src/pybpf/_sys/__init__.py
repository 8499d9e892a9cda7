"""The only C boundary of pybpf: cffi declarations, the libbpf/libc binding, errno -> typed
error, and the fd owner. Nothing outside this package calls into C directly."""
