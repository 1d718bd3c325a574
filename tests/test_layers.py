"""The package's layers (the table in ``scfmbench/__init__.py``'s docstring) hold in its source.

The import graph is built from the source with :mod:`ast` (nothing is imported): every import of a
``scfmbench`` module, at module level or inside a function (a lazy import is still a dependency),
is an edge. Three rules: no circle, no import up the layer table (but :data:`UPWARD_ALLOWED`), no
private name (``_x``) imported from another package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: (importer, imported) -> why this import may look up the layer table. At most two.
UPWARD_ALLOWED: dict[tuple[str, str], str] = {}


def modules(src: Path, package: str = "scfmbench") -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``src/package``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods) -> str | None:
    """The module a dotted name lives in: itself, else its longest prefix that is a module."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(src: Path, package: str = "scfmbench") -> list[tuple[str, str, str | None, int]]:
    """Every ``(importer, imported module, imported name or None, line)`` of the package."""
    mods = modules(src, package)
    out = []
    for mod, path in mods.items():
        here = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        out.append((mod, _resolve(alias.name, mods), None, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                if name.split(".")[0] != package:
                    continue
                for alias in node.names:
                    sub = f"{name}.{alias.name}"
                    if sub in mods:  # ``from package import submodule``
                        out.append((mod, sub, None, node.lineno))
                    else:
                        out.append((mod, _resolve(name, mods), alias.name, node.lineno))
    return [e for e in out if e[1] is not None and e[1] != e[0]]


def layer_table(src: Path, package: str = "scfmbench") -> list[tuple[str, list[str]]]:
    """The docstring's table: ``[(layer, [module prefixes])]``, lowest layer first."""
    doc = ast.get_docstring(ast.parse((src / package / "__init__.py").read_text())) or ""
    rulers = [i for i, line in enumerate(doc.splitlines()) if re.fullmatch(r"=+ +=+", line.strip())]
    if len(rulers) < 3:
        raise AssertionError(f"{package}/__init__.py: its docstring has no layer table (three '===  ===' rulers)")
    rows = doc.splitlines()[rulers[1] + 1 : rulers[2]]
    table = []
    for row in rows:
        layer, _, names = row.strip().partition(" ")
        table.append(
            (layer, [n if n == package else f"{package}.{n}" for n in (x.strip() for x in names.split(",")) if n])
        )
    return table


def layer_of(mod: str, table) -> int:
    """Index of the layer whose longest matching name covers ``mod``."""
    best = None
    for i, (_, names) in enumerate(table):
        for name in names:
            if (mod == name or mod.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (i, name)
    if best is None:
        raise AssertionError(f"{mod}: in no layer of the table in scfmbench/__init__.py; add it there")
    return best[0]


def cycles(edges) -> list[list[str]]:
    """The import circles: strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_of(mod: str) -> str:
    return ".".join(mod.split(".")[:2])


def violations(src: Path, allowed=UPWARD_ALLOWED, package: str = "scfmbench") -> dict[str, list[str]]:
    found = imports(src, package)
    table = layer_table(src, package)
    names = [layer for layer, _ in table]
    upward = sorted(
        {
            f"{a} ({names[layer_of(a, table)]}) imports {b} ({names[layer_of(b, table)]}), line {line}"
            for a, b, _, line in found
            if layer_of(b, table) > layer_of(a, table) and (a, b) not in allowed
        }
    )
    private = sorted(
        {
            f"{a} imports {name} from {b}, line {line}"
            for a, b, name, line in found
            if name and name.startswith("_") and not name.startswith("__") and package_of(a) != package_of(b)
        }
    )
    return {
        "cycles": [" <-> ".join(c) for c in cycles({(a, b) for a, b, _, _ in found})],
        "upward": upward,
        "private": private,
    }


def test_every_module_is_in_a_layer_and_the_table_is_ordered():
    table = layer_table(SRC)
    assert [layer for layer, _ in table] == [
        "base",
        "data",
        "graphs",
        "models",
        "training",
        "config",
        "tasks",
        "report",
        "tools",
    ]
    for mod in modules(SRC):
        layer_of(mod, table)  # raises for a module in no layer


def test_no_import_circle():
    found = violations(SRC)["cycles"]
    assert not found, "import circles:\n" + "\n".join(found)


def test_imports_only_look_down():
    assert len(UPWARD_ALLOWED) <= 2, "at most two upward imports, each with its reason"
    found = violations(SRC)["upward"]
    assert not found, "imports up the layer table (scfmbench/__init__.py):\n" + "\n".join(found)


def test_no_private_name_crosses_a_package():
    found = violations(SRC)["private"]
    assert not found, "private names from another package (make them public or move them down):\n" + "\n".join(found)


def test_configuration_imports_no_task():
    table = layer_table(SRC)
    tasks = [i for i, (layer, _) in enumerate(table) if layer == "tasks"][0]
    assert not [b for a, b, _, _ in imports(SRC) if a == "scfmbench.config" and layer_of(b, table) >= tasks]


@pytest.fixture
def toy(tmp_path):
    """A three-layer package whose modules break each rule."""
    pkg = tmp_path / "toy"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "__init__.py").write_text(
        '"""Toy.\n\n=====  =====\nlayer  modules\n=====  =====\nbase   toy\nlow    '
        'low\nhigh   high\n=====  =====\n"""\n'
    )
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "high" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("def f():\n    from toy.high.b import g  # lazy, still upward\n")
    (pkg / "high" / "b.py").write_text("from toy.low.a import f\nfrom toy.low.c import _hidden\n")
    (pkg / "low" / "c.py").write_text("from . import d\n_hidden = 1\n")
    (pkg / "low" / "d.py").write_text("from .c import _hidden\n")  # same package: a private name may pass
    (pkg / "low" / "e.py").write_text("from ..high import b\n")  # relative, two levels up
    return tmp_path


def test_the_checks_catch_each_kind_of_violation(toy):
    """The checker itself: a lazy upward import, a relative one, the circles (also through relative
    imports) and a private name taken from another package are each reported; a private name
    inside one package is not."""
    got = violations(toy, allowed={}, package="toy")
    assert got["upward"] == [
        "toy.low.a (low) imports toy.high.b (high), line 2",
        "toy.low.e (low) imports toy.high.b (high), line 1",
    ]
    assert sorted(got["cycles"]) == ["toy.high.b <-> toy.low.a", "toy.low.c <-> toy.low.d"]
    assert got["private"] == ["toy.high.b imports _hidden from toy.low.c, line 2"]
    assert violations(toy, allowed={("toy.low.a", "toy.high.b"): "why"}, package="toy")["upward"] == [
        "toy.low.e (low) imports toy.high.b (high), line 1"
    ]
