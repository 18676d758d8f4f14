"""Identity keys: one active job per key, even with many enqueuers at once."""

import multiprocessing
import os

import pytest

from job_worker.job import identity_exact

APPS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "apps")


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def test_same_string_key_returns_the_existing_job(qenv, partner):
    first = partner.with_delay(identity_key="sync:1").record()
    again = partner.with_delay(identity_key="sync:1").record("other args")
    assert again == first
    assert qenv["queue.job"].search_count([]) == 1
    assert again.args == []  # the first call's arguments, not the second's


def test_empty_key_means_no_identity(qenv, partner):
    partner.with_delay(identity_key="").record()
    partner.with_delay(identity_key="").record()
    assert qenv["queue.job"].search_count([]) == 2


def test_identity_exact_is_order_independent_and_argument_sensitive(qenv, partner):
    other = qenv["res.partner"].create({"name": "Beta"})
    both = partner | other
    a = both.delayable().echo({"a": 1, "b": 2})
    b = (other | partner).delayable().echo({"b": 2, "a": 1})
    c = both.delayable().echo({"a": 1, "b": 3})
    assert identity_exact(a) == identity_exact(b)
    assert identity_exact(a) != identity_exact(c)
    assert len(identity_exact(a)) == 40
    job = both.with_delay(identity_key=identity_exact).echo({"a": 1, "b": 2})
    assert (other | partner).with_delay(identity_key=identity_exact).echo({"b": 2, "a": 1}) == job


def test_callable_key_receives_the_delayable(qenv, partner):
    seen = []

    def identity_by_partner(delayable):
        seen.append(
            (
                delayable.model_name,
                delayable.method_name,
                delayable.args,
                delayable.kwargs,
                delayable.recordset,
            )
        )
        return f"sync:{delayable.recordset.ids[0]}"

    job = partner.with_delay(identity_key=identity_by_partner).echo(1, x=2)
    assert job.identity_key == f"sync:{partner.id}"
    assert seen == [("res.partner", "echo", (1,), {"x": 2}, partner)]


@pytest.mark.parametrize("final", ["done", "failed", "cancelled"])
def test_key_is_free_again_once_the_job_is_finished(qenv, partner, final):
    job = partner.with_delay(identity_key="k").record()
    {"done": job.set_done, "failed": job.set_failed, "cancelled": job.cancel}[final]()
    new = partner.with_delay(identity_key="k").record()
    assert new != job and new.state == "pending"


def test_started_job_still_holds_its_key(qenv, partner):
    job = partner.with_delay(identity_key="k").record()
    qenv.cr.execute("UPDATE queue_job SET state = 'started' WHERE id = %s", [job.id])
    job.invalidate_recordset()
    assert partner.with_delay(identity_key="k").record() == job


def test_unique_index_refuses_a_second_active_job_written_behind_the_orm(qenv, partner):
    job = partner.with_delay(identity_key="k").record()
    other = partner.with_delay().record()
    with pytest.raises(Exception, match=r"(?i)unique"), qenv.cr.savepoint():
        qenv.cr.execute("UPDATE queue_job SET identity_key = 'k' WHERE id = %s", [other.id])
    assert job.identity_key == "k"


def test_requeue_is_refused_while_another_active_job_has_the_key(qenv, partner):
    old = partner.with_delay(identity_key="k").record()
    old.set_failed()
    partner.with_delay(identity_key="k").record()
    with pytest.raises(ValueError, match="same identity key"):
        old.requeue()
    assert old.state == "failed"


def _enqueue_same_key(url, barrier, results):
    import sys

    sys.path.insert(0, APPS)
    from job_worker import SUPERUSER_ID, Registry, api

    registry = Registry(url, ["jobapp"])
    barrier.wait(timeout=60)
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        job = env["res.partner"].browse(1).with_delay(identity_key="race").record()
        job_id = job.id
    results.put(job_id)
    registry.close()


@pytest.mark.timeout(120)
def test_sixteen_processes_enqueueing_one_key_get_one_active_job(qregistry):
    url = qregistry.database_url
    with qregistry.cursor() as cr:
        from job_worker import SUPERUSER_ID, api

        api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "Target"})
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(16)
    results = ctx.Queue()
    procs = [ctx.Process(target=_enqueue_same_key, args=(url, barrier, results)) for _ in range(16)]
    for proc in procs:
        proc.start()
    ids = [results.get(timeout=90) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    with qregistry.cursor() as cr:
        cr.execute(
            "SELECT id FROM queue_job WHERE identity_key = 'race' AND state IN ('waiting', 'pending', 'started')"
        )
        active = [r[0] for r in cr.fetchall()]
    assert len(active) == 1
    assert ids == active * 16
