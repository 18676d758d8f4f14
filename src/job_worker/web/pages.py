"""What a dashboard page handler is made of: its database work in a transaction
(:func:`run`), its parameters and form checked (:func:`to_int`, :func:`read_form`
...), its answer (:func:`render`, :func:`redirect`, :func:`flash`).

The handlers in :mod:`job_worker.web.views` use these; :mod:`job_worker.web.app`
routes requests to them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..monitoring import stats
from ..orm.api import SUPERUSER_ID, Environment
from . import auth

if TYPE_CHECKING:
    from .app import Settings

T = TypeVar("T")

#: the largest whole number a parameter, an id or a form value may carry: ids
#: (SERIAL) and integer columns are 32-bit on PostgreSQL
MAX_INT = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass
class Ctx:
    """What a page handler's database work gets: the environment, the user, the time."""

    env: Environment
    user: auth.User
    now: datetime
    settings: Settings

    @property
    def cr(self) -> Any:
        return self.env.cr


class LoginRequired(Exception):
    """Raised when a page needs a logged-in user; answered with a redirect to /login."""


def dashboard(request: Request) -> Any:
    return request.app.state.dashboard


async def run(request: Request, work: Callable[[Ctx], T], *, write: bool = False) -> T:
    """Run ``work`` in the thread pool, in one transaction, as the logged-in user."""
    board = dashboard(request)
    token = request.session.get("sid")
    if not token:
        raise LoginRequired()

    def in_thread() -> T:
        with board.registry.cursor(readonly=not write) as cr:
            now = stats.now()
            user = auth.session_user(Environment(cr, SUPERUSER_ID, {}), token, now)
            if user is None:
                raise LoginRequired()
            # the queue's own tables are read as the superuser; what a user may
            # see is decided by the handlers (user.only_user_id)
            env = Environment(cr, SUPERUSER_ID, {"dashboard_uid": user.id})
            return work(Ctx(env, user, now, board.settings))

    return await run_in_threadpool(in_thread)


def to_int(value: Any, name: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """``value`` (ASCII digits) as an int from ``minimum`` to ``maximum``, else
    ValueError naming ``name``."""
    text = str(value).strip()
    if not _DIGITS.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise ValueError(
            f"{name} must be a whole number from {minimum} to {maximum}, got {text[:40]!r}"
        )
    return int(text)


def to_float(value: Any, name: str) -> float:
    """``value`` as a finite number >= 0, else ValueError naming ``name``."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a number >= 0, got {text[:40]!r}")
    return number


def parse_int(value: Any, name: str) -> int:
    """``value`` as an id or count (0 to :data:`MAX_INT`), else 400."""
    try:
        return to_int(value, name)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def query_int(request: Request, name: str) -> int | None:
    """The query parameter ``name`` as an id or count (None when absent), else 400."""
    value = request.query_params.get(name)
    return parse_int(value, name) if value else None


def path_id(request: Request, name: str) -> int:
    """The path's ``{name:int}`` as an id, 400 when it does not fit a 64-bit integer."""
    return parse_int(request.path_params[name], name)


async def read_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token is checked (403) and no value holds a
    NUL character (400: PostgreSQL text cannot store one)."""
    form = await request.form()
    auth.check_csrf(request, form)
    for key, value in form.multi_items():
        if isinstance(value, str) and "\x00" in value:
            raise HTTPException(400, f"{key} cannot contain a NUL character")
    return form


def url(path: str, **params: Any) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    clean = {k: v for k, v in params.items() if v not in (None, "", False)}
    return f"{path}?{urlencode(clean)}" if clean else path


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    board = dashboard(request)
    context = {
        "user": context.pop("user", None),
        "csrf_token": auth.csrf_token(request),
        "flash": request.session.pop("flash", None),
        "refresh_seconds": board.settings.refresh_seconds,
        "path": request.url.path,
        **context,
    }
    return board.templates.TemplateResponse(request, template, context, status_code=status_code)


def flash(request: Request, message: str, level: str = "ok") -> None:
    request.session["flash"] = {"message": message, "level": level}


def redirect(target: str) -> RedirectResponse:
    return RedirectResponse(target, status_code=303)


def safe_next(target: str | None) -> str:
    """A redirect target inside the dashboard (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
