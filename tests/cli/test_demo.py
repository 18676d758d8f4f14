"""``job-worker demo``: runs on its own with a real worker and ends with a summary
whose counts are the database's."""

import os
import re
import subprocess
import sys

import pytest
from opsapp.scenario import csrf_of
from starlette.testclient import TestClient

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.web import Settings, create_app


@pytest.mark.timeout(120)
def test_demo_runs_every_kind_of_job_and_its_summary_matches_the_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOB_WORKER_")}
    result = subprocess.run(
        [sys.executable, "-m", "job_worker", "demo"],
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "job_worker_demo.db").exists()
    row = re.search(
        r"all\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)",
        result.stdout,
    )
    assert row, result.stdout
    printed_login = re.search(r"login admin, password (\S{12})\)", result.stdout)
    assert printed_login, result.stdout
    password = printed_login.group(1)
    printed = dict(
        zip(
            ["waiting", "pending", "started", "done", "failed", "cancelled"],
            map(int, row.groups()),
            strict=True,
        )
    )

    registry = Registry(f"sqlite:///{tmp_path / 'job_worker_demo.db'}", ["job_worker.demo"])
    try:
        with registry.cursor() as cr:
            cr.execute("SELECT state, COUNT(*) FROM queue_job GROUP BY state")
            in_db = dict(cr.fetchall())
            env_ = api.Environment(cr, SUPERUSER_ID, {})
            jobs = env_["queue.job"].search([])
            flaky = jobs.filtered(lambda j: j.method_name == "push_invoice")
            scheduled = jobs.filtered(lambda j: "scheduled" in j.name)
            dedup = jobs.filtered(lambda j: "deduplicated" in j.name)
            split = jobs.filtered(lambda j: "(split" in j.name)
            chained = jobs.filtered(lambda j: "nightly export" in j.name)
            callback = jobs.filtered(lambda j: j.method_name == "notify_done")
            periodic = jobs.filtered(lambda j: j.cron_id)
            occurrences = periodic.mapped("cron_occurrence")
            admin = env_["res.users"].search([("login", "=", "admin")])
            assert admin.has_group("queue_job.group_manager") and not admin.check_password("admin")
            assert password and admin.check_password(password)
            assert printed == {state: in_db.get(state, 0) for state in printed}
            assert in_db == {"done": len(jobs) - 1, "failed": 1}
            assert (flaky.state, flaky.attempts) == ("done", 1)
            assert scheduled.state == "done" and scheduled.started_at >= scheduled.scheduled_at
            assert len(dedup) == 1
            assert len(split) == 3 and len(chained) == 2 and callback.state == "done"
            # the periodic job: one job per occurrence, then paused before the worker stopped
            assert len(periodic) >= 3 and len(set(occurrences)) == len(occurrences)
            assert set(periodic.mapped("state")) == {"done"}
            assert periodic.mapped("cron_id").active is False
        # the charts show the demo's jobs at once, though no snapshot covers them yet
        with TestClient(
            create_app(registry, Settings(secret="demo-test-secret-0123")),
            base_url="http://localhost",
        ) as web:
            token = csrf_of(web.get("/login").text)
            web.post("/login", data={"login": "admin", "password": password, "csrf_token": token})
            points = web.get("/api/series?range=24h").json()["points"]
        assert sum(p["done"] for p in points) == in_db["done"]
        assert sum(p["failed"] for p in points) == in_db["failed"]
    finally:
        registry.close()
    assert "job-worker dashboard -d sqlite:///job_worker_demo.db" in result.stdout.replace("\n", "")


def test_demo_starts_from_a_fresh_file_each_time(tmp_path):
    (tmp_path / "job_worker_demo.db").write_text("not a database")
    result = subprocess.run(
        [sys.executable, "-m", "job_worker", "demo", "--timeout", "60"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        env={k: v for k, v in os.environ.items() if not k.startswith("JOB_WORKER_")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Removed the previous demo database" in result.stdout


def test_demo_makes_no_admin_on_a_database_it_did_not_create(tmp_path):
    url = f"sqlite:///{tmp_path / 'existing.db'}"
    Registry(url, ["job_worker.demo"]).close()  # a database made before the demo ran
    result = subprocess.run(
        [sys.executable, "-m", "job_worker", "demo", "--database", url, "--timeout", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        env={k: v for k, v in os.environ.items() if not k.startswith("JOB_WORKER_")},
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert "log in as a manager of this database" in result.stdout.replace("\n", " ")
    assert "password" not in result.stdout
    registry = Registry(url, ["job_worker.demo"])
    try:
        with registry.cursor(readonly=True) as cr:
            users = api.Environment(cr, SUPERUSER_ID, {})["res.users"]
            assert not users.search([("login", "=", "admin")])
    finally:
        registry.close()
