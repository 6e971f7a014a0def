from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_imports(doctest_namespace: dict[str, Any]) -> None:
    # Docstring examples read like user code that has done `import torch`.
    doctest_namespace["torch"] = torch
