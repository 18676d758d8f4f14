"""The examples of docs/jobs/*.md run here, on both databases.

Each page runs top to bottom in one namespace, like a notebook: ``python``
blocks run with ``env`` (a superuser environment on a fresh database with the
job test app) and ``partner`` (a res.partner) defined; a ``python models``
block is model code: it becomes a module that the page's registry loads.
Every block asserts what its text claims.
"""

import os
import re
import sys
import types
from pathlib import Path

import pytest

from job_worker import SUPERUSER_ID, Registry, api

DOCS = Path(__file__).resolve().parents[2] / "docs" / "jobs"
BLOCK = re.compile(r"^```python( models)?\n(.*?)^```", re.S | re.M)
PAGES = sorted(DOCS.glob("*.md"))


def test_every_how_to_page_has_examples():
    assert len(PAGES) >= 9
    for page in PAGES:
        assert BLOCK.search(page.read_text()), f"{page.name} has no python example"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_examples_run(page, db_url, monkeypatch):
    blocks = BLOCK.findall(page.read_text())
    modules = ["jobapp"]
    name = f"docs_{page.stem.replace('-', '_')}"
    model_code = [code for is_models, code in blocks if is_models]
    if model_code:
        if name not in sys.modules:  # model classes are defined once per session
            module = types.ModuleType(name)
            module.__dict__["DEPENDS"] = ["jobapp"]
            sys.modules[name] = module
            for code in model_code:
                exec(compile(code, f"{page.name}[models]", "exec"), module.__dict__)
        modules.append(name)
    monkeypatch.delenv("QUEUE_JOB__NO_DELAY", raising=False)
    registry = Registry(db_url, modules)
    cr = registry.cursor()
    try:
        env = api.Environment(cr, SUPERUSER_ID, {})
        namespace = {"env": env, "partner": env["res.partner"].create({"name": "Acme"}), "os": os}
        for i, (is_models, code) in enumerate(blocks):
            if not is_models:
                exec(compile(code, f"{page.name}[{i}]", "exec"), namespace)
    finally:
        os.environ.pop("QUEUE_JOB__NO_DELAY", None)
        cr.rollback()
        cr.close()
        registry.close()
