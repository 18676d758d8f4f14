"""A first run as a user does it: the installed ``job-worker`` script, started in the
folder that holds the application module, and a worker that says at once what is
wrong with its modules or its database instead of retrying forever."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

#: the console script pip installed next to this interpreter (not ``python -m``,
#: which puts the current folder on the import path by itself)
SCRIPT = Path(sys.executable).with_name("job-worker")

CRM = """
from job_worker import fields, models


class Partner(models.Model):
    _inherit = "res.partner"

    vip = fields.Boolean()

    def greet(self, name):
        self.create({"name": name, "vip": True})
"""


def clean_env() -> dict[str, str]:
    """This process's environment without job_worker's variables or an import path."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOB_WORKER_", "QUEUE_JOB__")) and k != "PYTHONPATH"
    }


def job_worker(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_worker(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), "worker", "--poll-interval", "0.2", *args],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(worker: subprocess.Popen[str]) -> str:
    """SIGTERM the worker, wait for it and return what it logged."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        _, err = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        _, err = worker.communicate()
    return err


@pytest.fixture
def app_folder(tmp_path) -> Path:
    assert SCRIPT.exists(), f"the job-worker script is not installed next to {sys.executable}"
    (tmp_path / "crm.py").write_text(CRM)
    return tmp_path


def test_init_and_worker_load_the_module_of_the_current_folder(app_folder):
    url = "sqlite:///crm.db"
    init = job_worker("init", "-d", url, "-l", "crm", cwd=app_folder)
    assert init.returncode == 0, init.stderr
    assert "crm" in init.stdout
    created = job_worker(
        "enqueue", "res.partner", "greet", "--args", '["Ada"]', "--json",
        "-d", url, "-l", "crm", cwd=app_folder,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["id"]
    worker = start_worker("-d", url, "-l", "crm", cwd=app_folder)
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline and worker.poll() is None:
            shown = job_worker("jobs", "show", str(job_id), "--json", "-d", url, cwd=app_folder)
            state = json.loads(shown.stdout)["state"]
            if state in ("done", "failed"):
                break
            time.sleep(0.2)  # polling the job's state in the database, with a deadline
    finally:
        log = stop(worker)
    assert state == "done", log


def test_a_worker_whose_module_cannot_be_imported_exits_with_usage_code(app_folder):
    assert job_worker("init", "-d", "sqlite:///crm.db", cwd=app_folder).returncode == 0
    result = job_worker(
        "worker", "-d", "sqlite:///crm.db", "-l", "crm,no_such_module", cwd=app_folder
    )
    assert result.returncode == 2
    assert "cannot load module 'no_such_module': no such Python module" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_on_a_new_path_exits_without_creating_a_database(app_folder):
    result = job_worker("worker", "-d", "sqlite:///mistyped.db", "-l", "crm", cwd=app_folder)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "Error: database file mistyped.db does not exist (`job-worker init` creates it)"
    )
    assert "Traceback" not in result.stderr
    assert not (app_folder / "mistyped.db").exists()


def test_a_worker_on_an_empty_database_asks_for_init_and_creates_no_schema(app_folder):
    (app_folder / "empty.db").touch()
    result = job_worker("worker", "-d", "sqlite:///empty.db", cwd=app_folder)
    assert result.returncode == 1
    assert "Error: no job_worker tables in empty.db: run `job-worker init` first" in result.stderr
    with closing(sqlite3.connect(app_folder / "empty.db")) as cnx:
        assert cnx.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_worker_on_a_postgres_database_that_never_existed_exits_with_the_server_message(
    app_folder, pg_database
):
    name = f"job_worker_missing_{uuid.uuid4().hex[:8]}"
    url = pg_database.rsplit("/", 1)[0] + "/" + name
    result = job_worker("worker", "-d", url, cwd=app_folder)
    assert result.returncode == 1
    assert f'database "{name}" does not exist' in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_without_a_module_the_database_has_installed_warns_at_start(app_folder):
    url = "sqlite:///crm.db"
    assert job_worker("init", "-d", url, "-l", "crm", cwd=app_folder).returncode == 0
    worker = start_worker("-d", url, cwd=app_folder)
    assert worker.stderr is not None
    lines: list[str] = []
    try:
        for line in worker.stderr:  # ends when the worker exits; the test timeout bounds it
            lines.append(line)
            if "worker.database" in line:  # started: any start-up warning came before
                break
    finally:
        log = "".join(lines) + stop(worker)
    warnings = [line for line in lines if "worker.modules_missing" in line]
    assert len(warnings) == 1, log
    assert "module(s) crm installed that this worker does not load" in warnings[0]
    assert "--load crm" in warnings[0]
