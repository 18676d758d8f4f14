"""Log-in with res.users, roles, and CSRF tokens.

- The session (a cookie signed with the dashboard's secret, ``SameSite=Strict``)
  holds the user id and a random CSRF token.
- Roles are res.groups: *Queue Job User* (``queue_job.group_user``) sees their
  own jobs and reads the rest of the dashboard; *Queue Job Manager*
  (``queue_job.group_manager``) sees every job and may act on jobs, limits and
  alert rules. A user with neither group cannot log in.
- Every POST carries the session's CSRF token, as the ``csrf_token`` form
  field or the ``X-CSRF-Token`` header; a POST without it is refused (403).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..orm.api import Environment

GROUP_USER = "queue_job.group_user"
GROUP_MANAGER = "queue_job.group_manager"


@dataclass(frozen=True)
class User:
    """The logged-in person, as the dashboard needs them."""

    id: int
    login: str
    name: str
    manager: bool

    @property
    def role(self) -> str:
        return "Queue Job Manager" if self.manager else "Queue Job User"

    @property
    def only_user_id(self) -> int | None:
        """The user whose jobs this person may see (None: every job)."""
        return None if self.manager else self.id


def load_user(env: Environment, uid: int | None) -> User | None:
    """The active user ``uid`` with a dashboard role, or None."""
    if not uid:
        return None
    user = env["res.users"].browse(uid).exists()
    if not user or not user.active:
        return None
    keys = set(user.group_ids.mapped("key"))
    if not keys & {GROUP_USER, GROUP_MANAGER}:
        return None
    return User(user.id, user.login, user.name, GROUP_MANAGER in keys)


def authenticate(env: Environment, login: str, password: str) -> tuple[User | None, str]:
    """(user, "") when ``login``/``password`` match an active user with a role,
    else (None, why) with a message that does not tell which part was wrong."""
    refused = "wrong login or password"
    if not login or not password:
        return None, refused
    user = env["res.users"].search([("login", "=", login)], limit=1)
    if not user or not user.active or not user.check_password(password):
        return None, refused
    found = load_user(env, user.id)
    if found is None:
        return None, "this user has no dashboard role (Queue Job User or Queue Job Manager)"
    return found, ""


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, form: Any) -> None:
    """Refuse (403) a POST whose token is missing or not the session's."""
    expected = request.session.get("csrf")
    given = request.headers.get("x-csrf-token") or (
        form.get("csrf_token") if form is not None else None
    )
    if not expected or not isinstance(given, str) or not hmac.compare_digest(given, str(expected)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def require_manager(user: User) -> None:
    if not user.manager:
        raise HTTPException(403, "only a Queue Job Manager may do this")
