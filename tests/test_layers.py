"""The import direction of docs/layers.md, checked on the source: a module that imports a layer it may not
fails here with the file, the line and the arrow.

    entry points (guichet) -> ui -> agent -> drivers -> config;  contract read by agent, ui and sandbox;
    sandbox beside them, using drivers, contract and config only.

Every arrow counts: top-level and deferred `import`s, `importlib.import_module("...")`, and module names
written as strings (the `guichet` command table, the authorizer table) when they name one of our modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the packages it may import (its own is always allowed). One home: docs/layers.md shows this table.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "guichet": frozenset({"ui", "agent", "drivers", "config", "contract", "sandbox"}),
    "ui": frozenset({"agent", "drivers", "config", "contract"}),
    "agent": frozenset({"drivers", "config", "contract"}),
    "drivers": frozenset({"config"}),
    "sandbox": frozenset({"drivers", "config", "contract"}),
    "contract": frozenset(),
    "config": frozenset(),
}
OURS = frozenset(MAY_IMPORT)
DOTTED = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+")


def is_module(name: str) -> bool:
    """Whether a dotted name is one of our modules or packages (so a string like "agent.sync" is an import)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import of one of our packages in `source`, whatever its form.

    >>> imports("import os\\nfrom ui.app import run\\nx = importlib.import_module('agent.sync')")
    [(2, 'ui.app'), (3, 'agent.sync')]
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.fullmatch(node.value)
              and node.value.split(".")[0] in OURS and is_module(node.value)):
            names = [node.value]
        found += [(node.lineno, n) for n in names if n.split(".")[0] in OURS]
    return sorted(set(found))


def violations(package: str, source: str) -> list[str]:
    allowed = MAY_IMPORT[package] | {package}
    return [f"line {line}: {package} -> {name}" for line, name in imports(source) if name.split(".")[0] not in allowed]


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)} {v}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for v in violations(package, path.read_text(encoding="utf-8"))
    ]
    assert not bad, "imports against the direction of docs/layers.md:\n" + "\n".join(bad)


def test_every_top_level_package_has_a_place_in_the_table() -> None:
    """A new package must be given its layer here (and in docs/layers.md) before it can import anything."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "scripts"}
    assert packages == OURS


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("agent", "from ui.app import GuichetApp"),  # the agent reaching up to the UI
        ("agent", "def demo():\n    import sandbox.billing.server\n"),  # deferred imports count
        ("agent", "COMMANDS = {'demo': ('guichet.cli.demo', 'demo', 'help')}"),  # and names by string
        ("ui", "importlib.import_module('sandbox.cards.card')"),
        ("sandbox", "from agent.journal import Journal"),  # the test world using the agent
        ("drivers", "from agent.errors import GuichetError"),
        ("config", "from drivers.pan import mask"),
    ],
)
def test_an_import_against_the_direction_is_caught(package: str, source: str) -> None:
    assert violations(package, source)


def test_imports_along_the_direction_pass() -> None:
    assert not violations("guichet", "from ui.app import run\nfrom sandbox.tpe.sim import TpeSimulator")
    assert not violations("ui", "from agent.journal import Journal\nfrom config import Config")
    assert not violations("sandbox", "from drivers.emv import tlv\nfrom contract import models")
