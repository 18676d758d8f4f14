"""Time every dashboard page and every read command of ``job-worker`` on a big database,
then all of it again while a worker drains jobs.

    python bench/gen_jobs.py --recreate            # 1,000,000 job rows in PostgreSQL
    python bench/bench_dashboard.py                 # the figures of docs/operations.md
    python bench/bench_dashboard.py --no-worker --repeat 3 --cli-repeat 3 --json out.json

Pages are served in-process (Starlette's TestClient: the server-side time of
each request, no network), logged in as the users gen_jobs.py creates: "bench"
(a Queue Job Manager, who sees every job), "viewer" (a Queue Job User, who sees
their own jobs) and "quiet" (a Queue Job User whose jobs are all finished). The
manager opens every page the dashboard serves to a GET (a route no page covers is
printed as such, never skipped silently); the plain users open the overview, the
job list under their usual filters, one of their own jobs and the shared pages
(the alert rules are the managers' only). Each page is requested once to warm up,
then ``--repeat`` times; the median and the slowest are printed. As a baseline
measured in the same run, ``/healthz`` (one trivial query through the same stack)
shows the fixed cost of a request.

The read commands (``jobs list`` under its filters, ``jobs show``, ``jobs explain``,
``stats``, ``limits list``, ``limits fair``, ``cron list``, ``config list``, ``config
get``, ``users list``) run as whole processes, ``python -m job_worker ... -d URL``:
start-up, imports, connection, query and output; each once to warm up, then
``--cli-repeat`` times. Their baseline is ``python -m job_worker --help``, which
starts the CLI and touches no database. The package is byte-compiled first, as an
install does.

Unless ``--no-worker`` is given, everything is measured a second time while a real
worker (``python -m job_worker worker --channel drain``, a subprocess) drains
``--drain-jobs`` no-op jobs enqueued in the channel "drain" by one INSERT (so the
dataset's own jobs stay as they are); the report says how many it finished during
that pass. The worker is then stopped with SIGTERM, and the drain jobs and the
channel's limit are deleted (and the table vacuumed).

The report is one table per pass: page or command, who (manager, viewer, quiet,
anonymous, cli), median ms, max ms; "!" marks a median over 500 ms. Its first line
describes the machine and the data (cores, Python, PostgreSQL, job rows, pending
jobs). ``--json FILE`` writes every figure as a list of ``{pass, name, who,
median_ms, max_ms}`` (with ``error`` when a page or command failed; the script then
exits 1).

An existing database is used as it is; gen_jobs.py is run first (``--recreate``,
which drops the database) when it has no jobs, or when ``--rows`` asks for more than
it holds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from job_worker import Registry
from job_worker.web import Settings, create_app

#: a median above this is marked "!" in the table
SLOW_MS = 500.0
#: a word no job's description, model, method or exception holds
NO_MATCH = "zzqxnomatch"
PLAIN_USERS = ("viewer", "quiet")
#: jobs generated in a database that has none
DEFAULT_ROWS = 1_000_000


@dataclass
class Figure:
    """One row of the report."""

    pass_: str
    name: str
    who: str
    median_ms: float | None
    max_ms: float | None
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        data = {"pass": self.pass_, **asdict(self)}
        del data["pass_"]
        if data["error"] is None:
            del data["error"]
        return data


def ensure_data(url: str, rows: int | None) -> None:
    """Run gen_jobs.py first when the database is missing or empty (then with ``rows``
    jobs, 1,000,000 by default), or, when ``rows`` is given, holds fewer than that."""
    try:
        with psycopg.connect(url, connect_timeout=5) as cnx:
            found = cnx.execute("SELECT count(*) FROM queue_job").fetchone()[0]  # type: ignore[index]
    except psycopg.Error:
        found = 0
    wanted = DEFAULT_ROWS if rows is None else rows
    if found == 0 or (rows is not None and found < rows * 0.99):
        script = Path(__file__).with_name("gen_jobs.py")
        command = [
            sys.executable,
            str(script),
            "--database",
            url,
            "--rows",
            str(wanted),
            "--recreate",
        ]
        subprocess.run(command, check=True)


# -- the data -------------------------------------------------------------------------------


def _one(cnx: psycopg.Connection, query: str, *params: object) -> object:
    row = cnx.execute(query, params).fetchone()
    return row[0] if row else None


def dataset(url: str) -> dict[str, object]:
    """What the pages and commands are pointed at: ids of jobs in each state, the plain
    users' own jobs, and the figures of the report's first line."""
    with psycopg.connect(url, autocommit=True) as cnx:
        data: dict[str, object] = {
            "server": _one(cnx, "SHOW server_version"),
            "max_id": _one(cnx, "SELECT max(id) FROM queue_job"),
        }
        for state in ("failed", "waiting", "pending"):
            data[f"{state}_id"] = _one(
                cnx, "SELECT id FROM queue_job WHERE state = %s ORDER BY id DESC LIMIT 1", state
            )
        for login in PLAIN_USERS:
            uid = _one(cnx, "SELECT id FROM res_users WHERE login = %s", login)
            if uid is None:
                raise SystemExit(f"no user {login!r}: make the database with bench/gen_jobs.py")
            data[f"{login}_uid"] = uid
            # one of their own jobs: the newest failed one (a traceback to show), else the newest
            data[f"{login}_job"] = _one(
                cnx,
                "SELECT id FROM queue_job WHERE user_id = %s"
                " ORDER BY state = 'failed' DESC, id DESC LIMIT 1",
                uid,
            )
            data[f"{login}_pending"] = _one(
                cnx,
                "SELECT count(*) FROM queue_job WHERE user_id = %s AND state = 'pending'",
                uid,
            )
    return data


def counts(url: str) -> tuple[int, int]:
    """Job rows and pending jobs."""
    with psycopg.connect(url, autocommit=True) as cnx:
        row = cnx.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'pending') FROM queue_job"
        ).fetchone()
    return int(row[0]), int(row[1])  # type: ignore[index]


def machine(url: str, server: object) -> str:
    rows, pending = counts(url)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()},"
        f" PostgreSQL {server}; {rows:,} job rows, {pending:,} pending;"
        f" load average {os.getloadavg()[0]:.2f}"
    )


# -- pages ------------------------------------------------------------------------------


def login(app, login: str) -> TestClient:
    client = TestClient(app, base_url="http://localhost")  # an allowed host
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    response = client.post("/login", data={"login": login, "password": login, "csrf_token": token})
    assert response.status_code == 200 and "Queue health" in response.text, "log-in failed"
    return client


def manager_pages(ids: dict[str, object]) -> list[tuple[str, str]]:
    """(name, path) of every page a manager opens with a GET."""
    mid = int(ids["max_id"]) // 2  # type: ignore[call-overload]
    failed, waiting = ids["failed_id"], ids["waiting_id"]
    return [
        ("baseline: /healthz", "/healthz"),
        ("overview (KPIs)", "/"),
        ("overview JSON (live refresh)", "/api/overview"),
        ("jobs: newest", "/jobs"),
        ("jobs: failed", "/jobs?state=failed"),
        ("jobs: pending", "/jobs?state=pending"),
        ("jobs: pending in exports", "/jobs?state=pending&channel=exports"),
        ("jobs: done within 1 h", "/jobs?state=done&finished=1h"),
        ("jobs: failed within 1 h", "/jobs?state=failed&finished=1h"),
        ("jobs: retry exhausted", "/jobs?exhausted=1"),
        ("jobs: aged pending", "/jobs?aged=1"),
        ("jobs: stuck", "/jobs?stuck=1"),
        ("jobs: of user viewer", f"/jobs?user_id={ids['viewer_uid']}"),
        ("jobs: search 'Push invoice'", "/jobs?q=Push+invoice"),
        (f"jobs: search '{NO_MATCH}' (no match)", f"/jobs?q={NO_MATCH}"),
        ("jobs: search '#4242' (id lookup)", "/jobs?q=%234242"),
        ("jobs: top failure type", "/jobs?state=failed&exc_name=TimeoutError&finished=24h"),
        ("jobs: model and method", "/jobs?model=res.partner&method=export"),
        ("jobs: page in the middle", f"/jobs?before={mid}"),
        ("jobs: page before, newer", f"/jobs?after={mid}"),
        ("jobs: live table fragment", "/jobs?partial=1"),
        ("job detail (failed)", f"/jobs/{failed}"),
        ("job detail (waiting, graph)", f"/jobs/{waiting}"),
        ("job JSON (live refresh)", f"/api/jobs/{failed}"),
        ("job graph JSON", f"/api/jobs/{waiting}/graph"),
        ("channels (limits, fair keys)", "/channels"),
        ("workers", "/workers"),
        ("periodic jobs", "/periodic"),
        ("alert rules", "/alerts"),
        ("charts 6 h", "/charts?range=6h"),
        ("charts 24 h", "/charts?range=24h"),
        ("charts 24 h, channel root", "/charts?range=24h&channel=root"),
        ("charts 7 d", "/charts?range=7d"),
        ("charts 30 d", "/charts?range=30d"),
        ("charts 1 y", "/charts?range=1y"),
        ("chart series JSON 24 h", "/api/series?range=24h"),
        ("/metrics", "/metrics"),
    ]


def plain_pages(own_job: object) -> list[tuple[str, str]]:
    """(name, path) of the pages a plain user opens: their jobs, and the shared pages."""
    return [
        ("overview (own jobs)", "/"),
        ("overview JSON (own jobs)", "/api/overview"),
        ("jobs: newest (own)", "/jobs"),
        ("jobs: failed (own)", "/jobs?state=failed"),
        ("jobs: pending (own)", "/jobs?state=pending"),
        ("jobs: done within 1 h (own)", "/jobs?state=done&finished=1h"),
        ("jobs: search 'Push invoice' (own)", "/jobs?q=Push+invoice"),
        (f"jobs: search '{NO_MATCH}' (own)", f"/jobs?q={NO_MATCH}"),
        ("jobs: live table fragment (own)", "/jobs?partial=1"),
        ("job detail (own job)", f"/jobs/{own_job}"),
        ("job JSON (own job)", f"/api/jobs/{own_job}"),
        ("channels", "/channels"),
        ("workers", "/workers"),
        ("periodic jobs", "/periodic"),
        ("charts 24 h", "/charts?range=24h"),
    ]


def uncovered_routes(app, paths: list[str]) -> list[str]:
    """The GET routes of ``app`` that none of ``paths`` (a manager's) opens."""
    bare = [path.split("?", 1)[0] for path in paths]
    missing = []
    for route in app.routes:
        if isinstance(route, Route) and "GET" in (route.methods or ()):
            if not any(route.path_regex.match(path) for path in bare):
                missing.append(route.path)
        elif isinstance(route, Mount) and not any(p.startswith(route.path + "/") for p in bare):
            missing.append(route.path + "/...")
    return missing


def timed(client: TestClient, path: str, repeat: int) -> tuple[float, float]:
    response = client.get(path, follow_redirects=False)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, follow_redirects=False)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")
    return statistics.median(times), max(times)


# -- commands -------------------------------------------------------------------------------


def cli_commands(ids: dict[str, object]) -> list[tuple[str, list[str]]]:
    """(name, arguments) of the read commands of ``job-worker``, without ``-d URL``
    (added when they run); the first is the baseline, ``--help``: start-up with no
    database."""
    mid = str(int(ids["max_id"]) // 2)  # type: ignore[call-overload]
    commands = [
        ["jobs", "list"],
        ["jobs", "list", "--state", "failed"],
        ["jobs", "list", "--state", "pending", "--channel", "exports"],
        ["jobs", "list", "--user", "viewer"],
        ["jobs", "list", "--user", "quiet", "--state", "pending"],
        ["jobs", "list", "--before", mid],
        ["jobs", "list", "-q", "Push invoice"],
        ["jobs", "list", "-q", NO_MATCH],
        ["jobs", "list", "-q", "#4242"],
        ["jobs", "list", "--finished", "1h"],
        ["jobs", "list", "--exhausted"],
        ["jobs", "list", "--aged"],
        ["jobs", "list", "--json"],
        ["stats"],
        ["stats", "--json"],
        ["limits", "list"],
        ["limits", "fair", "root"],
        ["cron", "list"],
        ["config", "list"],
        ["config", "get", "default_limit"],
        ["users", "list"],
    ]
    jobs = [
        ("show", "failed", "with its traceback"),
        ("show", "waiting", "with its dependency"),
        ("explain", "pending", ""),
    ]
    named = [("baseline: --help (no database)", ["--help"])]
    named += [(shlex.join(args), args) for args in commands[:13]]
    for command, state, what in jobs:
        args = ["jobs", command, str(ids[f"{state}_id"])]
        named.append((f"{shlex.join(args)} ({', '.join(filter(None, [state, what]))})", args))
    named += [(shlex.join(args), args) for args in commands[13:]]
    return named


def run_command(url: str, args: list[str], repeat: int) -> tuple[float, float]:
    """Median and slowest of ``repeat`` whole-process runs, after one to warm up."""
    command = [sys.executable, "-m", "job_worker", *args]
    if args != ["--help"]:
        command += ["-d", url]
    times = []
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        took = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"exit {done.returncode}: {last}")
        if attempt:
            times.append(took)
    return statistics.median(times), max(times)


def measure_commands(
    pass_name: str, url: str, commands: list[tuple[str, list[str]]], repeat: int
) -> list[Figure]:
    figures = []
    for name, args in commands:
        try:
            median, slowest = run_command(url, args, repeat)
            figure = Figure(pass_name, name, "cli", round(median, 1), round(slowest, 1))
        except Exception as exc:
            figure = Figure(pass_name, name, "cli", None, None, str(exc))
        row(figure)
        figures.append(figure)
    return figures


# -- the worker --------------------------------------------------------------------------------

#: the channel of the jobs the worker drains during the second pass
DRAIN_CHANNEL = "drain"
#: no-op jobs a worker can run (``res.partner.exists()`` on no records), in one statement
DRAIN_INSERT = """
INSERT INTO queue_job (uuid, name, model_name, method_name, record_ids, args, kwargs, state, priority,
    channel, scheduled_at, max_retries, attempts, timeout, user_id, company_id, context,
    create_date, write_date, fair_key, weight, backoffs)
SELECT gen_random_uuid()::text, 'Drain no-op #' || g, 'res.partner', 'exists', '[]'::jsonb,
    '[]'::jsonb, '{}'::jsonb, 'pending', 10, %(channel)s, now() at time zone 'utc', 5, 0, 0,
    1, 1, '{}'::jsonb, now() at time zone 'utc', now() at time zone 'utc', '', 1, 0
FROM generate_series(1, %(count)s) AS g
"""


def drained(url: str) -> tuple[int, int]:
    """Jobs of the drain channel done, and still pending."""
    with psycopg.connect(url, autocommit=True) as cnx:
        row = cnx.execute(
            "SELECT count(*) FILTER (WHERE state = 'done'),"
            " count(*) FILTER (WHERE state = 'pending') FROM queue_job WHERE channel = %s",
            (DRAIN_CHANNEL,),
        ).fetchone()
    return int(row[0]), int(row[1])  # type: ignore[index]


def job_worker(url: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "job_worker", *args, "-d", url], check=True, capture_output=True
    )


def enqueue_drain(url: str, count: int, limit: int) -> None:
    """``count`` pending no-op jobs in the drain channel, which runs ``limit`` at once."""
    with psycopg.connect(url, autocommit=True) as cnx:
        cnx.execute(DRAIN_INSERT, {"channel": DRAIN_CHANNEL, "count": count})
        cnx.execute("ANALYZE queue_job")
    job_worker(url, "limits", "set", DRAIN_CHANNEL, str(limit))


def compile_package() -> None:
    """Byte-compile job_worker, as installing it does: run from a checkout with
    PYTHONDONTWRITEBYTECODE set, every command would compile its modules again."""
    import compileall

    import job_worker

    compileall.compile_dir(Path(job_worker.__file__).parent, quiet=1)


def vacuum(url: str) -> str:
    """VACUUM ANALYZE the jobs table (what an earlier run or a drain left dead goes, the
    statistics are fresh); the server's autovacuum setting."""
    with psycopg.connect(url, autocommit=True) as cnx:
        cnx.execute("VACUUM ANALYZE queue_job")
        return str(cnx.execute("SHOW autovacuum").fetchone()[0])  # type: ignore[index]


def remove_drain(url: str) -> None:
    """Delete the drain channel's jobs and limit, and vacuum: the dataset as gen_jobs.py
    made it (a server without autovacuum would keep their dead rows in the indexes,
    which slows the next drain's claims and the pages)."""
    with psycopg.connect(url, autocommit=True) as cnx:
        found = cnx.execute("DELETE FROM queue_job WHERE channel = %s", (DRAIN_CHANNEL,)).rowcount
        cnx.execute("DELETE FROM queue_limit WHERE name = %s", (DRAIN_CHANNEL,))
        if found:
            cnx.execute("VACUUM ANALYZE queue_job")


def start_worker(url: str, concurrency: int, log: Any) -> subprocess.Popen:
    """A worker that takes the drain channel's jobs only (the dataset's stay as they are)."""
    command = [sys.executable, "-m", "job_worker", "worker", "-d", url]
    command += ["--channel", DRAIN_CHANNEL, "--concurrency", str(concurrency)]
    command += ["--log-level", "warning"]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def wait_draining(url: str, process: subprocess.Popen, log: Any, timeout: float = 120) -> None:
    """Return once the worker has finished a first drain job."""
    deadline = time.monotonic() + timeout
    while drained(url)[0] == 0:
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            tail = "".join(log.read().splitlines(keepends=True)[-20:])
            why = f"exited with {process.returncode}" if process.poll() is not None else "is idle"
            raise SystemExit(f"the worker {why} before finishing a job:\n{tail}")
        time.sleep(0.2)


def stop_worker(process: subprocess.Popen) -> None:
    """SIGTERM to the worker (by its PID), and wait for it to finish."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            print(f"worker {process.pid} still running 120 s after SIGTERM: SIGKILL")
            process.kill()
            process.wait()


# -- the report ---------------------------------------------------------------------------

NAME_WIDTH = 52


def header() -> None:
    print(f"  {'page or command':<{NAME_WIDTH}} {'who':<9} {'median ms':>10} {'max ms':>9}")


def row(figure: Figure) -> None:
    if figure.error:
        print(f"  {figure.name:<{NAME_WIDTH}} {figure.who:<9} {'ERROR':>10} {figure.error}")
    else:
        mark = "!" if figure.median_ms is not None and figure.median_ms > SLOW_MS else " "
        print(
            f"{mark} {figure.name:<{NAME_WIDTH}} {figure.who:<9}"
            f" {figure.median_ms:>10.1f} {figure.max_ms:>9.1f}",
            flush=True,
        )


def measure_pages(
    pass_name: str,
    pages: list[tuple[str, str, str]],
    clients: dict[str, TestClient],
    repeat: int,
) -> list[Figure]:
    """Time ``pages`` (name, who, path); a page that does not answer 200 is an error row."""
    figures = []
    for name, who, path in pages:
        try:
            median, slowest = timed(clients[who], path, repeat)
            figure = Figure(pass_name, name, who, round(median, 1), round(slowest, 1))
        except Exception as exc:
            figure = Figure(pass_name, name, who, None, None, f"{path}: {exc}")
        row(figure)
        figures.append(figure)
    return figures


def measure_pass(
    pass_name: str,
    args: argparse.Namespace,
    pages: list[tuple[str, str, str]],
    clients: dict[str, TestClient],
    commands: list[tuple[str, list[str]]],
) -> list[Figure]:
    """One table: every page, then every command."""
    print(f"\n{pass_name}: pages, median and slowest of {args.repeat} requests after one;")
    print(
        f"commands (python -m job_worker ... -d URL, whole process), of {args.cli_repeat}"
        " runs after one"
    )
    header()
    figures = measure_pages(pass_name, pages, clients, args.repeat)
    figures += measure_commands(pass_name, args.database, commands, args.cli_repeat)
    return figures


def with_worker(
    args: argparse.Namespace,
    pages: list[tuple[str, str, str]],
    clients: dict[str, TestClient],
    commands: list[tuple[str, list[str]]],
) -> list[Figure]:
    """The second pass, while a worker drains ``--drain-jobs`` no-op jobs."""
    url = args.database
    remove_drain(url)  # what an interrupted run may have left
    began = time.perf_counter()
    enqueue_drain(url, args.drain_jobs, args.drain_limit)
    print(
        f"\n{args.drain_jobs:,} no-op jobs enqueued in channel {DRAIN_CHANNEL!r} (limit"
        f" {args.drain_limit}) in {time.perf_counter() - began:.1f} s; a worker"
        f" (--concurrency {args.worker_concurrency}, --channel {DRAIN_CHANNEL}) drains them"
    )
    with tempfile.TemporaryFile("w+") as log:
        process = start_worker(url, args.worker_concurrency, log)
        try:
            wait_draining(url, process, log)
            rows, pending = counts(url)
            before = drained(url)[0]
            started = time.perf_counter()
            print(f"{rows:,} job rows, {pending:,} pending; worker PID {process.pid}")
            figures = measure_pass("with worker", args, pages, clients, commands)
            took = time.perf_counter() - started
            after, left = drained(url)
            alive = process.poll() is None
        finally:
            stop_worker(process)
            remove_drain(url)
        print(
            f"the worker finished {after - before:,} jobs during this pass ({took:.0f} s,"
            f" {(after - before) / took:,.0f} jobs/s); {left:,} left pending;"
            f" {'running' if alive else 'EXITED'} until stopped (exit {process.returncode});"
            f" the drain jobs and limit are deleted"
        )
        if not alive:
            log.seek(0)
            print(log.read()[-2000:])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database",
        default="postgresql://127.0.0.1:5432/job_worker_bench",
        help="PostgreSQL URL of the database gen_jobs.py made (%(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=7, help="requests per page (7)")
    parser.add_argument(
        "--cli-repeat", type=int, default=5, help="whole-process runs per command (5)"
    )
    parser.add_argument(
        "--rows",
        type=int,
        help="make the database again with this many jobs when it holds fewer"
        f" (default: use it as it is; {DEFAULT_ROWS:,} jobs when it has none)",
    )
    worker = parser.add_mutually_exclusive_group()
    worker.add_argument(
        "--with-worker",
        dest="worker",
        action="store_true",
        default=True,
        help="measure everything again while a worker drains jobs (the default)",
    )
    worker.add_argument(
        "--no-worker", dest="worker", action="store_false", help="the first pass only"
    )
    parser.add_argument(
        "--drain-jobs",
        type=int,
        default=200_000,
        help="no-op jobs enqueued for the worker (200,000)",
    )
    parser.add_argument(
        "--worker-concurrency", type=int, default=2, help="the worker's executors (2)"
    )
    parser.add_argument(
        "--drain-limit", type=int, default=16, help="the drain channel's limit (16)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = parser.parse_args()
    ensure_data(args.database, args.rows)
    compile_package()
    autovacuum = vacuum(args.database)
    ids = dataset(args.database)
    registry = Registry(args.database)
    app = create_app(registry, Settings())
    clients = {"manager": login(app, "bench")}
    clients.update({name: login(app, name) for name in PLAIN_USERS})
    clients["anonymous"] = TestClient(app, base_url="http://localhost")
    pages = [(name, "manager", path) for name, path in manager_pages(ids)]
    pages += [
        ("log-in form", "anonymous", "/login"),
        ("static: app.css", "anonymous", "/static/app.css"),
    ]
    for who in PLAIN_USERS:
        pages += [(name, who, path) for name, path in plain_pages(ids[f"{who}_job"])]
    commands = cli_commands(ids)
    missing = uncovered_routes(
        app, [path for _n, who, path in pages if who in ("manager", "anonymous")]
    )
    print(machine(args.database, ids["server"]))
    print(
        f"autovacuum {autovacuum} on the server; the jobs table was vacuumed and analyzed"
        " before the first pass, as autovacuum would have done"
    )
    print(
        "plain users: "
        + "; ".join(f"{who} owns {ids[f'{who}_pending']:,} pending jobs" for who in PLAIN_USERS)
        + f"; /alerts answers them HTTP {clients['viewer'].get('/alerts').status_code}"
        " (managers only), not timed"
    )
    if missing:
        print(f"GET routes not timed: {', '.join(missing)}")
    try:
        figures = measure_pass("plain", args, pages, clients, commands)
        if args.worker:
            figures += with_worker(args, pages, clients, commands)
    finally:
        registry.close()
    if args.json:
        Path(args.json).write_text(json.dumps([f.as_json() for f in figures], indent=1) + "\n")
    errors = [f for f in figures if f.error]
    if errors:
        print(f"\n{len(errors)} error(s):")
        for figure in errors:
            print(f"  {figure.pass_} / {figure.who} / {figure.name}: {figure.error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
