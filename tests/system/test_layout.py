"""The house rules of the package's layout, read from the source (imports inside
functions count):

* no import cycle between files;
* the core (http, parsers, buffers, loops, server, registry) never imports the
  tools built on it (bench, stress, compliance, lab, grading, peers, cli);
* nothing calls another package's private helper (a `_name` imported from, or
  read off, a module of another package).
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kourier_lab"
CORE = ("http", "parsers", "buffers", "loops", "server", "registry")
TOOLS = ("bench", "stress", "compliance", "lab", "grading", "peers", "cli")


def _modules():
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("kourier_lab",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            mods[".".join(parts[:-1])] = (path, True)
        else:
            mods[".".join(parts)] = (path, False)
    return mods


MODULES = _modules()


def _absolute(module, is_pkg, node):
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module):
    """[(imported module, name or None, line)] of every import in the file, and
    the local aliases bound to whole modules."""
    path, is_pkg = MODULES[module]
    out, aliases = [], {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("kourier_lab"):
                    out.append((a.name, None, node.lineno))
                    if a.asname:
                        aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_pkg, node)
            if not base.startswith("kourier_lab"):
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                if full in MODULES:
                    out.append((full, None, node.lineno))
                    aliases[a.asname or a.name] = full
                else:
                    out.append((base, a.name, node.lineno))
    return out, aliases


def _package(module):
    path, is_pkg = MODULES[module]
    return module if is_pkg else module.rsplit(".", 1)[0]


def _edges():
    return {m: {t for t, _, _ in _imports(m)[0] if t in MODULES and t != m} for m in MODULES}


def test_no_import_cycle():
    edges = _edges()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):                    # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _top(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_core_never_imports_the_tools():
    bad = [f"{m} imports {t}" for m, ts in _edges().items() if _top(m) in CORE
           for t in ts if _top(t) in TOOLS]
    assert not bad, "\n".join(bad)


def test_no_private_helper_across_packages():
    bad = []
    for module in MODULES:
        here = _package(module)
        imports, aliases = _imports(module)
        for target, name, line in imports:
            if name and name.startswith("_") and not name.startswith("__") and _package(target) != here \
                    and target != here:
                bad.append(f"{module}:{line} imports {target}.{name}")
        tree = ast.parse(MODULES[module][0].read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__"):
                target = aliases[node.value.id]
                if _package(target) != here and target != here:
                    bad.append(f"{module}:{node.lineno} reads {target}.{node.attr}")
    assert not bad, "\n".join(bad)
