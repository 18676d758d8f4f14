"""Log-in with res.users, sessions, throttling, roles, and CSRF tokens.

- Sessions live in the database (``res.users.session``): the cookie (signed
  with the dashboard's secret, ``HttpOnly``, ``SameSite=Strict``, ``Secure``
  over HTTPS) holds a random token and the CSRF token; the table holds the
  token's SHA-256, its user and an absolute expiry set at log-in. Log-out
  deletes the row, so a copied cookie stops working; a password change, a
  disabled or deleted user delete every row of that user.
- Failed log-ins are counted in the database (``res.users.login.failure``)
  per login and per client address over :data:`THROTTLE_WINDOW`; past
  :data:`MAX_FAILURES_PER_LOGIN` or :data:`MAX_FAILURES_PER_ADDRESS` the log-in
  is refused (429) without checking the password. The database, not the
  process, keeps the count, so several dashboard processes share one budget.
- A refused log-in always says "wrong login or password" and costs one
  password hash check, whether the login exists, is disabled or has no role.
- Roles are res.groups: *Queue Job User* (``queue_job.group_user``) sees their
  own jobs and reads the rest of the dashboard; *Queue Job Manager*
  (``queue_job.group_manager``) sees every job, the alert rules, and may act
  on jobs, limits and alert rules. A user with neither group cannot log in.
- Every POST carries the session's CSRF token, as the ``csrf_token`` form
  field or the ``X-CSRF-Token`` header; a POST without it is refused (403).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..base.models import spend_password_check
from ..orm.api import Environment

GROUP_USER = "queue_job.group_user"
GROUP_MANAGER = "queue_job.group_manager"
REFUSED = "wrong login or password"
#: failed log-ins are counted over this window ...
THROTTLE_WINDOW = timedelta(minutes=15)
#: ... and past this many for one login, or this many from one address, refused
MAX_FAILURES_PER_LOGIN = 10
MAX_FAILURES_PER_ADDRESS = 30
#: longer logins are cut to this length in the failure table
_LOGIN_KEY_LENGTH = 200


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


def session_user(env: Environment, token: Any, now: datetime) -> User | None:
    """The user of the live session ``token`` (None: no such session, expired,
    or its user lost the right to log in)."""
    session = env["res.users.session"]._find(token, now)
    return load_user(env, session.user_id.id) if session else None


def open_session(env: Environment, user: User, lifetime: timedelta) -> str:
    """A new session of ``user``; returns the token for the cookie."""
    return str(env["res.users.session"]._open(user.id, lifetime))


def close_session(env: Environment, token: Any) -> None:
    env["res.users.session"]._close(token)


def authenticate(env: Environment, login: str, password: str) -> User | None:
    """The user when ``login``/``password`` match an active user with a role, else None.

    Every refusal costs one password hash check, so the answer time does not
    tell whether the login exists."""
    user = env["res.users"].search([("login", "=", login)], limit=1) if login else None
    if not user or not user.password:
        spend_password_check(password)
        return None
    if not user.check_password(password) or not user.active:
        return None
    return load_user(env, user.id)


def _failure_key(login: str) -> str:
    return login[:_LOGIN_KEY_LENGTH]


def throttled(env: Environment, login: str, address: str, now: datetime) -> int:
    """Seconds to wait before ``login`` may be tried again from ``address`` (0: go ahead)."""
    since = now - THROTTLE_WINDOW
    failures = env["res.users.login.failure"]
    waits = []
    for domain, cap in (
        ([("login", "=", _failure_key(login))], MAX_FAILURES_PER_LOGIN),
        ([("address", "=", address)], MAX_FAILURES_PER_ADDRESS),
    ):
        recent = failures.search([*domain, ("at", ">", since)], order="at desc", limit=cap)
        if len(recent) >= cap:
            # free again when the oldest of the last ``cap`` failures leaves the window
            oldest = min(recent.mapped("at"))
            waits.append(max(1, int((oldest - since).total_seconds()) + 1))
    return max(waits, default=0)


def record_failure(env: Environment, login: str, address: str, now: datetime) -> None:
    failures = env["res.users.login.failure"]
    failures.search([("at", "<=", now - THROTTLE_WINDOW)]).unlink()
    failures.create({"login": _failure_key(login), "address": address, "at": now})


def forget_failures(env: Environment, login: str) -> None:
    """A successful log-in clears the failures of its login (not of its address)."""
    env["res.users.login.failure"].search([("login", "=", _failure_key(login))]).unlink()


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
    if (
        not expected
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), str(expected).encode())
    ):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def require_manager(user: User) -> None:
    if not user.manager:
        raise HTTPException(403, "only a Queue Job Manager may do this")
