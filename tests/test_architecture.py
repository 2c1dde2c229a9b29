"""The package's structure, read from its source with ``ast``: no import cycles (imports inside functions included),
no private names imported across modules, one-line module docstrings, command-line modules that share only
``cli/common.py``, and an ``io`` layer that knows nothing of models or layouts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vggnets"


def module_name(path: Path) -> str:
    parts = ["vggnets", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped |= {id(n) for n in ast.walk(child)}
    return skipped


def imports(name: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every vggnets import of a module, at any depth."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    skipped = type_checking_nodes(tree)
    package = name if is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "vggnets"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "vggnets":
                continue
            found += [(source, a.name, node.lineno) for a in node.names]
    return found


def reexports(package: str) -> dict[str, str]:
    """Name -> defining module for the names a package's ``__init__`` imports from its modules."""
    return {
        imported: source if source in MODULES else package
        for source, imported, _ in imports(package)
        if imported is not None
    }


def edges(name: str) -> dict[str, int]:
    """Modules this module depends on (re-exports through package __init__ files resolved), with a line each."""
    out: dict[str, int] = {}
    for source, imported, line in imports(name):
        target = source
        if imported is not None and f"{source}.{imported}" in MODULES:
            target = f"{source}.{imported}"  # `from pkg import module`
        elif imported is not None and source in MODULES and is_package(source):
            target = reexports(source).get(imported, source)
        if target in MODULES and target != name:
            out.setdefault(target, line)
    return out


def graph() -> dict[str, dict[str, int]]:
    """The dependency graph; package __init__ files (re-exports only) have no edges of their own."""
    return {name: ({} if is_package(name) else edges(name)) for name in MODULES}


def find_cycle(deps: dict[str, dict[str, int]]) -> list[str] | None:
    """A cycle of the graph as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in deps.get(node, {}):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in deps:
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle():
    deps = graph()
    cycle = find_cycle(deps)
    assert cycle is None, (
        "import cycle: "
        + " -> ".join(f"{a} (line {deps[a][b]})" for a, b in zip(cycle, cycle[1:]))
        + f" -> {cycle[-1]}"
    )


def test_cycle_finder_finds_a_planted_cycle():
    planted = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 1}}
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_function_level_imports_are_counted():
    deps = graph()
    # bench.runner imports the engine only inside functions (it must stay importable without torchao)
    assert "vggnets.inference.engine" in deps["vggnets.bench.runner"]


def test_no_private_names_imported_across_modules():
    offenders = []
    for name in MODULES:
        for source, imported, line in imports(name):
            if imported and imported.startswith("_") and not imported.startswith("__") and source != name:
                offenders.append(f"{MODULES[name].relative_to(PACKAGE)}:{line} imports {source}.{imported}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_says_its_job_in_one_line(name):
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8")))
    assert doc, f"{name} has no docstring"
    assert doc.splitlines()[0].endswith((".", ":")), f"{name}: the docstring's first line is not a sentence"


def test_io_knows_nothing_of_models_or_layouts():
    deps = graph()
    for name in MODULES:
        if name.startswith("vggnets.io."):
            bad = [d for d in deps[name] if not d.startswith(("vggnets.io.", "vggnets.errors"))]
            assert not bad, f"{name} imports {bad}"


def test_core_does_no_io():
    deps = graph()
    for name in MODULES:
        if name.startswith("vggnets.core."):
            bad = [d for d in deps[name] if not d.startswith(("vggnets.core.", "vggnets.errors"))]
            assert not bad, f"{name} imports {bad}"


def test_cli_modules_share_only_common():
    deps = graph()
    for name in MODULES:
        if name.startswith("vggnets.cli.") and name != "vggnets.cli.common":
            other = [d for d in deps[name] if d.startswith("vggnets.cli") and d != "vggnets.cli.common"]
            assert not other, f"{name} imports {other}"
