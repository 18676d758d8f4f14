"""The dashboard application: Starlette, server-rendered Jinja2 pages, a little JS.

:func:`create_app` builds it for one registry: the routes to the page handlers
(:mod:`job_worker.web.views`), the middleware and the error pages. Page handlers
are async and run their database work in Starlette's thread pool
(:func:`job_worker.web.pages.run`), one read-only transaction per page (a
read-write one per action), as the user that is logged in.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment as JinjaEnvironment
from jinja2 import FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import formatting
from .pages import LoginRequired, redirect, render, url
from .views import alerts, channels, jobs, overview, periodic

if TYPE_CHECKING:
    from ..orm.registry import Registry

HERE = Path(__file__).parent

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
#: the names a dashboard on loopback answers to (see Settings.allowed_hosts)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Settings:
    """How the dashboard runs (the queue's own settings, such as the default limit and
    the stale window, are read from the database: :mod:`job_worker.queue.config`)."""

    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    refresh_seconds: float = 5.0
    #: absolute lifetime of a session, from log-in
    session_hours: float = 12.0
    #: served over HTTPS: the session cookie is always ``Secure``
    https: bool = False
    #: proxies whose X-Forwarded-For / X-Forwarded-Proto are believed
    trusted_proxies: tuple[str, ...] = ()
    #: the Host header values answered ("*" any; "*.example.com" its subdomains);
    #: others get 400, which defeats DNS rebinding
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(hours=self.session_hours)


async def _login_required(request: Request, exc: Exception) -> Response:
    request.session.pop("sid", None)  # ended or expired: the log-in page must show
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


async def _server_error(request: Request, exc: Exception) -> Response:
    """A 500 page without details (the error itself goes to the server's log)."""
    detail = "internal error: the dashboard logged it"
    if request.url.path.startswith("/api/") or request.url.path == "/metrics":
        return JSONResponse({"error": detail}, status_code=500)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>500 · job_worker'
        '</title><link rel="stylesheet" href="/static/app.css"></head><body><main>'
        f'<h1>500</h1><p class="error">{html.escape(detail)}</p>'
        '<p><a href="/">Back to the overview</a></p></main></body></html>'
    )
    return HTMLResponse(body, status_code=500)


class _SecurityHeaders:
    """Headers that keep the pages out of frames and scripts to our own files.

    It wraps the whole application, error pages included."""

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
                if scope.get("scheme") == "https":
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _ProxyHeaders:
    """Behind a trusted proxy, the client address and scheme are the ones it forwards."""

    def __init__(self, app: Any, trusted: tuple[str, ...]):
        self.app = app
        self.trusted = set(trusted)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and client[0] in self.trusted:
            headers = dict(scope["headers"])
            proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
            if proto in ("http", "https"):
                scope = {**scope, "scheme": proto}
            forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
            # the last address is the one the trusted proxy saw
            address = forwarded.rsplit(",", 1)[-1].strip()
            if address:
                scope = {**scope, "client": (address, 0)}
        await self.app(scope, receive, send)


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header value (with or without port) names an allowed host."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8080
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class _RefuseNul:
    """Answer 400 to a path or query string holding a NUL character (PostgreSQL
    text cannot store one; no page needs it)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
        ):
            response = Response(
                "the path or a parameter holds a NUL character\n",
                status_code=400,
                media_type="text/plain",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _AllowedHosts:
    """Answer 400 to a Host header that is not one of the dashboard's names."""

    def __init__(self, app: Any, allowed: tuple[str, ...]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.allowed):
                response = Response(
                    f"unknown host {host[:100]!r}: not in the dashboard's allowed hosts\n",
                    status_code=400,
                    media_type="text/plain",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Sessions:
    """Starlette's signed session cookie, ``Secure`` when the request came over HTTPS."""

    def __init__(self, app: Any, settings: Settings):
        options = {
            "secret_key": settings.secret,
            "session_cookie": "job_worker_session",
            "max_age": int(settings.session_hours * 3600),
            "same_site": "strict",
        }
        self.secure = SessionMiddleware(app, https_only=True, **options)  # type: ignore[arg-type]
        self.plain = self.secure
        if not settings.https:
            self.plain = SessionMiddleware(app, https_only=False, **options)  # type: ignore[arg-type]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        https = scope.get("scheme") in ("https", "wss")
        await (self.secure if https else self.plain)(scope, receive, send)


class _App(Starlette):
    def build_middleware_stack(self) -> Any:
        # outside Starlette's error middleware, so that a 500 page gets the headers too
        return _SecurityHeaders(super().build_middleware_stack())


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
    return {name: getattr(formatting, name) for name in formatting.FILTERS}


def create_app(registry: Registry, settings: Settings | None = None) -> Starlette:
    """The dashboard for ``registry``'s database."""
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
        Route("/channels/{name}/lift", channels.channel_lift, methods=["POST"]),
        Route("/channels/{name}/fair", channels.channel_fair, methods=["POST"]),
        Route("/workers", channels.worker_list),
        Route("/periodic", periodic.periodic_list, methods=["GET", "POST"]),
        Route("/periodic/{cron_id:int}/action", periodic.periodic_action, methods=["POST"]),
        Route("/periodic/{cron_id:int}/edit", periodic.periodic_edit, methods=["POST"]),
        Route("/alerts", alerts.alert_list, methods=["GET", "POST"]),
        Route("/alerts/{rule_id:int}", alerts.alert_update, methods=["POST"]),
        Route("/alerts/{rule_id:int}/delete", alerts.alert_delete, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = _App(
        routes=routes,
        middleware=[
            Middleware(_ProxyHeaders, trusted=settings.trusted_proxies),
            Middleware(_AllowedHosts, allowed=settings.allowed_hosts),
            Middleware(_RefuseNul),
            Middleware(_Sessions, settings=settings),
        ],
        exception_handlers={
            LoginRequired: _login_required,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.dashboard = Dashboard(registry, settings)
    return app
