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
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    envvar="JOB_WORKER_DASHBOARD_ALLOWED_HOSTS",
    help="A name the dashboard is reached by (repeatable; '*.example.com' its subdomains,"
    " '*' any). Other Host headers get 400 (DNS rebinding). Default: 127.0.0.1, localhost,"
    " ::1 and --host; required off loopback.",
)
@click.option(
    "--https",
    is_flag=True,
    envvar="JOB_WORKER_DASHBOARD_HTTPS",
    help="The dashboard is reached over HTTPS (TLS in front of it): the session cookie is"
    " always Secure.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="Address of a reverse proxy whose X-Forwarded-For and X-Forwarded-Proto are believed"
    " (repeatable): the client address for log-in throttling, and https for a Secure cookie.",
)
@click.option(
    "--session-hours",
    default=12.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Absolute lifetime of a dashboard session, from log-in.",
)
@moved_option("--stale-seconds", "stale_seconds")
def dashboard(
    database: str,
    load: list[str],
    host: str,
    port: int,
    secret: str | None,
    allowed_hosts: tuple[str, ...],
    https: bool,
    trusted_proxies: tuple[str, ...],
    session_hours: float,
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
    from ..web import Settings, create_app
    from ..web.app import LOOPBACK_HOSTS

    hosts = tuple(name for value in allowed_hosts for name in value.split() if name)
    if not hosts:
        if not is_loopback(host) and host not in ("0.0.0.0", "::"):
            hosts = (*LOOPBACK_HOSTS, host)
        elif is_loopback(host):
            hosts = LOOPBACK_HOSTS
        else:
            fail(
                f"listening on {host} needs --allowed-host NAME (the names the dashboard is"
                " reached by) or JOB_WORKER_DASHBOARD_ALLOWED_HOSTS",
                code=2,
            )
    import uvicorn

    with open_registry(database, load, pooled=True) as registry:
        with registry.cursor(readonly=True) as cr:
            tables = registry.backend.existing_tables(cr)
            missing = [t for t in ("res_users_session", "queue_config") if t not in tables]
            if missing:
                fail(
                    f"the schema of {database} is older than this job-worker (no table"
                    f" {', '.join(missing)}): run `job-worker init` to upgrade it"
                )
            env = Environment(cr, SUPERUSER_ID, {})
            groups = env["res.groups"].search([("key", "like", "queue_job.%")])
            nobody = not any(
                user.active for user in env["res.users"].search([]) if user.group_ids & groups
            )
        settings = Settings(
            session_hours=session_hours,
            https=https,
            trusted_proxies=trusted_proxies,
            allowed_hosts=hosts,
        )
        if secret:
            settings.secret = secret
        app = create_app(registry, settings)
        click.echo(f"job_worker dashboard: http://{host}:{port}/  (metrics at /metrics)")
        if nobody:
            click.echo(
                "No user can log in yet: job-worker users add LOGIN --role manager", err=True
            )
        # forwarded headers are read by the application, from --trusted-proxy only
        uvicorn.run(
            app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False
        )
