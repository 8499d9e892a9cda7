"""Kernel -> user events: ring buffers (with a numpy reader), perf buffers, user ring buffers."""
