"""The job list (filters, search, keyset pages, bulk actions) and the job detail page."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...monitoring import joblist, stats
from ...queue import describe
from ...queue.explain import explain
from ...queue.lifecycle import ACCEPTS, ALL
from .. import auth
from ..pages import (
    Ctx,
    flash,
    parse_int,
    path_id,
    query_int,
    read_form,
    redirect,
    render,
    run,
    safe_next,
    url,
)

#: action name -> (queue.job method, label, states it applies to)
ACTIONS = {
    key: (method, label, ACCEPTS[method])
    for key, method, label in (
        ("requeue", "requeue", "Requeue"),
        ("cancel", "cancel", "Cancel"),
        ("done", "set_done", "Set done"),
        ("fail", "set_failed", "Set failed"),
    )
}
GRAPH_CAP = 300
_FILTER_KEYS = (
    "state",
    "channel",
    "model",
    "method",
    "exc_name",
    "graph",
    "cron",
    "q",
    "finished",
)
_FLAG_KEYS = ("stuck", "aged", "exhausted")
_DETAIL_FIELDS = (
    "id",
    "uuid",
    "name",
    "model_name",
    "method_name",
    "record_ids",
    "args",
    "kwargs",
    "state",
    "priority",
    "channel",
    "scheduled_at",
    "max_retries",
    "attempts",
    "timeout",
    "weight",
    "fair_key",
    "backoffs",
    "identity_key",
    "context",
    "result",
    "exc_name",
    "exc_message",
    "exc_info",
    "worker_id",
    "started_at",
    "completed_at",
    "cancelled_at",
    "duration",
    "graph_uuid",
    "create_date",
    "write_date",
)


def _parse_filter(request: Request, user: auth.User) -> joblist.JobFilter:
    params = request.query_params
    values: dict[str, Any] = {k: params.get(k) or None for k in _FILTER_KEYS}
    values.update({k: params.get(k) in ("1", "true", "on") for k in _FLAG_KEYS})
    user_param = params.get("user_id")
    if user.only_user_id is not None:
        values["user_id"] = user.only_user_id
    elif user_param:
        values["user_id"] = parse_int(user_param, "user_id")
    try:
        return joblist.JobFilter(**values)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc


async def job_list(request: Request) -> Response:
    before, after = query_int(request, "before"), query_int(request, "after")
    limit = query_int(request, "limit") or 50

    def work(ctx: Ctx) -> dict[str, Any]:
        flt = _parse_filter(request, ctx.user)
        page = joblist.list_jobs(ctx.cr, flt, before=before, after=after, limit=limit, now=ctx.now)
        params = flt.as_params()
        if ctx.user.only_user_id is not None:
            params.pop("user_id", None)
        # the channels of the filter: read from the channel index, nothing counted
        channels = stats.channel_names(ctx.cr)
        return {
            "user": ctx.user,
            "page": page,
            "filters": params,
            "flt": flt,
            "now": ctx.now,
            "states": ALL,
            "channels": channels,
            "search_window": joblist.SEARCH_WINDOW,
            "actions": ACTIONS,
            "next_url": url("/jobs", **params, before=page.next_before)
            if page.next_before
            else None,
            "prev_url": url("/jobs", **params, after=page.prev_after) if page.prev_after else None,
            "self_url": url("/jobs", **params, before=before, after=after),
        }

    data = await run(request, work)
    template = "jobs_table.html" if request.query_params.get("partial") else "jobs.html"
    return render(request, template, data)


def _apply(ctx: Ctx, action: str, ids: list[int], message: str | None = None) -> tuple[bool, str]:
    auth.require_manager(ctx.user)
    if action not in ACTIONS:
        raise HTTPException(400, f"unknown action {action!r}")
    method, label, _states = ACTIONS[action]
    jobs = ctx.env["queue.job"].browse(ids).exists()
    if not jobs:
        return False, "no such job"
    try:
        with ctx.cr.savepoint():
            if action == "fail":
                jobs.set_failed(message or f"set failed by {ctx.user.login}")
            else:
                getattr(jobs, method)()
    except ValueError as exc:
        return False, str(exc)
    return True, f"{label}: {len(jobs)} job(s) ({', '.join(map(str, jobs.ids[:20]))})"


async def bulk_action(request: Request) -> Response:
    form = await read_form(request)
    action = str(form.get("action", ""))
    ids = sorted({parse_int(value, "ids") for value in form.getlist("ids")})
    target = safe_next(str(form.get("next", "/jobs")))
    if not ids:
        flash(request, "select at least one job", "warn")
        return redirect(target)
    ok, message = await run(request, lambda ctx: _apply(ctx, action, ids), write=True)
    flash(request, message, "ok" if ok else "error")
    return redirect(target)


async def job_action(request: Request) -> Response:
    form = await read_form(request)
    job_id = path_id(request, "job_id")
    action = str(form.get("action", ""))
    ok, message = await run(
        request,
        lambda ctx: _apply(ctx, action, [job_id], str(form.get("message") or "")),
        write=True,
    )
    flash(request, message, "ok" if ok else "error")
    return redirect(f"/jobs/{job_id}")


def _visible_job(ctx: Ctx, job_id: int) -> Any:
    """The job, if this user may see it (404 otherwise: not even its existence leaks)."""
    job = ctx.env["queue.job"].browse(job_id).exists()
    if not job or (ctx.user.only_user_id is not None and job.user_id.id != ctx.user.only_user_id):
        raise HTTPException(404, f"no job {job_id}")
    return job


def _linked(ctx: Ctx, other: Any, kind: str) -> dict[str, Any]:
    """A parent or dependent job as the viewer may see it: another user's job
    shows its state only (no id, no description)."""
    if ctx.user.only_user_id is not None and other.user_id.id != ctx.user.only_user_id:
        return {"id": None, "kind": kind, "state": other.state, "name": "a job of another user"}
    return {"id": other.id, "kind": kind, "state": other.state, "name": other.name}


def _value(record: Any, name: str) -> Any:
    """A field's value, with None for an empty non-boolean field (the ORM gives False)."""
    value = record[name]
    return None if value is False and record._fields[name].type != "boolean" else value


async def job_detail(request: Request) -> Response:
    job_id = path_id(request, "job_id")

    def work(ctx: Ctx) -> dict[str, Any]:
        job = _visible_job(ctx, job_id)
        reasons = explain(ctx.env, job_id, now=ctx.now, only_user_id=ctx.user.only_user_id)
        deps = [_linked(ctx, d.parent_id, d.kind) for d in job.dependency_ids]
        dependents = [_linked(ctx, d.job_id, d.kind) for d in job.dependent_ids]
        actions = {k: label for k, (_m, label, states) in ACTIONS.items() if job.state in states}
        values = {name: _value(job, name) for name in _DETAIL_FIELDS}
        values["user"] = f"{job.user_id.login} (id {job.user_id.id})" if job.user_id else ""
        values["company"] = job.company_id.name if job.company_id else ""
        values["call"] = describe.call_text(
            job.model_name, job.method_name, job.record_ids, job.args, job.kwargs
        )
        values["attempts_text"] = describe.attempts_text(job.attempts, job.max_retries)
        values["cron"] = (
            {
                "id": job.cron_id.id,
                "name": job.cron_id.name,
                "occurrence": _value(job, "cron_occurrence"),
            }
            if job.cron_id
            else None
        )
        return {
            "user": ctx.user,
            "job": values,
            "reasons": reasons,
            "deps": deps,
            "dependents": dependents,
            "timeline": describe.timeline(job),
            "actions": actions if ctx.user.manager else {},
            "now": ctx.now,
        }

    return render(request, "job.html", await run(request, work))


async def api_job(request: Request) -> Response:
    job_id = path_id(request, "job_id")

    def work(ctx: Ctx) -> dict[str, Any]:
        job = _visible_job(ctx, job_id)
        return {
            "id": job.id,
            "state": job.state,
            "attempts": job.attempts,
            "write_date": job.write_date.isoformat() if job.write_date else None,
        }

    return JSONResponse(await run(request, work))


async def api_graph(request: Request) -> Response:
    """Nodes and edges of the job's graph (at most :data:`GRAPH_CAP` jobs), for the SVG."""
    job_id = path_id(request, "job_id")

    def work(ctx: Ctx) -> dict[str, Any]:
        job = _visible_job(ctx, job_id)
        cr = ctx.cr
        mine, mine_params = (
            (" AND user_id = %s", [ctx.user.only_user_id])
            if ctx.user.only_user_id is not None
            else ("", [])
        )
        if job.graph_uuid:
            cr.execute(
                f"SELECT id, state, name, model_name, method_name FROM queue_job WHERE graph_uuid = %s{mine}"
                " ORDER BY id LIMIT %s",
                [job.graph_uuid, *mine_params, GRAPH_CAP + 1],
            )
        else:
            cr.execute(
                "SELECT id, state, name, model_name, method_name FROM queue_job WHERE id = %s",
                [job_id],
            )
        nodes = cr.dictfetchall()
        truncated = len(nodes) > GRAPH_CAP
        nodes = nodes[:GRAPH_CAP]
        ids = [n["id"] for n in nodes]
        sql, params = cr.backend.in_ids("job_id", ids)
        cr.execute(f"SELECT job_id, parent_id, kind FROM queue_job_dependency WHERE {sql}", params)
        known = set(ids)
        edges = [{"from": p, "to": j, "kind": k} for j, p, k in cr.fetchall() if p in known]
        for node in nodes:
            node["label"] = node.pop("name") or f"{node['model_name']}.{node['method_name']}"
            node["current"] = node["id"] == job_id
        return {"nodes": nodes, "edges": edges, "truncated": truncated}

    return JSONResponse(await run(request, work))
