"""The layering (issue #13): data flows one way, as the README says, through the areas in the
order that pyproject's import-linter contract names; checked here over the import graph itself
(every import, those inside functions included)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
TOP = "the top level"


def readme_order() -> list[str]:
    """The areas in the README's "Data flows one way" sentence, first to last."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"Data flows one way: (.*?)\.\s", readme, re.S)
    assert found, 'README.md has no "Data flows one way: …." sentence'
    steps = [step.strip() for step in " ".join(found.group(1).split()).split("→")]
    return [TOP if step == TOP else step.strip("`/") for step in steps]


def contract_order() -> list[str]:
    """The areas of pyproject's layers contract, lowest first."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return [TOP, *(layer.removeprefix("newsroom.") for layer in reversed(layers))]


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else TOP  # newsroom.compose.issues → compose


def test_the_readme_names_the_contracts_order() -> None:
    assert readme_order() == contract_order()


def test_every_import_goes_to_its_own_area_or_one_before() -> None:
    order = contract_order()
    graph = grimp.build_graph("newsroom")
    backwards = []
    for importer in sorted(graph.modules):
        if importer in ("newsroom", "newsroom.__main__") or area(importer) not in order:
            continue  # the package and `python -m newsroom`, which runs the command line
        for imported in graph.find_modules_directly_imported_by(importer):
            if area(imported) in order and order.index(area(imported)) > order.index(
                area(importer)
            ):
                backwards.append(f"{importer} imports {imported}")
    assert backwards == []


def test_every_module_is_in_an_area() -> None:
    order = contract_order()
    graph = grimp.build_graph("newsroom")
    packages = {m.split(".")[1] for m in graph.modules if m.count(".") >= 2}
    assert packages - set(order) == {"migrations"}
