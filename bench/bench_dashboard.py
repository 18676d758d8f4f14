"""Time every dashboard page and ``job-worker jobs list`` on a big database.

    python bench/gen_jobs.py --recreate            # 1,000,000 job rows in PostgreSQL
    python bench/bench_dashboard.py                 # the figures of docs/operations.md

Pages are served in-process (Starlette's TestClient: the server-side time of
each request, no network), logged in as the "bench" manager and as the
"viewer" user that gen_jobs.py creates. Each page is requested once to warm
up, then ``--repeat`` times; the median and the slowest are printed. As a
baseline measured in the same run, ``SELECT 1`` through the same stack
(the /healthz page) shows the fixed cost of a request.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from starlette.testclient import TestClient

from job_worker import Registry
from job_worker.web import Settings, create_app


def ensure_data(url: str, rows: int) -> None:
    """Run gen_jobs.py first when the database is missing or holds too few jobs."""
    try:
        with psycopg.connect(url, connect_timeout=5) as cnx:
            found = cnx.execute("SELECT count(*) FROM queue_job").fetchone()[0]  # type: ignore[index]
    except psycopg.Error:
        found = 0
    if found < rows * 0.99:
        script = Path(__file__).with_name("gen_jobs.py")
        command = [
            sys.executable,
            str(script),
            "--database",
            url,
            "--rows",
            str(rows),
            "--recreate",
        ]
        subprocess.run(command, check=True)


def login(app, login: str) -> TestClient:
    client = TestClient(app, base_url="http://localhost")  # an allowed host
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    response = client.post("/login", data={"login": login, "password": login, "csrf_token": token})
    assert response.status_code == 200 and "Queue health" in response.text, "log-in failed"
    return client


def timed(client: TestClient, path: str, repeat: int) -> tuple[float, float]:
    response = client.get(path)
    assert response.status_code == 200, f"{path}: HTTP {response.status_code}"
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgresql://127.0.0.1:5432/job_worker_bench")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rows", type=int, default=1_000_000, help="jobs to generate when missing")
    args = parser.parse_args()
    ensure_data(args.database, args.rows)
    registry = Registry(args.database)
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT count(*), max(id) FROM queue_job")
        rows, max_id = cr.fetchone()  # type: ignore[misc]
        cr.execute("SELECT id FROM queue_job WHERE state = 'failed' ORDER BY id DESC LIMIT 1")
        failed_id = cr.fetchone()[0]  # type: ignore[index]
        cr.execute("SELECT id FROM queue_job WHERE state = 'waiting' ORDER BY id DESC LIMIT 1")
        waiting_id = cr.fetchone()[0]  # type: ignore[index]
    app = create_app(registry, Settings())
    manager, viewer = login(app, "bench"), login(app, "viewer")
    pages = [
        ("baseline: /healthz", manager, "/healthz"),
        ("overview (KPIs)", manager, "/"),
        ("overview JSON (live refresh)", manager, "/api/overview"),
        ("jobs: newest", manager, "/jobs"),
        ("jobs: failed", manager, "/jobs?state=failed"),
        ("jobs: pending in exports", manager, "/jobs?state=pending&channel=exports"),
        ("jobs: failed within 1 h", manager, "/jobs?state=failed&finished=1h"),
        ("jobs: retry exhausted", manager, "/jobs?exhausted=1"),
        ("jobs: aged pending", manager, "/jobs?aged=1"),
        ("jobs: search 'Push invoice'", manager, "/jobs?q=Push+invoice"),
        (
            "jobs: top failure type",
            manager,
            "/jobs?state=failed&exc_name=TimeoutError&finished=24h",
        ),
        ("jobs: page in the middle", manager, f"/jobs?before={max_id // 2}"),
        ("jobs: live table fragment", manager, "/jobs?partial=1"),
        ("job detail (failed)", manager, f"/jobs/{failed_id}"),
        ("job detail (waiting, graph)", manager, f"/jobs/{waiting_id}"),
        ("job graph JSON", manager, f"/api/jobs/{waiting_id}/graph"),
        ("channels", manager, "/channels"),
        ("workers", manager, "/workers"),
        ("charts 24 h", manager, "/charts?range=24h"),
        ("charts 30 d", manager, "/charts?range=30d"),
        ("alert rules", manager, "/alerts"),
        ("/metrics", manager, "/metrics"),
        ("user: overview (own jobs)", viewer, "/"),
        ("user: jobs (own jobs)", viewer, "/jobs"),
        ("user: failed (own jobs)", viewer, "/jobs?state=failed"),
    ]
    print(
        f"{rows:,} job rows; {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}; median and slowest of {args.repeat} requests"
    )
    print(f"{'page':<36} {'median ms':>10} {'max ms':>8}")
    for name, client, path in pages:
        median, slowest = timed(client, path, args.repeat)
        print(f"{name:<36} {median:>10.1f} {slowest:>8.1f}")
    for flags in (
        [],
        ["--state", "failed"],
        ["--before", str(max_id // 2)],
        ["-q", "Push invoice"],
    ):
        command = [sys.executable, "-m", "job_worker", "jobs", "list", "-d", args.database, *flags]
        subprocess.run(command, capture_output=True, check=True)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            times.append((time.perf_counter() - started) * 1000)
        label = "jobs list " + " ".join(flags)
        print(f"{label:<36} {statistics.median(times):>10.1f} {max(times):>8.1f}  (whole process)")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import job_worker.cli"], check=True)
    print(
        f"{'baseline: python -c import job_worker.cli':<36} {(time.perf_counter() - started) * 1000:>10.1f}"
    )
    registry.close()


if __name__ == "__main__":
    main()
