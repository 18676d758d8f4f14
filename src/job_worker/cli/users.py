"""``job-worker users add|list``: people who may log in to the dashboard."""

from __future__ import annotations

import click

from ..orm import SUPERUSER_ID, Environment
from ..queue import GROUPS
from .main import database_options, fail, open_registry
from .output import TEXT, Output, json_option

ROLES = {"user": "queue_job.group_user", "manager": "queue_job.group_manager"}


@click.group()
def users() -> None:
    """Dashboard users and their roles."""


@users.command()
@database_options()
@click.argument("login", type=TEXT)
@click.option("--name", help="Display name (default: the login).")
@click.option(
    "--role",
    type=click.Choice(sorted(ROLES)),
    default="user",
    show_default=True,
    help="user: sees their own jobs; manager: all jobs, limits and alert rules.",
)
@click.option("--password", envvar="JOB_WORKER_PASSWORD", help="Prompted for when not given.")
@json_option
def add(
    database: str,
    load: list[str],
    login: str,
    name: str | None,
    role: str,
    password: str | None,
    as_json: bool,
) -> None:
    """Create a user who can log in to the dashboard with LOGIN."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.BadParameter("the password cannot be empty", param_hint="--password")
    with open_registry(database, load) as registry, registry.cursor() as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        if env["res.users"].search([("login", "=", login)], limit=1):
            fail(f"a user with login {login!r} exists already")
        keys = [ROLES["user"], ROLES["manager"]] if role == "manager" else [ROLES["user"]]
        groups = env["res.groups"].search([("key", "in", keys)])
        user = env["res.users"].create(
            {
                "name": name or login,
                "login": login,
                "password": password,
                "group_ids": [(6, 0, groups.ids)],
            }
        )
        user_id = user.id
    out = Output(as_json)
    if as_json:
        out.json({"id": user_id, "login": login, "role": role})
    else:
        out.say(f"user {login} (id {user_id}) created with role {role}", "green")


@users.command("list")
@database_options()
@json_option
def list_(database: str, load: list[str], as_json: bool) -> None:
    """Users with a dashboard role."""
    names = dict(GROUPS)
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        rows = []
        for user in env["res.users"].search([]):
            keys = user.group_ids.mapped("key")
            if not set(keys) & set(ROLES.values()):
                continue
            role = "manager" if ROLES["manager"] in keys else "user"
            rows.append(
                {
                    "id": user.id,
                    "login": user.login,
                    "name": user.name,
                    "role": role,
                    "active": user.active,
                    "groups": ", ".join(names.get(k, k) for k in keys),
                }
            )
    Output(as_json).table(rows, ("id", "login", "name", "role", "active", "groups"))
