"""``job-worker demo``: a small CRM that enqueues realistic work, and workers that run it.

On a fresh SQLite file (``./job_worker_demo.db`` unless ``--database`` says
otherwise) it creates partners and exports, enqueues plain jobs, priorities,
a scheduled job, deduplicated jobs, a flaky job that retries, a failing job,
a chain, a group with a callback and a split, starts a real ``job-worker
worker`` process, shows live progress per channel, stops the worker and
prints a summary read back from the database. On a database it created, it
also makes a dashboard manager ``admin`` with a password generated for the run,
and prints it; never on a database that existed before.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..db import redact_url
from ..orm import SUPERUSER_ID, Environment
from ..queue.lifecycle import ALL, TERMINAL
from ..registry import Registry
from .main import database_options

DEFAULT_URL = "sqlite:///job_worker_demo.db"
DEMO_MODULE = "job_worker.demo"
#: jobs of the demo's periodic job done before the demo ends
PERIODIC_RUNS = 3

PARTNERS = [
    ("Azure Interior", "gold"),
    ("Deco Addict", "standard"),
    ("Gemini Furniture", "gold"),
    ("Lumber Inc", "standard"),
    ("Ready Mat", "standard"),
    ("Wood Corner", "gold"),
]


def _fresh_sqlite(url: str, console: Console) -> None:
    """The default demo file starts anew at every run."""
    path = Path(url[len("sqlite:///") :])
    existed = False
    for suffix in ("", "-wal", "-shm"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            candidate.unlink()
            existed = True
    if existed:
        console.print(f"[dim]Removed the previous demo database {path}[/dim]")


def _make_admin(env: Environment) -> str:
    """A manager ``admin`` with a password made for this run; returns the password."""
    password = secrets.token_urlsafe(9)  # 12 characters
    manager = env["res.groups"].search([("key", "=", "queue_job.group_manager")])
    user = env["res.groups"].search([("key", "=", "queue_job.group_user")])
    env["res.users"].create(
        {
            "name": "Demo admin",
            "login": "admin",
            "password": password,
            "group_ids": [(6, 0, (manager | user).ids)],
        }
    )
    return password


def _open_demo_database(database: str, load: list[str]) -> tuple[Registry, bool]:
    """The registry of ``database`` with its schema up to date, and whether the
    demo created that schema (only then does it make its own admin)."""
    from ..orm.schema import upgrade

    registry = Registry(database, load, init=False)
    try:
        with registry.cursor(readonly=True) as cr:
            created = "res_users" not in registry.backend.existing_tables(cr)
        upgrade(registry)
    except BaseException:
        registry.close()
        raise
    return registry, created


def enqueue_demo_work(env: Environment) -> dict[str, Any]:
    """Create the CRM records and enqueue the demo's jobs; return what was made."""
    from ..delay import chain, group
    from ..job import identity_exact

    env["queue.limit"].set_limit("emails", 3)
    env["queue.limit"].set_limit("exports", 2)
    env["queue.limit"].set_limit("billing", 1, rate_limit=5)
    partners = env["res.partner"].create(
        [
            {"name": name, "tier": tier, "email": f"{name.split()[0].lower()}@example.com"}
            for name, tier in PARTNERS
        ]
    )
    # plain jobs, gold customers first
    for partner in partners:
        priority = 5 if partner.tier == "gold" else 10
        partner.with_delay(
            channel="emails", priority=priority, description=f"Reminder to {partner.name}"
        ).send_reminder()
    # a scheduled job: not before 3 seconds from now
    partners[0].with_delay(
        channel="emails", eta=3, description="Follow-up call (scheduled)"
    ).send_reminder()
    # deduplicated: the second and third enqueue return the first job
    for _ in range(3):
        partners[1].with_delay(
            channel="root",
            identity_key=identity_exact,
            description="Sync Deco Addict (deduplicated)",
        ).sync_to_crm()
    # a flaky job that succeeds on its second attempt, and one that fails for good
    partners[2].with_delay(channel="billing", description="Push invoice (flaky)").push_invoice(
        1250.0
    )
    partners[3].with_delay(
        channel="billing", max_retries=2, description="Charge card (declined)"
    ).charge_card(99.9)
    # a chain: build the export, then send it
    export = env["demo.export"].create({"name": "Nightly export", "partner_ids": partners.ids})
    chain(
        export.delayable(channel="exports", description="Build nightly export").build(),
        export.delayable(channel="exports", description="Send nightly export").send(),
    ).delay()
    # a group with a callback: three syncs, then a notification
    syncs = [
        p.delayable(channel="root", description=f"Sync {p.name}").sync_to_crm()
        for p in partners[3:]
    ]
    group(*syncs).on_done(
        export.delayable(channel="root", description="Notify: syncs complete").notify_done()
    ).delay()
    # a split: one job per two partners
    partners.delayable(channel="exports", description="Sync partners").sync_to_crm().split(
        2
    ).delay()
    return {"partners": len(partners)}


def _channel_counts(registry: Registry) -> dict[str, dict[str, int]]:
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT channel, state, COUNT(*) FROM queue_job GROUP BY channel, state")
        counts: dict[str, dict[str, int]] = {}
        for channel, state, count in cr.fetchall():
            counts.setdefault(channel, {})[state] = count
    return counts


def _start_worker(database: str, load: list[str]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "job_worker",
        "worker",
        "--concurrency",
        "3",
        "--poll-interval",
        "0.2",
        "--grace",
        "5",
        "--log-level",
        "error",
    ]
    for module in load:
        command += ["--load", module]
    # the URL goes in the environment: a command line, password and all, is public (ps)
    environ = {**os.environ, "JOB_WORKER_DATABASE_URL": database}
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, env=environ)


def _periodic_done(registry: Registry) -> int:
    with registry.cursor(readonly=True) as cr:
        cr.execute("SELECT COUNT(*) FROM queue_job WHERE cron_id IS NOT NULL AND state = 'done'")
        return cr.fetchall()[0][0]


def _pause_periodic(registry: Registry) -> None:
    """The worker stops next: no occurrence falls meanwhile (a redeploy does not
    resume it; ``job-worker cron resume`` does)."""
    with registry.cursor() as cr:
        crons = Environment(cr, SUPERUSER_ID, {})["queue.cron"].search([("active", "=", True)])
        crons.edit({"active": False})


def _show_progress(
    registry: Registry, console: Console, timeout: float, periodic_runs: int = 0
) -> bool:
    """Live progress per channel until every job is final (and, with ``periodic_runs``,
    that many jobs of periodic jobs are done); False on timeout."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, Any] = {}
        while True:
            counts = _channel_counts(registry)
            for channel in sorted(counts):
                states = counts[channel]
                total = sum(states.values())
                finished = sum(states.get(s, 0) for s in TERMINAL)
                detail = " ".join(f"{s} {n}" for s, n in sorted(states.items()))
                if channel not in tasks:
                    tasks[channel] = progress.add_task(channel, total=total, detail=detail)
                progress.update(tasks[channel], total=total, completed=finished, detail=detail)
            if all(
                sum(v for s, v in st.items() if s in TERMINAL) == sum(st.values())
                for st in counts.values()
            ) and (not periodic_runs or _periodic_done(registry) >= periodic_runs):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def _summary(registry: Registry, console: Console) -> dict[str, int]:
    counts = _channel_counts(registry)
    table = Table(title="Jobs by channel and state (read from the database)")
    states = ALL
    table.add_column("channel")
    for state in states:
        table.add_column(state, justify="right")
    totals: dict[str, int] = dict.fromkeys(states, 0)
    for channel in sorted(counts):
        row = [counts[channel].get(s, 0) for s in states]
        for state, n in zip(states, row, strict=True):
            totals[state] += n
        table.add_row(channel, *map(str, row))
    table.add_row("[bold]all[/bold]", *(f"[bold]{totals[s]}[/bold]" for s in states))
    console.print(table)
    with registry.cursor(readonly=True) as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        flaky = env["queue.job"].search([("method_name", "=", "push_invoice")])
        declined = env["queue.job"].search([("method_name", "=", "charge_card")])
        console.print(
            f"Flaky invoice push: [green]{flaky.state}[/green] after {flaky.attempts} failed attempt(s)."
        )
        console.print(f"Card charge: [red]{declined.state}[/red] — {declined.exc_message}")
        for cron in env["queue.cron"].search([]):
            console.print(
                f"Periodic job {cron.name}: {cron.enqueued_count} run(s), one per occurrence;"
                f" paused now (job-worker cron resume {cron.id} -d ... restarts it)."
            )
        sent = sum(env["res.partner"].search([]).mapped("reminders_sent"))
        console.print(
            f"Reminders sent: {sent}; nightly export: {env['demo.export'].search([]).state}."
        )
    return totals


@click.command()
@database_options(default_url=DEFAULT_URL)
@click.option(
    "--timeout",
    default=50.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds to wait for the jobs before giving up.",
)
def demo(database: str, load: list[str], timeout: float) -> None:
    """Enqueue a small CRM's jobs, run them with a real worker, show the outcome."""
    console = Console()
    if database == DEFAULT_URL:
        _fresh_sqlite(database, console)
    load = [DEMO_MODULE, *[m for m in load if m != DEMO_MODULE]]
    registry, created = _open_demo_database(database, load)
    worker: subprocess.Popen | None = None
    password = None
    try:
        with registry.cursor() as cr:
            env = Environment(cr, SUPERUSER_ID, {})
            enqueue_demo_work(env)
            if created:
                # never on a database that existed before: no known password there
                password = _make_admin(env)
        counts = _channel_counts(registry)
        console.print(
            f"Enqueued {sum(sum(s.values()) for s in counts.values())} jobs in "
            f"{len(counts)} channels on {redact_url(database)}; starting a worker (3 processes)."
        )
        worker = _start_worker(database, load)
        finished = _show_progress(registry, console, timeout, periodic_runs=PERIODIC_RUNS)
        _pause_periodic(registry)
        finished = _show_progress(registry, console, timeout) and finished
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
        worker = None
        _summary(registry, console)
        if not finished:
            console.print(f"[red]Some jobs were not finished after {timeout:.0f} s.[/red]")
        load_args = " ".join(f"-l {m}" for m in load)
        login = (
            f"login [bold]admin[/bold], password [bold]{password}[/bold]"
            if password
            else "log in as a manager of this database (job-worker users add LOGIN --role manager)"
        )
        console.print(
            f"\nOpen the dashboard: [bold]job-worker dashboard -d {redact_url(database)} {load_args}[/bold] "
            f"then http://127.0.0.1:8080/ ({login})",
            soft_wrap=True,
        )
        if not finished:
            raise SystemExit(1)
    finally:
        if worker is not None and worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
        registry.close()
