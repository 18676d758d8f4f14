"""Log-in, the overview (KPI cards), charts, ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...monitoring import kpis, stats
from ...monitoring.models.snapshot import ALL
from ...monitoring.prometheus import collector_registry
from ...orm.api import SUPERUSER_ID, Environment
from .. import auth
from ..pages import Ctx, dashboard, flash, read_form, redirect, render, run, safe_next, url

#: chart ranges: name -> (snapshot period, look-back)
RANGES = {
    "6h": ("5min", timedelta(hours=6)),
    "24h": ("5min", timedelta(hours=24)),
    "7d": ("hour", timedelta(days=7)),
    "30d": ("hour", timedelta(days=30)),
    "1y": ("day", timedelta(days=365)),
}


async def login(request: Request) -> Response:
    board = dashboard(request)
    target = safe_next(request.query_params.get("next"))
    if request.method == "GET":
        if request.session.get("sid"):
            return redirect(target)
        return render(request, "login.html", {"next": target, "error": None})
    form = await read_form(request)
    login_name, password = str(form.get("login", "")), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    address = request.client.host if request.client else "unknown"
    previous = request.session.get("sid")

    def check() -> tuple[str | None, int]:
        """(session token, 0) on success, (None, seconds to wait) when refused."""
        with board.registry.cursor() as cr:
            env = Environment(cr, SUPERUSER_ID, {})
            now = stats.now()
            wait = auth.throttled(env, login_name, address, now)
            if wait:
                return None, wait
            user = auth.authenticate(env, login_name, password)
            if user is None:
                auth.record_failure(env, login_name, address, now)
                return None, 0
            auth.forget_failures(env, login_name)
            auth.close_session(env, previous)  # a log-in replaces the session it had
            return auth.open_session(env, user, board.settings.session_lifetime), 0

    token, wait = await run_in_threadpool(check)
    if token is None:
        error = (
            f"too many failed log-ins: try again in {math.ceil(wait / 60)} min"
            if wait
            else auth.REFUSED
        )
        response = render(
            request,
            "login.html",
            {"next": target, "error": error, "login": login_name},
            status_code=429 if wait else 401,
        )
        if wait:
            response.headers["Retry-After"] = str(wait)
        return response
    request.session.clear()  # a new session on log-in: no fixation
    request.session["sid"] = token
    auth.csrf_token(request)
    return redirect(target)


async def logout(request: Request) -> Response:
    board = dashboard(request)
    await read_form(request)
    token = request.session.get("sid")

    def close() -> None:
        with board.registry.cursor() as cr:
            auth.close_session(Environment(cr, SUPERUSER_ID, {}), token)

    if token:
        await run_in_threadpool(close)
    request.session.clear()
    flash(request, "logged out")
    return redirect("/login")


def _overview(ctx: Ctx) -> dict[str, Any]:
    figures = kpis.compute(ctx.cr, ctx.now, user_id=ctx.user.only_user_id)
    cards = []
    for kpi in figures:
        link = dict(kpi.link)
        page = link.pop("page", None)
        cards.append(
            {
                **kpi.as_dict(),
                "href": f"/{page}" if page else url("/jobs", **link),
                # the whole value, for the title of a card that shortens it (a long name)
                "full": kpi.value if isinstance(kpi.value, str) else kpi.display,
            }
        )
    return {"user": ctx.user, "cards": cards, "now": ctx.now}


async def home(request: Request) -> Response:
    return render(request, "overview.html", await run(request, _overview))


async def api_overview(request: Request) -> Response:
    data = await run(request, _overview)
    return JSONResponse(
        {
            "cards": [
                {k: c[k] for k in ("key", "display", "full", "level", "hint", "href")}
                for c in data["cards"]
            ],
            "now": data["now"].isoformat(),
        }
    )


def _series(ctx: Ctx, range_name: str, channel: str) -> dict[str, Any]:
    period, back = RANGES[range_name]
    snapshots = ctx.env["queue.metric.snapshot"]
    rows = snapshots._series(period, ctx.now - back, channel)
    if period == "5min":  # the intervals not snapshotted yet, counted live
        rows += snapshots._live_series(ctx.now, ctx.now - back, channel)
    ctx.cr.execute(
        "SELECT DISTINCT channel FROM queue_metric_snapshot WHERE period = %s AND bucket >= %s",
        [period, ctx.now - back],
    )
    channels = sorted(r[0] for r in ctx.cr.fetchall() if r[0] != ALL)
    return {
        "period": period,
        "range": range_name,
        "channel": channel,
        "channels": channels,
        "points": [
            {
                "t": row["bucket"].isoformat() + "Z",
                "done": row["done_count"],
                "failed": row["failed_count"],
                "p95": row["duration_p95"],
                "avg": row["duration_avg"],
                "wait": row["wait_avg"],
                "pending": row["pending_count"],
                "running": row["running_count"],
                "live": row.get("live", False),
            }
            for row in rows
        ],
    }


def _chart_args(request: Request) -> tuple[str, str]:
    range_name = request.query_params.get("range", "24h")
    if range_name not in RANGES:
        raise HTTPException(400, f"range must be one of {', '.join(RANGES)}")
    return range_name, request.query_params.get("channel") or ALL


async def charts(request: Request) -> Response:
    range_name, channel = _chart_args(request)
    data = await run(request, lambda ctx: {"user": ctx.user, **_series(ctx, range_name, channel)})
    return render(request, "charts.html", {**data, "ranges": list(RANGES)})


async def api_series(request: Request) -> Response:
    range_name, channel = _chart_args(request)
    data = await run(request, lambda ctx: _series(ctx, range_name, channel))
    return JSONResponse(data)


async def metrics(request: Request) -> Response:
    """Prometheus text format; no log-in (read-only figures, no job content)."""
    board = dashboard(request)
    if not hasattr(board, "collectors"):
        board.collectors = collector_registry(board.registry)
    body = await run_in_threadpool(generate_latest, board.collectors)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    board = dashboard(request)

    def ping() -> int:
        with board.registry.cursor(readonly=True) as cr:
            return stats.live_worker_count(cr, stats.now())

    return JSONResponse({"status": "ok", "workers_alive": await run_in_threadpool(ping)})
