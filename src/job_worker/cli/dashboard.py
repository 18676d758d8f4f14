"""``job-worker dashboard``: the web dashboard and ``/metrics``."""

from __future__ import annotations

import ipaddress

import click

from ..orm import SUPERUSER_ID, Environment
from .config import moved_option
from .main import database_options, fail, open_registry

MIN_SECRET = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@database_options()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback needs --secret.",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--secret",
    envvar="JOB_WORKER_DASHBOARD_SECRET",
    help="Key signing the session cookies (at least 16 characters); required off loopback."
    " Without it a random key is made at start (sessions end with the process).",
)
@moved_option("--default-limit", "default_limit")
@moved_option("--stale-seconds", "stale_seconds")
def dashboard(
    database: str,
    load: list[str],
    host: str,
    port: int,
    secret: str | None,
) -> None:
    """Serve the dashboard (log in with a user made by `job-worker users add`)."""
    if secret is not None and len(secret) < MIN_SECRET:
        raise click.BadParameter(
            f"the secret must have at least {MIN_SECRET} characters", param_hint="--secret"
        )
    if not is_loopback(host) and not secret:
        fail(
            f"refusing to listen on {host} without a configured secret: pass --secret or set"
            " JOB_WORKER_DASHBOARD_SECRET (and put TLS in front of it)",
            code=2,
        )
    import uvicorn

    from ..web import Settings, create_app

    with open_registry(database, load) as registry:
        with registry.cursor(readonly=True) as cr:
            env = Environment(cr, SUPERUSER_ID, {})
            groups = env["res.groups"].search([("key", "like", "queue_job.%")])
            nobody = not any(
                user.active for user in env["res.users"].search([]) if user.group_ids & groups
            )
        settings = Settings()
        if secret:
            settings.secret = secret
        app = create_app(registry, settings)
        click.echo(f"job_worker dashboard: http://{host}:{port}/  (metrics at /metrics)")
        if nobody:
            click.echo(
                "No user can log in yet: job-worker users add LOGIN --role manager", err=True
            )
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
