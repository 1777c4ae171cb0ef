"""The package's import structure: data flows one way, front ends sit on top.

Every import inside ``sklearn_arb`` (module level or inside a function) is read
from the source with ``ast``; the tests check three rules:

- a unit (a subpackage, or a top-level module) imports only from units of an
  earlier stage, in the order images -> preprocessing -> bootstrap and backbone ->
  token maps -> statistics -> thresholds -> maps -> metrics and plots -> runs ->
  studies -> front ends (the command line and Ray);
- the units' import graph has no cycle;
- no name starting with ``_`` is imported from another unit.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sklearn_arb"

# The stage of every unit: a unit may import from units of a strictly smaller
# stage (and from itself). A unit missing here fails the test, so a new one is
# placed on purpose.
STAGES = {
    "_config": 0,
    "_images": 1,
    "datasets": 2,
    "backbone": 3,
    "_layout": 4,
    "_maps": 4,
    "_extractor": 5,
    "stats": 6,
    "_thresholds": 7,
    "_regularizer": 8,
    "_selection": 9,
    "_pipeline": 10,
    "metrics": 11,
    "plotting": 11,
    # The run engine (inputs, output store, per-batch compute) under the studies
    # and the front ends; the evaluation package holds its own study, a run.
    "_runs": 12,
    "_parquet": 12,
    "evaluation": 13,
    "_study": 13,
    "cli": 15,
    "ray": 15,
    "__init__": 16,
    "__main__": 17,
}


def _unit(parts: tuple[str, ...]) -> str:
    """The unit of a module given as its path parts below the package."""
    return parts[0].removesuffix(".py")


def _imports() -> list[tuple[str, str, list[str], str]]:
    """(importing unit, imported unit, imported names, where) of every import of
    a package module from a package module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        module = [*list(parts[:-1]), parts[-1].removesuffix(".py")]
        if module[-1] == "__init__" and len(module) > 1:
            module = module[:-1]
            package = module
        else:
            package = module[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = base + (node.module.split(".") if node.module else [])
                elif node.module and node.module.split(".")[0] == "sklearn_arb":
                    target = node.module.split(".")[1:]
                else:
                    continue
                names = [alias.name for alias in node.names]
                if not target:  # "from . import x" in the package's __init__
                    target = [names[0]]
                if not node.module and node.level and len(target) == len(base):
                    # "from .. import name": the name may be a module
                    target = [*target, names[0]]
            elif isinstance(node, ast.Import):
                targets = [
                    a.name.split(".")[1:]
                    for a in node.names
                    if a.name.startswith("sklearn_arb.")
                ]
                if not targets:
                    continue
                target, names = targets[0], []
            else:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            source_unit = "__init__" if parts == ("__init__.py",) else _unit(parts)
            target_unit = _unit(tuple(target)) if target else "__init__"
            if (PACKAGE / f"{target_unit}.py").exists() or (
                PACKAGE / target_unit
            ).is_dir():
                found.append((source_unit, target_unit, names, where))
            else:  # "from .. import AttentionExtractor": the package itself
                found.append((source_unit, "__init__", names, where))
    return found


def _root_exports() -> dict[str, str]:
    """The unit each name of the package's ``__init__`` comes from."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    return {
        alias.name: node.module.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        for alias in node.names
    }


def _resolved(imports, exports):
    """``from sklearn_arb import Name`` read as an import of Name's own unit."""
    resolved = []
    for source, target, names, where in imports:
        if target == "__init__" and source != "__init__":
            for name in names:
                if name.startswith("__"):  # __version__: metadata, no stage
                    continue
                resolved.append((source, exports.get(name, "__init__"), [name], where))
        else:
            resolved.append((source, target, names, where))
    return resolved


def _is_module(package: str, name: str) -> bool:
    folder = PACKAGE.parent.joinpath(*package.split("."))
    return (folder / f"{name}.py").exists() or (folder / name).is_dir()


IMPORTS = _resolved(_imports(), _root_exports())


def test_every_unit_has_a_stage():
    units = {_unit(p.relative_to(PACKAGE).parts) for p in PACKAGE.glob("*")}
    units = {u for u in units if not u.startswith((".", "__pycache__"))}
    assert units - set(STAGES) == set(), "place the new unit in STAGES"


def test_no_import_from_a_later_stage():
    upward = [
        f"{where}: {source} (stage {STAGES[source]}) imports {target} "
        f"(stage {STAGES[target]})"
        for source, target, _, where in IMPORTS
        if source != target and STAGES[target] >= STAGES[source]
    ]
    assert upward == []


def test_no_import_cycle_between_units():
    graph = defaultdict(set)
    for source, target, _, _ in IMPORTS:
        if source != target:
            graph[source].add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(u for u in list(graph) if reaches(u, u, {u}))
    assert cycles == []


def test_ray_never_imports_the_command_line():
    assert [w for s, t, _, w in IMPORTS if s == "ray" and t == "cli"] == []


def test_no_private_name_crosses_units():
    crossing = [
        f"{where}: {source} imports {name} from {target}"
        for source, target, names, where in IMPORTS
        if source != target
        for name in names
        if name.startswith("_") and not (PACKAGE / target / f"{name}.py").exists()
    ]
    assert crossing == []


@pytest.mark.parametrize("tests_file", sorted(PACKAGE.parent.glob("tests/*.py")))
def test_tests_import_no_private_name(tests_file):
    """Tests use public names where one can serve; a private module is fine
    (scikit-learn's own tests do that), a private name from it is not."""
    tree = ast.parse(tests_file.read_text(encoding="utf-8"))
    private = [
        f"{tests_file.name}:{node.lineno}: {alias.name} from {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("sklearn_arb")
        for alias in node.names
        if alias.name.startswith("_") and not _is_module(node.module, alias.name)
    ]
    assert private == []
