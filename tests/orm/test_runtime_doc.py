"""The examples of docs/runtime.md run here, on both databases.

The page runs top to bottom in one namespace: ``python models`` blocks form
the module ``library`` (defined once per session), ``python`` blocks run with
``database_url`` set to an empty database. Each block asserts what its text
claims.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"
BLOCK = re.compile(r"^```python( models)?\n(.*?)^```", re.S | re.M)


def library_module(blocks):
    if "library" not in sys.modules:  # model classes are defined once per session
        module = types.ModuleType("library")
        sys.modules["library"] = module
        for i, (is_models, code) in enumerate(blocks):
            if is_models:
                exec(compile(code, f"runtime.md[{i}]", "exec"), module.__dict__)
    return sys.modules["library"]


def test_the_runtime_reference_examples_run(db_url):
    blocks = BLOCK.findall(PAGE.read_text())
    assert sum(1 for is_models, _ in blocks if not is_models) >= 8
    library_module(blocks)
    namespace: dict = {"database_url": db_url}
    try:
        for i, (is_models, code) in enumerate(blocks):
            if not is_models:
                exec(compile(code, f"runtime.md[{i}]", "exec"), namespace)
    finally:
        if "cr" in namespace:
            namespace["cr"].close()
        if "registry" in namespace:
            namespace["registry"].close()
