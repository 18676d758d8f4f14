"""with_delay(), delayable() and enqueue(): what a job row holds."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from job_worker.exceptions import MissingRecordsError
from job_worker.orm.fields import Datetime


@pytest.fixture
def partner(qenv):
    return qenv["res.partner"].create({"name": "Acme"})


def test_with_delay_enqueues_the_call_and_returns_the_job(qenv, partner):
    job = partner.with_delay(priority=5, channel="exports").record("hello")
    assert job._name == "queue.job" and len(job) == 1
    assert (job.model_name, job.method_name, job.record_ids) == (
        "res.partner",
        "record",
        [partner.id],
    )
    assert job.args == ["hello"] and job.kwargs == {}
    assert (job.state, job.priority, job.channel) == ("pending", 5, "exports")
    assert job.name == "res.partner.record"
    assert job.uuid and job.attempts == 0 and job.retry == 0
    assert qenv["job.log"].search_count([]) == 0  # nothing ran


def test_defaults_match_the_seed(qenv, partner):
    job = partner.with_delay().record()
    assert (job.channel, job.priority, job.max_retries, job.timeout, job.identity_key) == (
        "root",
        10,
        5,
        0.0,
        False,
    )
    assert job.scheduled_at <= Datetime.now()


def test_delayable_captures_then_delay_enqueues_once(qenv, partner):
    delayable = partner.delayable(priority=5, channel="exports")
    assert delayable.write({"name": "Queued"}) is delayable
    job = delayable.delay()
    assert delayable.delay() == job  # idempotent
    assert (job.method_name, job.args, job.priority) == ("write", [{"name": "Queued"}], 5)
    assert qenv["queue.job"].search_count([]) == 1
    assert partner.name == "Acme"


def test_set_changes_options_before_delay(qenv, partner):
    job = partner.delayable().record().set(priority=1, description="Custom").delay()
    assert (job.priority, job.name) == (1, "Custom")


def test_direct_enqueue_api(qenv, partner):
    job = qenv["queue.job"].enqueue(
        model_name="res.partner",
        method_name="write",
        record_ids=[partner.id],
        args=[{"name": "Updated by queue"}],
        kwargs={},
        channel="root",
        priority=10,
        max_retries=5,
    )
    assert (job.model_name, job.method_name, job.record_ids, job.args) == (
        "res.partner",
        "write",
        [partner.id],
        [{"name": "Updated by queue"}],
    )
    job.run_now()
    assert partner.name == "Updated by queue"


def test_ids_that_do_not_exist_are_accepted_and_fail_the_job_when_it_runs(qenv):
    job = qenv["queue.job"].enqueue(
        "res.partner", "write", [999999], args=[{"name": "x"}], max_retries=1
    )
    assert job.state == "pending"
    with pytest.raises(MissingRecordsError, match=r"res\.partner record\(s\) 999999"):
        job.run_now()  # failed at once: the records will not come back
    assert (job.state, job.attempts, job.exc_name) == (
        "failed",
        1,
        "job_worker.exceptions.MissingRecordsError",
    )


def test_arguments_of_every_accepted_type_round_trip(qenv, partner):
    when = datetime(2025, 6, 1, 9, 0)
    values = [
        None,
        True,
        3,
        2.5,
        "s",
        [1, [2]],
        (1, 2),
        {"a": {"$b": 1}},
        when,
        when.date(),
        Decimal("1.10"),
        UUID(int=7),
        partner,
    ]
    job = partner.with_delay().echo(*values, key=partner)
    job.run_now()
    assert job.state == "done"
    result = job.result
    assert result["args"][6] == {"$tuple": [1, 2]}
    assert result["args"][7] == {"a": {"$dict": {"$b": 1}}}
    from job_worker.queue.serialization import decode

    decoded = decode(result, qenv)
    assert decoded["args"] == values
    assert decoded["kwargs"]["key"] == partner


def test_execution_context_is_the_enqueuers(qenv, partner):
    company = qenv["res.company"].create({"name": "Other Co"})
    user = qenv["res.users"].create({"name": "Ann", "login": "ann", "company_id": company.id})
    records = partner.with_user(user).with_context(lang="fr_FR", tz="Europe/Paris")
    job = records.with_delay().record("ctx")
    assert (job.user_id, job.company_id) == (user, company)
    assert job.context == {"lang": "fr_FR", "tz": "Europe/Paris"}
    job.run_now()
    log = qenv["job.log"].search([])
    assert (log.uid, log.company_id, log.lang, log.tz, log.job_uuid) == (
        user.id,
        company.id,
        "fr_FR",
        "Europe/Paris",
        job.uuid,
    )


def test_with_company_is_the_jobs_company(qenv, partner):
    company = qenv["res.company"].create({"name": "Branch"})
    job = partner.with_company(company).with_delay().record()
    assert job.company_id == company
    job.run_now()
    assert qenv["job.log"].search([]).company_id == company.id


def test_eta_forms_are_stored_as_utc(qenv, partner):
    before = Datetime.now()
    in_hour = partner.with_delay(eta=timedelta(hours=1)).record()
    in_300 = partner.with_delay(eta=300).record()
    fixed = partner.with_delay(eta=datetime(2025, 6, 1, 9, 0)).record()
    aware = partner.with_delay(
        scheduled_at=datetime(2025, 6, 1, 11, 0, tzinfo=UTC).astimezone()
    ).record()
    assert (
        before + timedelta(hours=1) <= in_hour.scheduled_at <= Datetime.now() + timedelta(hours=1)
    )
    assert before + timedelta(seconds=300) <= in_300.eta <= Datetime.now() + timedelta(seconds=300)
    assert fixed.scheduled_at == datetime(2025, 6, 1, 9, 0)
    assert aware.scheduled_at == datetime(2025, 6, 1, 11, 0)
    assert {j.state for j in in_hour | in_300 | fixed | aware} == {"pending"}


@pytest.mark.parametrize(
    ("eta", "scheduled_at"),
    [(timedelta(seconds=10), 10), (10, 10.0), (90, timedelta(minutes=1, seconds=30))],
)
def test_eta_and_scheduled_at_agree_as_delays_of_the_same_length(qenv, partner, eta, scheduled_at):
    before = Datetime.now()
    job = partner.with_delay(eta=eta, scheduled_at=scheduled_at).record()
    delay = (
        timedelta(seconds=scheduled_at) if isinstance(scheduled_at, int | float) else scheduled_at
    )
    assert before + delay <= job.scheduled_at <= Datetime.now() + delay


def test_eta_and_scheduled_at_as_delays_of_different_lengths_disagree(qenv, partner):
    with pytest.raises(ValueError, match="disagree"):
        partner.with_delay(eta=timedelta(seconds=10), scheduled_at=11).record()


def test_eta_and_scheduled_at_may_agree(qenv, partner):
    job = partner.with_delay(eta=datetime(2030, 1, 1), scheduled_at=datetime(2030, 1, 1)).record()
    assert job.scheduled_at == datetime(2030, 1, 1)


def test_store_hook_may_change_channel_priority_and_add_fields(qenv):
    lead = qenv["crm.lead"].create({"name": "L"})
    job = lead.with_context(store_hook="channel").with_delay().qualify()
    assert (job.channel, job.priority) == ("leads", 1)
    job = lead.with_context(store_hook="extra").with_delay().qualify()
    assert job.origin == "lead-hook"


def test_split_makes_chunks_with_suffixed_descriptions_and_keys(qenv):
    partners = qenv["res.partner"].create([{"name": f"P{i}"} for i in range(5)])
    group = partners.delayable(channel="export", identity_key="export").record().split(2)
    jobs = group.delay()
    assert len(jobs) == 3
    assert jobs.mapped("name") == [
        "res.partner.record (split 1/3)",
        "res.partner.record (split 2/3)",
        "res.partner.record (split 3/3)",
    ]
    assert [len(j.record_ids) for j in jobs] == [2, 2, 1]
    assert jobs.mapped("identity_key") == ["export-1", "export-2", "export-3"]
    assert set(jobs.mapped("state")) == {"pending"}
    assert len(set(jobs.mapped("graph_uuid"))) == 1


def test_split_with_chain_runs_chunks_in_sequence(qenv):
    partners = qenv["res.partner"].create([{"name": f"P{i}"} for i in range(4)])
    jobs = partners.delayable().record().split(2, chain=True).delay()
    assert jobs.mapped("state") == ["pending", "waiting"]
    jobs[0].run_now()
    assert jobs.mapped("state") == ["done", "pending"]


def test_rolled_back_enqueue_leaves_no_job(qregistry):
    from job_worker import SUPERUSER_ID, api
    from job_worker.delay import chain

    with pytest.raises(RuntimeError), qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].create({"name": "Gone"})
        partner.with_delay().record()
        chain(partner.delayable().record(), partner.delayable().record()).delay()
        raise RuntimeError("caller fails after enqueueing")
    with qregistry.cursor() as cr:
        cr.execute("SELECT COUNT(*) FROM queue_job")
        assert cr.fetchone()[0] == 0
        cr.execute("SELECT COUNT(*) FROM queue_job_dependency")
        assert cr.fetchone()[0] == 0
