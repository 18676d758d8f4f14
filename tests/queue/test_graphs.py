"""Job graphs: groups, chains, on_done/on_error and their cascades (PRODUCT.md 4)."""

import pytest

from job_worker.delay import chain, group
from job_worker.exceptions import FailedJobError


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def node(partner, name, **options):
    return partner.delayable(description=name, **options).record(name)


def states(*delayables):
    return [d._job.state for d in delayables]


def ran(env):
    return env["job.log"].search([]).mapped("name")


def test_graph_jobs_share_a_graph_uuid_and_edges_are_rows(qenv, partner):
    a, b, c = (node(partner, n) for n in "abc")
    jobs = chain(a, b, c).delay()
    assert len(set(jobs.mapped("graph_uuid"))) == 1 and jobs[0].graph_uuid
    edges = qenv["queue.job.dependency"].search([])
    assert sorted((e.job_id.id, e.parent_id.id, e.kind) for e in edges) == [
        (b._job.id, a._job.id, "done"),
        (c._job.id, b._job.id, "done"),
    ]
    assert states(a, b, c) == ["pending", "waiting", "waiting"]


def test_delay_on_any_node_enqueues_the_whole_graph(qenv, partner):
    a, b, c = (node(partner, n) for n in "abc")
    chain(a, group(b, c))
    job = b.delay()
    assert job == b._job
    assert qenv["queue.job"].search_count([]) == 3
    assert states(a, b, c) == ["pending", "waiting", "waiting"]


def test_chain_runs_in_order(qenv, partner):
    a, b, c = (node(partner, n) for n in "abc")
    chain(a, b, c).delay()
    for current in (a, b, c):
        current._job.run_now()
    assert ran(qenv) == ["a", "b", "c"]
    assert states(a, b, c) == ["done"] * 3


def test_group_in_a_chain_is_a_barrier(qenv, partner):
    a, b, c, d = (node(partner, n) for n in "abcd")
    chain(a, group(b, c), d).delay()
    a._job.run_now()
    assert states(b, c, d) == ["pending", "pending", "waiting"]
    b._job.run_now()
    assert states(d) == ["waiting"]  # waits for the whole group
    c._job.run_now()
    assert states(d) == ["pending"]


def test_group_with_a_callback(qenv, partner):
    a, b, done = (node(partner, n) for n in ("a", "b", "callback"))
    group(a, b).on_done(done).delay()
    assert states(a, b, done) == ["pending", "pending", "waiting"]
    a._job.run_now()
    b._job.run_now()
    assert states(done) == ["pending"]


def test_failed_parent_fails_on_done_dependents_recursively(qenv, partner):
    a = partner.delayable(max_retries=1).fail_hard()
    b, c = node(partner, "b"), node(partner, "c")
    chain(a, b, c).delay()
    with pytest.raises(Exception, match="no point retrying"):
        a._job.run_now()
    assert states(a, b, c) == ["failed", "failed", "failed"]
    assert b._job.exc_message == f"parent job {a._job.id} failed"
    assert c._job.exc_message == f"parent job {b._job.id} failed"


def test_on_error_runs_when_the_parent_fails_and_is_cancelled_when_it_succeeds(qenv, partner):
    bad = partner.delayable().fail_hard()
    good = node(partner, "good")
    rescue_bad, rescue_good = node(partner, "rescue-bad"), node(partner, "rescue-good")
    bad.on_error(rescue_bad)
    good.on_error(rescue_good)
    bad.delay()
    good.delay()
    with pytest.raises(FailedJobError):
        bad._job.run_now()
    good._job.run_now()
    assert states(rescue_bad, rescue_good) == ["pending", "cancelled"]


def test_cancelled_parent_cancels_every_dependent(qenv, partner):
    a, b, c, rescue = (node(partner, n) for n in ("a", "b", "c", "rescue"))
    a.on_error(rescue)
    chain(a, b, c).delay()
    a._job.cancel()
    assert states(a, b, c, rescue) == ["cancelled"] * 4


def test_set_failed_and_set_done_cascade_like_real_outcomes(qenv, partner):
    a, b, rescue = node(partner, "a"), node(partner, "b"), node(partner, "rescue")
    a.on_done(b)
    a.on_error(rescue)
    a.delay()
    a._job.set_failed()
    assert states(a, b, rescue) == ["failed", "failed", "pending"]
    x, y = node(partner, "x"), node(partner, "y")
    chain(x, y).delay()
    x._job.set_done()
    assert states(x, y) == ["done", "pending"]


def test_requeue_of_a_failed_parent_that_succeeds_releases_its_dependents(qenv, partner):
    a = partner.delayable(max_retries=1).fail_hard()
    b, c = node(partner, "b"), node(partner, "c")
    rescue = node(partner, "rescue")
    a.on_error(rescue)
    chain(a, b, c).delay()
    with pytest.raises(FailedJobError):
        a._job.run_now()
    assert states(b, c, rescue) == ["failed", "failed", "pending"]
    a._job.requeue()
    assert states(a, b, c, rescue) == ["pending", "waiting", "waiting", "waiting"]
    assert (a._job.attempts, a._job.exc_name) == (0, False)
    a._job.set_done()
    assert states(b, c, rescue) == ["pending", "waiting", "cancelled"]
    b._job.run_now()
    c._job.run_now()
    assert ran(qenv) == ["b", "c"]


def test_a_dependent_failed_because_of_another_parent_stays_failed(qenv, partner):
    p1 = partner.delayable().fail_hard()
    p2 = partner.delayable().fail_hard()
    child = node(partner, "child")
    group(p1, p2).on_done(child).delay()
    with pytest.raises(FailedJobError):
        p1._job.run_now()
    assert states(child) == ["failed"]
    with pytest.raises(FailedJobError):
        p2._job.run_now()
    p2._job.requeue()  # child was failed by p1, not p2
    assert states(child) == ["failed"]
    p1._job.requeue()
    assert states(child) == ["waiting"]


def test_nested_groups_and_chains(qenv, partner):
    a, b, c, d, e = (node(partner, n) for n in "abcde")
    chain(group(a, chain(b, c)), group(d, e)).delay()
    assert states(a, b, c, d, e) == ["pending", "pending", "waiting", "waiting", "waiting"]
    a._job.run_now()
    b._job.run_now()
    assert states(c, d, e) == ["pending", "waiting", "waiting"]
    c._job.run_now()
    assert states(d, e) == ["pending", "pending"]


def test_a_graph_node_matching_an_active_identity_reuses_that_job(qenv, partner):
    existing = partner.with_delay(identity_key="shared").record("existing")
    a = partner.delayable(identity_key="shared").record("a")
    b = node(partner, "b")
    chain(a, b).delay()
    assert a._job == existing
    assert b._job.state == "waiting"
    existing.run_now()
    assert b._job.state == "pending"


def parents_of(env, delayable):
    edges = env["queue.job.dependency"].search([("job_id", "=", delayable._job.id)])
    return sorted((e.parent_id.id, e.kind) for e in edges)


def test_dependents_attached_before_a_split_wait_for_the_whole_group(qenv):
    partners = qenv["res.partner"].create([{"name": f"P{i}"} for i in range(5)])
    chunked = partners.delayable().record("chunk")
    after, rescue = node(partners[0], "after"), node(partners[0], "rescue")
    chunked.on_done(after)
    chunked.on_error(rescue)
    jobs = chunked.split(2).delay()
    assert len(jobs) == 3 and states(after, rescue) == ["waiting", "waiting"]
    assert parents_of(qenv, after) == [(j.id, "done") for j in jobs]
    assert parents_of(qenv, rescue) == [(j.id, "error") for j in jobs]
    for job in jobs[:2]:
        job.run_now()
    assert states(after) == ["waiting"]  # not before the last chunk
    jobs[2].run_now()
    assert states(after, rescue) == ["pending", "cancelled"]


def test_dependents_attached_before_a_chained_split_follow_its_last_link(qenv):
    partners = qenv["res.partner"].create([{"name": f"P{i}"} for i in range(4)])
    chunked = partners.delayable(max_retries=0).fail_hard()
    after, rescue = node(partners[0], "after"), node(partners[0], "rescue")
    chunked.on_done(after).on_error(rescue)
    jobs = chunked.split(2, chain=True).delay()
    assert parents_of(qenv, after) == [(jobs[1].id, "done")]
    assert parents_of(qenv, rescue) == [(jobs[1].id, "error")]
    with pytest.raises(FailedJobError):
        jobs[0].run_now()  # the first link fails: the chain fails, the rescue runs
    assert jobs.mapped("state") == ["failed", "failed"]
    assert states(after, rescue) == ["failed", "pending"]


def test_a_split_takes_the_place_of_the_delayable_in_its_graph(qenv):
    partners = qenv["res.partner"].create([{"name": f"P{i}"} for i in range(4)])
    first, last = node(partners[0], "first"), node(partners[0], "last")
    chunked = partners.delayable().record("chunk")
    chain(first, chunked, last)
    chunks = chunked.split(2)
    jobs = first.delay()
    assert qenv["queue.job"].search_count([]) == 4  # the unsplit call is not enqueued
    for chunk in chunks.delayables():
        assert parents_of(qenv, chunk) == [(jobs.id, "done")]
    assert parents_of(qenv, last) == sorted((d._job.id, "done") for d in chunks.delayables())


def test_splitting_an_empty_recordset_is_refused_clearly(qenv):
    with pytest.raises(ValueError, match=r"cannot split .* it has no records"):
        qenv["res.partner"].browse([]).delayable().record().split(2)
