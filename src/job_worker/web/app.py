"""The dashboard application: Starlette, server-rendered Jinja2 pages, a little JS.

:func:`create_app` builds it for one registry. Page handlers are async and
run their database work in Starlette's thread pool (:func:`run`), one
read-only transaction per page (a read-write one per action), as the user
that is logged in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from jinja2 import Environment as JinjaEnvironment
from jinja2 import FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..monitoring import stats
from ..orm.api import SUPERUSER_ID, Environment
from . import auth

if TYPE_CHECKING:
    from ..orm.registry import Registry

HERE = Path(__file__).parent
T = TypeVar("T")

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


@dataclass
class Settings:
    """How the dashboard runs (the queue's own settings, such as the default limit and
    the stale window, are read from the database: :mod:`job_worker.queue.config`)."""

    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    refresh_seconds: float = 5.0
    session_hours: float = 12.0


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
    uid = request.session.get("uid")

    def in_thread() -> T:
        with board.registry.cursor(readonly=not write) as cr:
            user = auth.load_user(Environment(cr, SUPERUSER_ID, {}), uid)
            if user is None:
                raise LoginRequired()
            # the queue's own tables are read as the superuser; what a user may
            # see is decided by the handlers (user.only_user_id)
            env = Environment(cr, SUPERUSER_ID, {"dashboard_uid": user.id})
            return work(Ctx(env, user, stats.now(), board.settings))

    return await run_in_threadpool(in_thread)


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


async def _login_required(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "login required"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/login?next={quote(target)}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/") or request.url.path == "/metrics":
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return render(
        request,
        "error.html",
        {"status": exc.status_code, "detail": exc.detail},
        status_code=exc.status_code,
    )


class _SecurityHeaders:
    """Headers that keep the pages out of frames and scripts to our own files."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.extend(
                    [
                        (b"content-security-policy", _CSP.encode()),
                        (b"x-frame-options", b"DENY"),
                        (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"same-origin"),
                    ]
                )
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Dashboard:
    """The application state: the registry, settings and templates."""

    def __init__(self, registry: Registry, settings: Settings):
        self.registry = registry
        self.settings = settings
        env = JinjaEnvironment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
        )
        self.templates = Jinja2Templates(env=env)
        env.globals.update(url=url)
        env.filters.update(_filters())


def _filters() -> dict[str, Callable[..., Any]]:
    from . import formatting

    return {name: getattr(formatting, name) for name in formatting.FILTERS}


def create_app(registry: Registry, settings: Settings | None = None) -> Starlette:
    """The dashboard for ``registry``'s database."""
    from .views import alerts, channels, jobs, overview

    settings = settings or Settings()
    routes = [
        Route("/login", overview.login, methods=["GET", "POST"]),
        Route("/logout", overview.logout, methods=["POST"]),
        Route("/", overview.home),
        Route("/api/overview", overview.api_overview),
        Route("/charts", overview.charts),
        Route("/api/series", overview.api_series),
        Route("/metrics", overview.metrics),
        Route("/healthz", overview.healthz),
        Route("/jobs", jobs.job_list),
        Route("/jobs/bulk", jobs.bulk_action, methods=["POST"]),
        Route("/jobs/{job_id:int}", jobs.job_detail),
        Route("/jobs/{job_id:int}/action", jobs.job_action, methods=["POST"]),
        Route("/api/jobs/{job_id:int}", jobs.api_job),
        Route("/api/jobs/{job_id:int}/graph", jobs.api_graph),
        Route("/channels", channels.channel_list, methods=["GET", "POST"]),
        Route("/channels/{name}/delete", channels.channel_delete, methods=["POST"]),
        Route("/workers", channels.worker_list),
        Route("/alerts", alerts.alert_list, methods=["GET", "POST"]),
        Route("/alerts/{rule_id:int}", alerts.alert_update, methods=["POST"]),
        Route("/alerts/{rule_id:int}/delete", alerts.alert_delete, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=settings.secret,
                session_cookie="job_worker_session",
                max_age=int(settings.session_hours * 3600),
                same_site="strict",
            ),
        ],
        exception_handlers={LoginRequired: _login_required, HTTPException: _http_error},
    )
    app.state.dashboard = Dashboard(registry, settings)
    return app
