"""``job-worker users add|list|passwd|disable|enable|delete``: people who may log in
to the dashboard."""

from __future__ import annotations

from typing import Any

import click

from ..base.models import check_password_policy
from ..orm import SUPERUSER_ID, Environment
from ..queue import GROUPS
from .main import database_options, fail, open_registry
from .output import TEXT, Output, json_option

ROLES = {"user": "queue_job.group_user", "manager": "queue_job.group_manager"}

password_option = click.option(
    "--password",
    envvar="JOB_WORKER_PASSWORD",
    help="At least 8 characters; prompted for when not given.",
)


@click.group()
def users() -> None:
    """Dashboard users and their roles."""


def _checked_login(login: str) -> str:
    if not login.strip():
        raise click.BadParameter("the login cannot be empty", param_hint="LOGIN")
    if login != login.strip():
        raise click.BadParameter(
            f"the login cannot start or end with spaces, got {login!r}", param_hint="LOGIN"
        )
    return login


def _new_password(password: str | None) -> str:
    """The password given or prompted for, checked against the password rules."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return check_password_policy(password)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--password") from None


def _user(env: Environment, login: str) -> Any:
    user = env["res.users"].search([("login", "=", login)])
    if not user:
        fail(f"no user with login {login!r}")
    return user


def _exists(database: str, load: list[str], login: str) -> bool:
    with open_registry(database, load) as registry, registry.cursor(readonly=True) as cr:
        env = Environment(cr, SUPERUSER_ID, {})
        return bool(env["res.users"].search([("login", "=", login)], limit=1))


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
@password_option
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
    _checked_login(login)
    # say that the login is taken before asking for a password
    if _exists(database, load, login):
        fail(f"a user with login {login!r} exists already")
    password = _new_password(password)
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


@users.command()
@database_options()
@click.argument("login")
@password_option
def passwd(database: str, load: list[str], login: str, password: str | None) -> None:
    """Set LOGIN's password; this ends the user's dashboard sessions."""
    if not _exists(database, load, login):
        fail(f"no user with login {login!r}")
    password = _new_password(password)
    with open_registry(database, load) as registry, registry.cursor() as cr:
        _user(Environment(cr, SUPERUSER_ID, {}), login).set_password(password)
    Output(False).say(f"password of {login} changed; their dashboard sessions ended", "green")


def _set_active(database: str, load: list[str], login: str, active: bool) -> None:
    with open_registry(database, load) as registry, registry.cursor() as cr:
        _user(Environment(cr, SUPERUSER_ID, {}), login).write({"active": active})


@users.command()
@database_options()
@click.argument("login")
def disable(database: str, load: list[str], login: str) -> None:
    """Stop LOGIN from logging in, and end their dashboard sessions (their jobs stay)."""
    _set_active(database, load, login, False)
    Output(False).say(f"user {login} disabled; their dashboard sessions ended", "green")


@users.command()
@database_options()
@click.argument("login")
def enable(database: str, load: list[str], login: str) -> None:
    """Let a disabled LOGIN log in again."""
    _set_active(database, load, login, True)
    Output(False).say(f"user {login} enabled", "green")


@users.command()
@database_options()
@click.argument("login")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(database: str, load: list[str], login: str, yes: bool) -> None:
    """Delete LOGIN (their jobs stay, without a user); `disable` keeps the user."""
    with open_registry(database, load) as registry, registry.cursor() as cr:
        user = _user(Environment(cr, SUPERUSER_ID, {}), login)
        if not yes:
            click.confirm(f"Delete user {login} (id {user.id})?", abort=True)
        user.unlink()
    Output(False).say(f"user {login} deleted", "green")


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
