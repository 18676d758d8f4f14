"""The real ``job-worker`` executable: exit codes seen by a shell, and a worker
draining what the CLI enqueued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

APPS = str(Path(__file__).resolve().parents[1] / "apps")


def run(*args: str, url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "JOB_WORKER_DATABASE_URL": url,
        "JOB_WORKER_LOAD": "opsapp",
        "PYTHONPATH": os.pathsep.join([APPS, os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "job_worker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_exit_codes_a_script_can_trust(url):
    assert run("init", url=url).returncode == 0
    assert run("jobs", "show", "42", url=url).returncode == 1
    assert run("jobs", "list", "--state", "sleeping", url=url).returncode == 2
    assert run("no-such-command", url=url).returncode == 2
    listed = run("jobs", "list", "--json", url=url)
    assert listed.returncode == 0 and json.loads(listed.stdout)["jobs"] == []


def test_dashboard_refuses_to_listen_off_loopback_without_a_secret(url):
    run("init", url=url)
    result = run("dashboard", "--host", "0.0.0.0", "--port", "0", url=url, timeout=30)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a configured secret" in result.stderr
    short = run("dashboard", "--host", "0.0.0.0", "--secret", "short", url=url, timeout=30)
    assert short.returncode == 2 and "at least 16 characters" in short.stderr


def test_worker_runs_what_the_cli_enqueued(url):
    assert run("init", url=url).returncode == 0
    created = run("enqueue", "res.partner", "export", "--args", '["csv"]', "--json", url=url)
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["id"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([APPS, os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "job_worker",
            "worker",
            "-d",
            url,
            "-l",
            "opsapp",
            "--poll-interval",
            "0.2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:
            shown = run("jobs", "show", str(job_id), "--json", url=url)
            state = json.loads(shown.stdout)["state"]
            if state == "done":
                break
            time.sleep(0.3)  # polling the database for the job's state, with a deadline
        assert state == "done"
        reasons = json.loads(run("jobs", "explain", str(job_id), "--json", url=url).stdout)[
            "reasons"
        ]
        assert [r["code"] for r in reasons] == ["finished"]
        workers = json.loads(run("stats", "--json", url=url).stdout)["workers"]
        assert [w["alive"] for w in workers] == [True]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
