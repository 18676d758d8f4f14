"""The counts of waiting and pending jobs by channel (``JobStore.queued_counts``):
whatever moves a job in or out of those states, or to another channel, keeps them
equal to a live count. PostgreSQL keeps them with triggers (most tests here); SQLite
counts from its indexes, and the same checks hold."""

from __future__ import annotations

import threading

import pytest

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.db.jobstore import job_store
from job_worker.delay import chain, group
from job_worker.exceptions import DatabaseOpenError


def live(cr) -> dict[tuple[str, str], int]:
    cr.execute(
        "SELECT channel, state, COUNT(*) FROM queue_job"
        " WHERE state IN ('waiting', 'pending') GROUP BY channel, state"
    )
    return {(channel, state): int(n) for channel, state, n in cr.fetchall()}


def kept(cr) -> dict[tuple[str, str], int]:
    return job_store(cr.backend).queued_counts(cr)


def assert_exact(cr, expected: dict[tuple[str, str], int] | None = None) -> None:
    counted = live(cr)
    assert kept(cr) == counted
    if expected is not None:
        assert counted == expected


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def test_every_way_in_and_out_keeps_the_counts_exact(qenv, partner):
    cr = qenv.cr
    assert_exact(cr, {})
    done = partner.with_delay(channel="root.a").record("done")
    retried = partner.with_delay(channel="root.a", max_retries=3).fail_then_write()
    failed = partner.with_delay(channel="root.b").fail_hard()
    a, b, c = (partner.delayable(channel="root.g").record(n) for n in "abc")
    chain(a, group(b, c)).delay()
    assert_exact(cr, {("root.a", "pending"): 2, ("root.b", "pending"): 1,
                      ("root.g", "pending"): 1, ("root.g", "waiting"): 2})  # fmt: skip
    assert done.run_now() is True  # pending -> started -> done
    retried.run_now()  # back to pending, one attempt spent
    with pytest.raises(Exception, match="no point retrying"):
        failed.run_now()
    assert_exact(cr, {("root.a", "pending"): 1, ("root.g", "pending"): 1,
                      ("root.g", "waiting"): 2})  # fmt: skip
    a._job.run_now()  # waiting -> pending for b and c
    assert_exact(cr, {("root.a", "pending"): 1, ("root.g", "pending"): 2})
    failed.requeue()  # failed -> pending
    retried.cancel()
    b._job.write({"channel": "root.moved"})  # by hand, through the ORM
    assert_exact(cr, {("root.b", "pending"): 1, ("root.g", "pending"): 1,
                      ("root.moved", "pending"): 1})  # fmt: skip
    c._job.set_done()
    b._job.unlink()
    assert_exact(cr, {("root.b", "pending"): 1})
    cr.execute("UPDATE queue_job SET state = 'waiting' WHERE id = %s", [failed.id])  # raw SQL
    assert_exact(cr, {("root.b", "waiting"): 1})
    cr.execute("DELETE FROM queue_job")
    assert_exact(cr, {})


def test_a_rolled_back_enqueue_counts_nothing(qregistry):
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["res.partner"].create({"name": "Acme"}).with_delay().record("kept")
    cr = qregistry.cursor()
    try:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["res.partner"].create({"name": "Gone"}).with_delay().record("rolled back")
        assert kept(cr) == {("root", "pending"): 1 + 1}  # the transaction sees its own
    finally:
        cr.rollback()
        cr.close()
    with qregistry.cursor(readonly=True) as cr:
        assert_exact(cr, {("root", "pending"): 1})


def test_folding_keeps_the_sums_and_shrinks_the_rows(pg_url):
    registry = Registry(pg_url, ["jobapp"])
    store = job_store(registry.backend)
    try:
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            partner = env["res.partner"].create({"name": "Acme"})
            for i in range(30):
                partner.with_delay(channel=f"root.c{i % 3}").record(str(i))
            env["queue.job"].search([("channel", "=", "root.c0")]).cancel()
        with registry.cursor() as cr:
            folded = store.compact_counts(cr)
            cr.execute("SELECT COUNT(*) FROM queue_job_count")
            rows = cr.fetchone()[0]
            assert_exact(cr, {("root.c1", "pending"): 10, ("root.c2", "pending"): 10})
        assert (folded, rows) == (40 - 2, 2)  # 30 adds, 10 removals -> two sums
        with registry.cursor() as cr:
            assert store.compact_counts(cr) == 0
    finally:
        registry.close()


def test_the_maintenance_fold_vacuums_what_it_folded(pg_url):
    """Folding leaves dead rows; the maintenance's fold vacuums them at once, so the
    table readers scan stays a few pages however long the queue runs."""
    registry = Registry(pg_url, ["jobapp"])
    store = job_store(registry.backend)
    session = store.session(role="maintenance")
    try:
        with registry.cursor() as cr:
            partner = api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "A"})
            for _ in range(20):
                partner.with_delay().record()
        assert store.fold_counts(session) == 19
        with registry.cursor(readonly=True) as cr:
            cr.execute(
                "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables"
                " WHERE relname = 'queue_job_count' AND schemaname = current_schema()"
            )
            assert cr.fetchone() == (1, 0)
            assert_exact(cr, {("root", "pending"): 20})
        assert store.fold_counts(session) == 0  # nothing new: no vacuum either
    finally:
        session.close()
        registry.close()


def test_truncate_and_recount(pg_url):
    registry = Registry(pg_url, ["jobapp"])
    try:
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["res.partner"].create({"name": "Acme"}).with_delay().record()
            cr.execute("TRUNCATE queue_job CASCADE")
            assert_exact(cr, {})
            cr.execute("ALTER TABLE queue_job DISABLE TRIGGER USER")  # a bulk load
            cr.execute(
                "INSERT INTO queue_job (uuid, model_name, method_name, state, priority, channel,"
                " scheduled_at, fair_key, weight) SELECT md5(g::text), 'res.partner', 'record',"
                " 'pending', 10, 'bulk', now(), '', 1 FROM generate_series(1, 5) g"
            )
            cr.execute("ALTER TABLE queue_job ENABLE TRIGGER USER")
            assert kept(cr) == {}
            job_store(cr.backend).recount(cr)
            assert_exact(cr, {("bulk", "pending"): 5})
    finally:
        registry.close()


def test_an_older_schema_gets_its_counts_at_upgrade(pg_url):
    db_url = pg_url
    registry = Registry(db_url, ["jobapp"])
    try:
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            partner = env["res.partner"].create({"name": "Acme"})
            for channel in ("root", "root", "mail"):
                partner.with_delay(channel=channel).record()
            # as a database of the version before the kept counts was
            for trigger in ("insert", "update", "delete"):
                cr.execute(f"DROP TRIGGER queue_job_counted_{trigger} ON queue_job")
            cr.execute("DROP TABLE queue_job_count")
            cr.execute("UPDATE job_worker_module SET version = 1 WHERE name = 'job_worker.queue'")
            cr.execute(
                "DELETE FROM job_worker_migration WHERE module = 'job_worker.queue' AND version >= 2"
            )
            partner.with_delay(channel="mail").record()  # not counted by anything
    finally:
        registry.close()
    with pytest.raises(DatabaseOpenError, match=r"migrations not run: job_worker.queue 1 < [0-9]"):
        Registry(db_url, ["jobapp"], init=False, create=False)
    registry = Registry(db_url, ["jobapp"])  # upgrades
    try:
        assert "job_worker.queue 2: waiting and pending jobs counted" in " ".join(
            registry.schema_changes.migrated  # type: ignore[union-attr]
        )
        with registry.cursor() as cr:
            assert_exact(cr, {("root", "pending"): 2, ("mail", "pending"): 2})
    finally:
        registry.close()


def test_concurrent_enqueuers_and_claimers_keep_the_counts_exact(pg_url):
    """Enqueuers, state changes and folds at once: no lost or doubled delta, and no
    enqueuer waits on another's counter row (each holds its transaction open)."""
    registry = Registry(pg_url, ["jobapp"])
    try:
        with registry.cursor() as cr:
            partner_id = (
                api.Environment(cr, SUPERUSER_ID, {})["res.partner"].create({"name": "A"}).id
            )
        errors: list[BaseException] = []
        inside = threading.Barrier(4, timeout=10)

        def enqueue(worker: int) -> None:
            try:
                mine: list[int] = []  # each enqueuer cancels its own jobs only: two
                # enqueuers cancelling the same job would be refused (it is cancelled)
                for round_ in range(20):
                    with registry.cursor() as cr:
                        env = api.Environment(cr, SUPERUSER_ID, {})
                        partner = env["res.partner"].browse(partner_id)
                        for i in range(5):
                            job = partner.with_delay(channel=f"root.w{(worker + i) % 2}").record()
                            mine.append(job.id)
                        if round_ == 0:  # four open transactions that all enqueued
                            inside.wait()
                        if round_ % 3 == 0:
                            env["queue.job"].search(
                                [
                                    ("id", "in", mine),
                                    ("state", "=", "pending"),
                                    ("channel", "=", f"root.w{worker % 2}"),
                                ],
                                limit=2,
                            ).cancel()
            except BaseException as exc:  # reported below
                errors.append(exc)

        def fold(stop: threading.Event) -> None:
            store = job_store(registry.backend)
            while not stop.is_set():
                with registry.cursor() as cr:
                    store.compact_counts(cr)

        stop = threading.Event()
        folder = threading.Thread(target=fold, args=(stop,))
        folder.start()
        threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        stop.set()
        folder.join(timeout=10)
        assert not errors, errors
        with registry.cursor(readonly=True) as cr:
            counted = live(cr)
            assert sum(counted.values()) > 0 and kept(cr) == counted
    finally:
        registry.close()
