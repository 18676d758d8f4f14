"""A queue with jobs in every state, made through the public API (no worker needed)."""

from __future__ import annotations

from dataclasses import dataclass

from job_worker import SUPERUSER_ID, api
from job_worker.delay import chain

PASSWORD = "s3cret-passw0rd"


@dataclass
class Scenario:
    manager: int
    bob: int
    carol: int
    done: int
    failed: int
    pending: int
    carol_pending: int
    chain_first: int
    chain_second: int
    cancelled: int


def make_user(env: api.Environment, login: str, role: str) -> int:
    keys = ["queue_job.group_user"] + (["queue_job.group_manager"] if role == "manager" else [])
    groups = env["res.groups"].search([("key", "in", keys)])
    user = env["res.users"].create(
        {
            "name": login.title(),
            "login": login,
            "password": PASSWORD,
            "group_ids": [(6, 0, groups.ids)],
        }
    )
    return user.id


def populate(env: api.Environment) -> Scenario:
    """Users alice (manager), bob and carol (users), and bob's and carol's jobs."""
    manager = make_user(env, "alice", "manager")
    bob = make_user(env, "bob", "user")
    carol = make_user(env, "carol", "user")
    bob_env = api.Environment(env.cr, bob, {})
    partners = bob_env["res.partner"].create([{"name": "Azure Interior"}, {"name": "Deco Addict"}])
    done = partners.with_delay(description="Export partners").export("xlsx")
    done.run_now()
    failed = partners[0].with_delay(description="Push to ERP", max_retries=1).explode()
    failed.run_now()  # attempt 1: retried
    try:
        failed.run_now()  # attempt 2: retries spent
    except ValueError:
        pass
    pending = partners.with_delay(
        description="Nightly export", channel="exports", priority=5
    ).export()
    carol_env = api.Environment(env.cr, carol, {})
    carol_partner = carol_env["res.partner"].create({"name": "Gemini Furniture"})
    carol_pending = carol_partner.with_delay(description="Carol's export").export()
    first = partners[0].delayable(description="Chain step 1").export()
    second = partners[1].delayable(description="Chain step 2").export()
    chain(first, second).delay()
    cancelled = partners[1].with_delay(description="Cancelled export").export()
    cancelled.cancel()
    return Scenario(
        manager,
        bob,
        carol,
        done.id,
        failed.id,
        pending.id,
        carol_pending.id,
        _job_of(env, "Chain step 1"),
        _job_of(env, "Chain step 2"),
        cancelled.id,
    )


def _job_of(env: api.Environment, name: str) -> int:
    return env["queue.job"].search([("name", "=", name)], limit=1).id


def populate_database(registry) -> Scenario:
    with registry.cursor() as cr:
        return populate(api.Environment(cr, SUPERUSER_ID, {}))


def csrf_of(html: str) -> str:
    """The CSRF token of a dashboard page."""
    import re

    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)
