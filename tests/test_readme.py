"""The README's Python examples run as a reader runs them: each one on its own, as a
script in a fresh folder that holds only the modules the README asks to write
(a block starting with ``# name.py``); and all of them one after the other in one
folder. A ``print(...)  # text`` line claims what it prints, and is checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
MODULE = re.compile(r"\A# (\w+)\.py\b")
CLAIM = re.compile(r"^\s*print\(.*\)\s+# (.+)$", re.M)

BLOCKS = BLOCK.findall(README.read_text())
MODULES = {m.group(1): code for code in BLOCKS if (m := MODULE.match(code))}
SCRIPTS = [code for code in BLOCKS if not MODULE.match(code)]


def first_line(code: str) -> str:
    return next(line for line in code.splitlines() if line.strip() and "import" not in line)


def run_python(folder: Path, code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` as a script in ``folder``, check it succeeded and printed what its
    comments claim, and return its output."""
    script = folder / "example.py"
    script.write_text(code)
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOB_WORKER_", "QUEUE_JOB__")) and k != "PYTHONPATH"
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    printed = iter(result.stdout.splitlines())
    for claim in CLAIM.findall(code):
        assert any(line == claim for line in printed), (claim, result.stdout)
    return result.stdout


def folder_with_modules(folder: Path) -> Path:
    for name, code in MODULES.items():
        (folder / f"{name}.py").write_text(code)
    return folder


def test_the_readme_shows_modules_and_scripts_with_claims():
    assert {"crm", "erp"} <= set(MODULES)
    assert len(SCRIPTS) >= 2
    assert len(CLAIM.findall("".join(SCRIPTS))) >= 2


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_readme_module_imports_on_its_own(tmp_path, name):
    run_python(folder_with_modules(tmp_path), f"import {name}\n")


@pytest.mark.parametrize("code", SCRIPTS, ids=first_line)
def test_each_readme_script_runs_on_its_own_in_a_new_folder(tmp_path, code):
    run_python(folder_with_modules(tmp_path), code)


def test_the_readme_scripts_run_one_after_the_other_in_one_folder(tmp_path):
    folder = folder_with_modules(tmp_path)
    for code in SCRIPTS:
        run_python(folder, code)


class FakeErp(BaseHTTPRequestHandler):
    """Answers every POST with a customer id and keeps the idempotency keys it saw."""

    keys: list[str | None] = []

    def do_POST(self) -> None:  # the name http.server calls
        self.rfile.read(int(self.headers["Content-Length"]))
        self.keys.append(self.headers.get("Idempotency-Key"))
        body = json.dumps({"id": f"C-{len(self.keys)}"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def erp_url() -> Iterator[str]:
    FakeErp.keys = []
    server = HTTPServer(("127.0.0.1", 0), FakeErp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/customers"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


RUN_THE_ERP_JOB = """
from job_worker import Registry, SUPERUSER_ID, api

registry = Registry("sqlite:///crm.db", modules=["crm", "erp"])
with registry.cursor() as cr:
    env = api.Environment(cr, SUPERUSER_ID, {})
    partner = env["res.partner"].create({"name": "Initech", "email": "it@initech.test"})
    job = partner.with_delay().push_to_erp()
    job.run_now()
    print(job.uuid, partner.id, partner.erp_ref, job.state)
"""


def test_the_readme_erp_job_sends_its_uuid_as_the_idempotency_key(tmp_path, erp_url):
    folder = folder_with_modules(tmp_path)
    printed = run_python(folder, RUN_THE_ERP_JOB, env={"ERP_URL": erp_url})
    job_uuid, partner_id, erp_ref, state = printed.split()
    assert FakeErp.keys == [f"{job_uuid}:{partner_id}"]
    assert (erp_ref, state) == ("C-1", "done")
