"""The docs cannot rot: every fenced Python block runs, and every public name is documented."""

import importlib
import re
from pathlib import Path

import pytest

import adagate
import adagate.backbones

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
API_ENTRY = re.compile(r"^::: ([\w.]+)", re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name
)
def test_page_snippets_run(page: Path) -> None:
    # The blocks of one page share a namespace, in order, as a reader would run them.
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(python_blocks(page), 1):
        code = compile(block, f"{page.name} block {number}", "exec")
        exec(code, namespace)


def documented_objects() -> set[int]:
    objects = set()
    for page in PAGES:
        for path in API_ENTRY.findall(page.read_text()):
            module_name, _, attribute = path.rpartition(".")
            objects.add(id(getattr(importlib.import_module(module_name), attribute)))
    return objects


@pytest.mark.parametrize("package", [adagate, adagate.backbones], ids=lambda m: m.__name__)
def test_every_public_name_is_on_an_api_page(package: object) -> None:
    documented = documented_objects()
    public = [name for name in getattr(package, "__all__", []) if not name.startswith("__")]
    assert public, "the package exports nothing"
    missing = [name for name in public if id(getattr(package, name)) not in documented]
    assert not missing, f"public names without a `::: ...` entry in docs/: {missing}"


@pytest.mark.parametrize("package", [adagate, adagate.backbones], ids=lambda m: m.__name__)
def test_every_public_name_has_a_docstring_with_a_shape_line(package: object) -> None:
    lacking = []
    for name in getattr(package, "__all__", []):
        if name.startswith("__"):
            continue
        doc = getattr(getattr(package, name), "__doc__", None) or ""
        if not re.search(r"Shape|\([A-Z][\w, ]*\)|\(\*", doc):
            lacking.append(name)
    assert not lacking, f"public names whose docstring gives no shapes: {lacking}"
