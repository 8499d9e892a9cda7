"""Import cycles in pybpf: the strongly connected components (of more than one module) of
the module import graph, as grimp builds it from the source (function-level and TYPE_CHECKING
imports included; ``--no-tc`` leaves TYPE_CHECKING imports out).

    PYTHONPATH=src python tools/import_cycles.py
"""
import sys
import grimp
g = grimp.build_graph("pybpf", exclude_type_checking_imports=("--no-tc" in sys.argv))
mods = sorted(m for m in g.modules if m.startswith("pybpf"))
edges = {m: {i for i in g.find_modules_directly_imported_by(m) if i.startswith("pybpf")} for m in mods}
# ignore package -> its own submodule re-exports? keep all edges
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for m in mods:
    if m not in index: strong(m)
print(len(sccs), "cycles (SCCs with >1 module)")
for c in sccs: print("  ", len(c), c)
