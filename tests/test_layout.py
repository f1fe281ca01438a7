"""The package's layout rules, read from its source: no module borrows another's private names,
and no two modules import each other (at any depth, lazily or not)."""

from __future__ import annotations

import ast
from pathlib import Path

import fastanon

PACKAGE = Path(fastanon.__file__).resolve().parent
# Generated tables and the compiled kernel are private modules every stage may read.
SHARED_PRIVATE = {"fastanon._core", "fastanon._dictionary", "fastanon.presets._profile_table"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(["fastanon", *parts])] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def _package_of(module: str, tree_is_package: bool) -> str:
    return module if tree_is_package else module.rpartition(".")[0]


def _imports(modules: dict[str, ast.Module]):
    """(importer, imported module, names taken from it) for every import of a fastanon module."""
    for name, tree in modules.items():
        is_package = (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists()
        base = _package_of(name, is_package)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base
                    for _ in range(node.level - 1):
                        parent = parent.rpartition(".")[0]
                    target = f"{parent}.{node.module}" if node.module else parent
                else:
                    target = node.module or ""
                if not target.startswith("fastanon"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:           # `from . import presets`: a module
                        yield name, sub, ()
                    else:
                        yield name, target, (alias.name,)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("fastanon"):
                        yield name, alias.name, ()


def _borrowed(modules: dict[str, ast.Module]) -> list[str]:
    """Private names taken from another module, and private modules imported from outside their
    own package (cli/_options.py serves the cli package only)."""
    out = []
    for importer, target, names in _imports(modules):
        out += [f"{importer} takes {target}.{item}" for item in names
                if item.startswith("_") and not item.startswith("__") and target != importer
                and f"{target}.{item}" not in SHARED_PRIVATE]
        package, _, last = target.rpartition(".")
        if last.startswith("_") and not last.startswith("__") and target not in SHARED_PRIVATE \
                and importer.rpartition(".")[0] != package and importer != package:
            out.append(f"{importer} imports {target}")
    return out


def _cycles(modules: dict[str, ast.Module]) -> list[str]:
    """Import cycles between modules (a package counts by its __init__; a package importing its
    own submodules is no cycle)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for importer, target, _ in _imports(modules):
        if target in modules and target != importer and not target.startswith(importer + "."):
            graph[importer].add(target)
    cycles: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path
                              else f"{node} → {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return cycles


def test_no_module_imports_another_modules_private_names():
    assert _borrowed(_modules()) == []


def test_modules_do_not_import_each_other():
    assert _cycles(_modules()) == []


def test_the_layout_rules_can_fail():
    """The checks find what they look for, in made-up modules: a borrowed name, a private module
    of another package, and a cycle closed by a lazy import."""
    modules = {
        "fastanon.inspect": ast.parse("from .policy import _tags_of\nfrom .cli import _options\n"),
        "fastanon.policy": ast.parse("def f():\n    from . import plan\n"),
        "fastanon.plan": ast.parse("from .policy import Policy\n"),
        "fastanon.cli": ast.parse(""), "fastanon.cli._options": ast.parse(""),
    }
    assert _borrowed(modules) == ["fastanon.inspect takes fastanon.policy._tags_of",
                                  "fastanon.inspect imports fastanon.cli._options"]
    assert _cycles(modules) == ["fastanon.policy → fastanon.plan → fastanon.policy"]


def test_docstring_examples_run():
    """Every example in a docstring of the package runs and gives what it shows (STYLE 13)."""
    import doctest
    import importlib

    failed = {}
    for name in _modules():
        if name.startswith(("fastanon.cli", "fastanon.preview.server")) or name.endswith("__main__"):
            continue
        result = doctest.testmod(importlib.import_module(name), verbose=False, report=False)
        if result.failed:
            failed[name] = result.failed
    assert failed == {}


def test_the_command_line_loads_the_engine_only_when_a_command_needs_it():
    """`import fastanon.cli` (what the `fastanon` command pays first) loads nothing but itself;
    its click group (--help and every command but a well-formed run) loads click and the command
    modules, not the engine, pydicom or numpy; `import fastanon` loads the errors only."""
    import subprocess
    import sys

    def loaded(statement: str) -> set[str]:
        code = (f"import sys; {statement}; "
                "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
                "('fastanon', 'pydicom', 'numpy', 'click'))))")
        return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True).stdout.split())

    assert loaded("import fastanon.cli") == {"fastanon", "fastanon.errors", "fastanon.cli"}
    commands = loaded("from fastanon.cli import main")
    assert {m for m in commands if m.startswith("fastanon")} == {
        "fastanon", "fastanon.errors", "fastanon.cli", "fastanon.cli._args",
        "fastanon.cli._check", "fastanon.cli._group", "fastanon.cli._options", "fastanon.cli._run", "fastanon.cli.check",
        "fastanon.cli.inspect", "fastanon.cli.listen", "fastanon.cli.presets", "fastanon.cli.run",
        "fastanon.cli.serve",
        "fastanon.stores"}      # which arguments are URLs (fsspec itself only for those)
    assert "click" in commands and not {"pydicom", "numpy"} & commands
