"""The package's shape: one job per module, no import cycles, scripts that stand on the package alone."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO

PACKAGE = REPO / "edvr_vs"


def imports_of(path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    parts = path.relative_to(REPO).with_suffix("").parts
    base = list(parts[:-1]) if path.stem != "__init__" else list(parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join(base[:len(base) - node.level + 1] + ([mod] if mod else []))
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def package_graph() -> dict[str, set[str]]:
    modules = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if p.stem == "__init__" else parts)] = p
    return {m: {d for d in imports_of(p) if d in modules and d != m and d != "edvr_vs" and not m.startswith(d + ".")}
            for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(u: str, path: list[str]) -> list[str] | None:
        state[u] = 1
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return path[path.index(v):] + [v]
            if not state.get(v) and (c := visit(v, path + [v])):
                return c
        state[u] = 2
        return None

    for u in sorted(graph):
        if not state.get(u) and (c := visit(u, [u])):
            return c
    return None


def test_no_import_cycle_in_the_package():
    graph = package_graph()
    assert "edvr_vs.cli" in graph and "edvr_vs.train.loop" in graph["edvr_vs.cli"]  # the graph is really read
    assert find_cycle(graph) is None, find_cycle(graph)
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # and a cycle would be found


def test_scale_out_never_reaches_into_the_engine():
    graph = package_graph()
    inner = {"edvr_vs.engine", "edvr_vs.filter", "edvr_vs.frame_cache", "edvr_vs.frame_io", "edvr_vs.graphs"}
    cluster = {m: deps for m, deps in graph.items() if m.startswith("edvr_vs.cluster")}
    assert "edvr_vs.cluster.driver" in cluster
    assert {m: deps & inner for m, deps in cluster.items() if deps & inner} == {}


def test_modules_stay_small():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 350} == {}


def test_package_and_scripts_do_not_lean_on_tests_or_sys_path():
    for p in [*PACKAGE.rglob("*.py"), *(REPO / "scripts").glob("*.py")]:
        assert not any(m == "tests" or m.startswith("tests.") for m in imports_of(p)), p
        assert not re.search(r"sys\.path\.(insert|append)|sys\.path\s*\+?=", p.read_text()), p


def test_readme_map_names_every_module():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The package", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", section, re.M))
    present = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert listed == present
