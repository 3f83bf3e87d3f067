"""The import rules of docs/architecture.md, checked on the source: each package imports
only its own modules and the packages ranked below it, and no module-level import cycle
exists. Type-only imports (under ``if TYPE_CHECKING:``) are exempt: they run nowhere."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package -> rank. A module may import its own package and any package of a lower rank;
#: packages of the same rank know nothing of each other.
RANKS = {
    "vastnb_worker": 0,  # the GPU-worker tier: on the box, needs nothing of the notebook's
    "vastnb.errors": 1,  # the error tree (its root is the worker's VastError)
    "vastnb": 2,  # the root: __version__ and the error tree (the public names load lazily)
    "vastnb.base": 2,  # the shared contract: what the simulator may import
    "vastnb.profiles": 3,
    "vastnb.offload": 3,
    "vastnb.sim": 3,  # the simulated market: base, errors and the worker only
    "vastnb.market": 4,
    "vastnb.storage": 4,  # grants travel over an offload session
    "vastnb.backends": 5,
    "vastnb.lifecycle": 6,
    "vastnb.jobs": 7,  # the job queue, its controller, recovery
    "vastnb.costs": 8,  # budgets: before a launch or a job, and over what runs (jobs included)
    "vastnb.front.widgets": 9,  # live views: the client's dashboard() makes one (boxes, jobs, costs)
    "vastnb.client": 10,
    "vastnb.front": 11,  # the magics and the command line: the client and its widgets
    "vastnb.__main__": 12,
}


def package_of(module: str) -> str:
    """The entry of RANKS a module belongs to (its longest matching prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in RANKS:
            return candidate
    raise AssertionError(f"{module} is in no package of the layering: add it to RANKS and docs/architecture.md")


def modules() -> Iterator[tuple[str, Path]]:
    for base, folder in (("vastnb", ROOT / "vastnb"), ("vastnb_worker", ROOT / "worker" / "vastnb_worker")):
        for path in sorted(folder.rglob("*.py")):
            parts = [base, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def imports(module: str, path: Path, *, top_level_only: bool = False) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import of vastnb or vastnb_worker in ``path``,
    resolved to absolute names, in functions too unless ``top_level_only``; imports under
    ``if TYPE_CHECKING:`` are skipped."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child, nested)
            return
        if isinstance(node, ast.Import) and not (nested and top_level_only):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not (nested and top_level_only):
            if node.level:
                parts = package.split(".")
                target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from vastnb.x import y` may import the module vastnb.x.y
                sub = f"{target}.{alias.name}"
                found.append((sub if _is_module(sub) else target, node.lineno))
        inner = nested or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return ((name, line) for name, line in found if name.split(".")[0] in ("vastnb", "vastnb_worker"))


def _is_module(name: str) -> bool:
    parts = name.split(".")
    folder = ROOT / "worker" if parts[0] == "vastnb_worker" else ROOT
    path = folder.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


ALL = list(modules())


def test_every_module_belongs_to_a_ranked_package() -> None:
    for module, _ in ALL:
        package_of(module)


@pytest.mark.parametrize("module,path", ALL, ids=[m for m, _ in ALL])
def test_imports_go_down_the_layers_only(module: str, path: Path) -> None:
    own = package_of(module)
    wrong = []
    # The root is the public facade: what it loads on first use (PEP 562, functions) may
    # be anything; what it imports itself must stay at its rank.
    for target, line in imports(module, path, top_level_only=module == "vastnb"):
        other = package_of(target)
        if other != own and RANKS[other] >= RANKS[own]:
            wrong.append(
                f"{path.relative_to(ROOT)}:{line}: {own} (rank {RANKS[own]}) imports {target} ({other}, rank {RANKS[other]})"
            )
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(wrong)


def test_no_module_level_import_cycle() -> None:
    graph = {m: {t for t, _ in imports(m, p, top_level_only=True) if t != m} for m, p in ALL}
    graph = {m: {t for t in targets if t in graph} for m, targets in graph.items()}
    done: set[str] = set()
    path: list[str] = []

    def walk(node: str) -> None:
        if node in path:
            cycle = path[path.index(node) :] + [node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            if not (node.startswith(nxt + ".") or nxt == "vastnb"):  # a package's own __init__ runs first anyway
                walk(nxt)
        path.pop()
        done.add(node)

    for module in sorted(graph):
        walk(module)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule itself: a market module importing the lifecycle would be refused."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import json\nfrom vastnb.lifecycle.fleet import Fleet\nif True:\n    def f():\n        from vastnb.front import cli\n"
    )
    found = {(package_of(t), line) for t, line in imports("vastnb.market.bad", bad)}
    assert found == {("vastnb.lifecycle", 2), ("vastnb.front", 5)}
    typed = tmp_path / "typed.py"
    typed.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vastnb.front import cli\n")
    assert list(imports("vastnb.market.typed", typed)) == []


def test_only_the_fleet_writes_instance_rows() -> None:
    """One owner of an instance's life: outside the fleet (and the store itself), nothing
    records, transitions or updates an instance row; everything else asks the fleet."""
    import re

    writes = re.compile(r"\bstore\.(record|transition|update)\(")
    owners = {ROOT / "vastnb" / "lifecycle" / "fleet.py", ROOT / "vastnb" / "lifecycle" / "store.py"}
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for _, path in ALL
        if path not in owners
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if writes.search(line)
    ]
    assert not found, "instance rows written outside the fleet:\n" + "\n".join(found)
