"""The fast enqueue path: what it skips must never show.

An enqueue writes the job row without going through ``create()`` when nothing
overrides it, fills the record cache from the row it wrote, and calls
``_job_store_values`` only on models that override it.
"""

import sys
import types
import uuid

import pytest

from job_worker import models
from job_worker.queue.enqueue import new_uuid


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def _fields_of(job):
    """Every column of the job as user code reads it."""
    return {f.name: job[f.name] for f in job._column_fields}


def test_the_cached_job_reads_as_the_row_in_the_database(qenv, partner):
    job = partner.with_delay(priority=3, identity_key="k").write({"email": "x@example.com"})
    lead = qenv["crm.lead"].create({"name": "L"})
    hooked = lead.with_context(store_hook="extra").with_delay(description="D").qualify()
    count = qenv.cr.sql_count
    cached = [_fields_of(job), _fields_of(hooked)]
    assert qenv.cr.sql_count == count  # all of it came from the cache
    qenv.invalidate_all()
    assert [_fields_of(job), _fields_of(hooked)] == cached
    assert qenv.cr.sql_count > count  # that time, from the database
    assert cached[0]["args"] == [{"email": "x@example.com"}] and cached[0]["kwargs"] == {}
    assert cached[0]["scheduled_at"] == cached[0]["create_date"]
    assert cached[1]["origin"] == "lead-hook" and cached[1]["name"] == "D"


def test_a_job_matching_an_active_identity_key_is_cached_as_the_existing_job(qenv, partner):
    first = partner.with_delay(identity_key="same", priority=1).record("a")
    again = partner.with_delay(identity_key="same", priority=9).record("b")
    assert again == first
    assert (again.priority, again.args) == (1, ["a"])


def test_new_uuids_are_random_version_4_uuids():
    values = {new_uuid() for _ in range(1000)}
    assert len(values) == 1000
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


def test_a_forked_child_and_other_threads_make_uuids_of_their_own():
    """The random bytes are read ahead: a child forked with some of them left, or
    another thread, must not give the same UUIDs as this one."""
    import os
    import threading

    new_uuid()  # bytes read ahead, most of them left
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next UUIDs, to the parent
        try:
            os.write(write, " ".join(new_uuid() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    mine = {new_uuid() for _ in range(50)}
    others: list[str] = []
    thread = threading.Thread(target=lambda: others.extend(new_uuid() for _ in range(50)))
    thread.start()
    thread.join()
    assert len(child) == len(others) == 50
    assert not (child & mine) and not (set(others) & mine) and not (child & set(others))


@pytest.fixture
def job_create_override(make_registry, monkeypatch):
    """A registry whose application overrides queue.job's create(), counting its calls."""
    name = f"app_{uuid.uuid4().hex[:10]}"
    module = types.ModuleType(name)
    module.DEPENDS = ["jobapp"]
    monkeypatch.setitem(sys.modules, name, module)
    calls = []

    class QueueJob(models.Model):
        __module__ = name
        _inherit = "queue.job"

        def create(self, vals_list):
            calls.append([dict(vals) for vals in vals_list])
            for vals in vals_list:
                vals["origin"] = "create-override"
            return super().create(vals_list)

    return make_registry([name]), calls


def test_an_override_of_queue_job_create_is_called_by_every_enqueue(job_create_override):
    registry, calls = job_create_override
    with registry.environment() as env:
        partner = env["res.partner"].create({"name": "Acme"})
        job = partner.with_delay().record("a")
        group = partner.delayable().record("b").split(1)
        jobs = group.delay()
        assert len(calls) == 2 and len(calls[1]) == 1
        assert calls[0][0]["args"] == ["a"] and calls[0][0]["state"] == "pending"
        assert job.origin == "create-override" and jobs.mapped("origin") == ["create-override"]
        again = partner.with_delay(identity_key="k").record("c")
        assert partner.with_delay(identity_key="k").record("d") == again


def test_a_model_without_a_store_hook_stores_the_values_the_queue_built(qenv, partner):
    assert partner._job_store_values_is_default()
    assert not qenv["crm.lead"]._job_store_values_is_default()
    job = qenv["crm.lead"].create({"name": "L"}).with_context(store_hook="channel")
    job = job.with_delay().qualify()
    assert (job.channel, job.priority) == ("leads", 1)
