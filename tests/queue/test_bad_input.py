"""Every rejected option, call and argument fails at enqueue time, naming the
problem, and leaves nothing in the database."""

import os
from datetime import datetime, timedelta

import pytest

from job_worker.queue.serialization import MAX_ARGUMENT_CHARS, MAX_DEPTH


@pytest.fixture
def partner(qenv):
    partner = qenv["res.partner"].create({"name": "Acme"})
    return partner


def _nothing_left(env):
    env.cr.execute("SELECT COUNT(*) FROM queue_job")
    jobs = env.cr.fetchone()[0]
    env.cr.execute("SELECT COUNT(*) FROM queue_job_dependency")
    return jobs == 0 and env.cr.fetchone()[0] == 0


BAD_OPTIONS = [
    ({"channel": ""}, ValueError, "channel"),
    ({"channel": "a b"}, ValueError, "channel"),
    ({"channel": "exports/x"}, ValueError, "channel"),
    ({"channel": 3}, ValueError, "channel"),
    ({"priority": True}, TypeError, "priority"),
    ({"priority": 1.5}, TypeError, "priority"),
    ({"priority": "5"}, TypeError, "priority"),
    ({"eta": -1}, ValueError, "eta"),
    ({"eta": timedelta(seconds=-5)}, ValueError, "eta"),
    ({"eta": "tomorrow"}, TypeError, "eta"),
    ({"scheduled_at": -3}, ValueError, "scheduled_at"),
    ({"eta": datetime(2030, 1, 1), "scheduled_at": datetime(2031, 1, 1)}, ValueError, "disagree"),
    ({"max_retries": -1}, ValueError, "max_retries"),
    ({"max_retries": 2.0}, TypeError, "max_retries"),
    ({"description": 5}, TypeError, "description"),
    ({"identity_key": 42}, TypeError, "identity_key"),
    ({"timeout": -1}, ValueError, "timeout"),
    ({"timeout": "10"}, TypeError, "timeout"),
    ({"colour": "red"}, TypeError, "unknown job option"),
    # values the database would refuse (on PostgreSQL, aborting the caller's transaction)
    ({"priority": 2**31}, ValueError, "priority must be an int from -2147483648 to 2147483647"),
    ({"priority": -(2**31) - 1}, ValueError, "priority must be an int from"),
    ({"priority": 2**70}, ValueError, "priority must be an int from"),
    ({"max_retries": 2**64}, ValueError, "max_retries must be an int from 0 to 2147483647"),
    ({"eta": float("nan")}, ValueError, "eta must be a finite number"),
    ({"eta": float("inf")}, ValueError, "eta must be a finite number"),
    ({"scheduled_at": 1e300}, ValueError, r"scheduled_at 1e\+300 is out of range"),
    ({"eta": timedelta(days=999_999_999)}, ValueError, "eta .* is out of range"),
    ({"timeout": float("nan")}, ValueError, "timeout must be a finite number"),
    ({"timeout": float("inf")}, ValueError, "timeout must be a finite number"),
    ({"channel": "a" * 65}, ValueError, "channel must be 1 to 64 letters"),
    ({"channel": "root\n"}, ValueError, r"channel must be .*, got 'root\\n'"),
    ({"description": "nul\x00here"}, ValueError, "description .* holds a NUL character at index 3"),
    ({"description": "half \ud83d"}, ValueError, r"description .* lone surrogate '\\ud83d'"),
    ({"identity_key": "k\x00"}, ValueError, "identity_key .* holds a NUL character"),
    ({"identity_key": "k\udc00"}, ValueError, "identity_key .* holds a lone surrogate"),
    ({"identity_key": "k" * 501}, ValueError, "identity_key must be at most 500 characters"),
]


@pytest.mark.parametrize(
    ("options", "error", "words"), BAD_OPTIONS, ids=[repr(o[0]) for o in BAD_OPTIONS]
)
def test_bad_option_is_refused_with_delay(qenv, partner, options, error, words):
    with pytest.raises(error, match=words):
        partner.with_delay(**options).record()
    assert _nothing_left(qenv)


@pytest.mark.parametrize(
    ("options", "error", "words"), BAD_OPTIONS, ids=[repr(o[0]) for o in BAD_OPTIONS]
)
def test_bad_option_is_refused_by_direct_enqueue(qenv, partner, options, error, words):
    with pytest.raises(error, match=words):
        qenv["queue.job"].enqueue("res.partner", "record", [partner.id], **options)
    assert _nothing_left(qenv)


def test_bad_option_is_refused_by_set(qenv, partner):
    delayable = partner.delayable().record()
    with pytest.raises(TypeError, match="priority"):
        delayable.set(priority="high")
    assert delayable.options.priority == 10


def test_unknown_model_is_refused(qenv):
    with pytest.raises(ValueError, match=r"unknown model 'no.such'"):
        qenv["queue.job"].enqueue("no.such", "write", [1])
    assert _nothing_left(qenv)


@pytest.mark.parametrize(
    "method", ["no_such_method", "__class__", "__init__", "__secret__", "name", ""]
)
def test_unknown_dunder_or_field_method_is_refused_by_direct_enqueue(qenv, partner, method):
    with pytest.raises(ValueError, match=r"method|field|'__'"):
        qenv["queue.job"].enqueue("res.partner", method, [partner.id])
    assert _nothing_left(qenv)


@pytest.mark.parametrize("method", ["no_such_method", "__secret__", "name"])
def test_unknown_dunder_or_field_method_is_refused_by_with_delay(qenv, partner, method):
    with pytest.raises(AttributeError, match=r"method|field|'__'|__secret__"):
        getattr(partner.with_delay(), method)()
    with pytest.raises(AttributeError):
        getattr(partner.delayable(), method)()
    assert _nothing_left(qenv)


def test_methods_found_good_are_kept_and_the_others_still_refused(qenv, partner):
    # the methods a model's class has shown to be delayable are kept on it, only them
    from job_worker.queue.delayable import check_method

    partner.with_delay().record("once")
    assert "record" in type(partner).__dict__["_delayable_methods"]
    for method in ("no_such_method", "__secret__", "name", "", None):
        with pytest.raises(ValueError, match=r"method|field|'__'"):
            check_method(partner, method)
    assert partner.with_delay().record("twice").state == "pending"
    assert type(partner).__dict__["_delayable_methods"] == {"record"}


def test_private_single_underscore_methods_can_be_delayed(qenv, partner):
    job = partner.with_delay()._private_helper()
    job.run_now()
    assert job.result == "private"


@pytest.mark.parametrize(
    ("args", "kwargs", "path"),
    [
        ((object(),), {}, r"args\[0\]"),
        (({"when": {1, 2}},), {}, r"args\[0\]\['when'\]"),
        ((), {"blob": b"bytes"}, r"kwargs\['blob'\]"),
        (({1: "int key"},), {}, r"args\[0\]: dict keys must be strings"),
        (([1, float("nan")],), {}, r"args\[0\]\[1\]"),
    ],
)
def test_unserialisable_argument_is_refused_naming_its_path(qenv, partner, args, kwargs, path):
    with pytest.raises(TypeError, match=path):
        partner.with_delay().echo(*args, **kwargs)
    with pytest.raises(TypeError, match=path):
        partner.delayable().echo(*args, **kwargs)
    assert _nothing_left(qenv)


def _self_containing_list():
    a = []
    a.append(a)
    return a


def _self_containing_dict():
    d = {"name": "d"}
    d["me"] = d
    return d


def _two_containers_in_a_cycle():
    outer = {"inner": []}
    outer["inner"].append(outer)
    return outer


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            (_self_containing_list(),),
            {},
            r"args\[0\]\[0\]: cannot store a list that contains itself in a job; "
            r"it is args\[0\] again \(circular reference\)",
        ),
        (
            (),
            {"d": _self_containing_dict()},
            r"kwargs\['d'\]\['me'\]: cannot store a dict that contains itself in a job; "
            r"it is kwargs\['d'\] again \(circular reference\)",
        ),
        (
            (1, _two_containers_in_a_cycle()),
            {},
            r"args\[1\]\['inner'\]\[0\]: cannot store a dict that contains itself in a job; "
            r"it is args\[1\] again \(circular reference\)",
        ),
    ],
    ids=["list-contains-itself", "dict-contains-itself", "cycle-through-two-containers"],
)
def test_circular_argument_is_refused_naming_where_it_loops(qenv, partner, args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        partner.with_delay().echo(*args, **kwargs)
    with pytest.raises(TypeError, match=message):
        partner.delayable().echo(*args, **kwargs)
    assert _nothing_left(qenv)
    job = partner.with_delay().echo("after")  # the transaction is still usable
    job.run_now()
    assert job.state == "done"


def test_same_object_twice_but_not_circular_is_accepted(qenv, partner):
    x = [1]
    d = {"k": x}
    job = partner.with_delay().echo([x, x], (d, d), same=x)
    assert job.args == [[[1], [1]], {"$tuple": [{"k": [1]}, {"k": [1]}]}]
    assert job.kwargs == {"same": [1]}
    job.run_now()
    assert job.state == "done"


def test_circular_result_is_stored_as_its_repr():
    from job_worker.queue.serialization import encode_result

    a = _self_containing_list()
    assert encode_result(a) == "[[...]]"


def test_identity_function_returning_non_str_is_refused(qenv, partner):
    with pytest.raises(TypeError, match="returned 42, not a str"):
        partner.with_delay(identity_key=lambda d: 42).record()
    assert _nothing_left(qenv)


def test_store_hook_changing_the_call_is_refused(qenv):
    lead = qenv["crm.lead"].create({"name": "L"})
    with pytest.raises(ValueError, match="may not change method_name"):
        lead.with_context(store_hook="protected").with_delay().qualify()
    assert _nothing_left(qenv)


def test_a_bad_node_refuses_the_whole_graph(qenv, partner):
    from job_worker.delay import chain

    good = partner.delayable().record()
    bad = partner.delayable(identity_key=lambda d: None).record()
    with pytest.raises(TypeError):
        chain(good, bad).delay()
    assert _nothing_left(qenv)


def test_a_delayable_without_a_call_cannot_be_delayed(qenv, partner):
    with pytest.raises(ValueError, match="no call"):
        partner.delayable().delay()
    assert _nothing_left(qenv)


def test_a_delayable_is_one_call(qenv, partner):
    delayable = partner.delayable().record()
    with pytest.raises(ValueError, match="already captures"):
        delayable.echo()


def test_bad_split_size_is_refused(qenv, partner):
    for size in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="split size"):
            partner.delayable().record().split(size)


def test_a_graph_with_a_cycle_is_refused(qenv, partner):
    a = partner.delayable().record()
    b = partner.delayable().record()
    a.on_done(b)
    b.on_done(a)
    with pytest.raises(ValueError, match="cycle"):
        a.delay()
    assert _nothing_left(qenv)


def test_queue_limit_values_are_checked(qenv):
    Limit = qenv["queue.limit"]
    for vals in (
        {"name": "x y", "limit": 1},
        {"name": "c", "limit": -1},
        {"name": "c", "limit": 1.5},
        {"name": "c", "rate_limit": -2},
        {"name": "c", "limit": True},
    ):
        with pytest.raises(ValueError, match=r"queue.limit"):
            Limit.create(vals)
    assert Limit.search_count([]) == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "path"),
    [
        (("a\x00b",), {}, r"args\[0\]: text with a NUL character at index 1"),
        (([1, "\ud800"],), {}, r"args\[0\]\[1\]: text with a lone surrogate '\\ud800'"),
        ((), {"d": {"ok": ["x\udfff"]}}, r"kwargs\['d'\]\['ok'\]\[0\]: text with a lone surrogate"),
        (({"k\x00": 1},), {}, r"args\[0\]: dict key 'k\\x00' holds a NUL character"),
        ((), {"k": {"\ud800": 1}}, r"kwargs\['k'\]: dict key '\\ud800' holds a lone surrogate"),
        (([10**5000],), {}, r"args\[0\]\[0\]: ints of more than 4300 digits"),
    ],
    ids=["NUL", "surrogate", "surrogate-deep", "NUL-key", "surrogate-key", "huge-int"],
)
def test_text_the_database_cannot_hold_is_refused_naming_its_path(
    qenv, partner, args, kwargs, path
):
    with pytest.raises(ValueError, match=path):
        partner.with_delay().echo(*args, **kwargs)
    with pytest.raises(ValueError, match=path):
        qenv["queue.job"].enqueue("res.partner", "echo", [partner.id], list(args), kwargs)
    assert _nothing_left(qenv)


def _nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_arguments_nested_deeper_than_the_limit_are_refused(qenv, partner):
    job = partner.with_delay().echo(_nested(MAX_DEPTH))
    job.run_now()
    assert job.state == "done"
    with pytest.raises(
        ValueError, match=rf"args\[0\](\[0\])+: .* nested more than {MAX_DEPTH} deep"
    ):
        partner.with_delay().echo(_nested(MAX_DEPTH + 1))
    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} deep"):
        partner.with_delay().echo(x=_nested(100_000))  # no RecursionError
    qenv.cr.execute("SELECT COUNT(*) FROM queue_job")
    assert qenv.cr.fetchone()[0] == 1


def test_arguments_larger_than_the_limit_are_refused(qenv, partner):
    fits = "x" * (MAX_ARGUMENT_CHARS - len('[""]'))
    job = partner.with_delay().echo(fits)
    assert len(job.args[0]) == len(fits)
    with pytest.raises(
        ValueError, match=r"args: 1,048,577 characters of JSON, more than the 1,048,576"
    ):
        partner.with_delay().echo(fits + "x")
    with pytest.raises(ValueError, match=r"kwargs: 52,428,\d+ characters of JSON"):
        partner.with_delay().echo(blob="y" * 50 * 1024 * 1024)
    qenv.cr.execute("SELECT COUNT(*) FROM queue_job")
    assert qenv.cr.fetchone()[0] == 1


def test_a_result_too_deep_to_store_is_kept_as_text():
    from job_worker.queue.serialization import encode_result

    assert encode_result(_nested(50_000)).startswith("<list that cannot be stored>")
    assert encode_result(_nested(MAX_DEPTH + 5)).startswith("[[[[")


@pytest.mark.parametrize(
    "ids", [[-1], [0], [1, 2**31], [2**70]], ids=["negative", "zero", "past-int32", "past-int64"]
)
def test_record_ids_a_table_cannot_hold_are_refused(qenv, partner, ids):
    with pytest.raises(ValueError, match="record ids must be from 1 to 2147483647"):
        qenv["queue.job"].enqueue("res.partner", "record", ids)
    with pytest.raises(ValueError, match="record ids must be from 1 to 2147483647"):
        qenv["res.partner"].browse(ids).with_delay().record()
    assert _nothing_left(qenv)


def test_an_identity_function_returning_bad_text_is_refused(qenv, partner):
    with pytest.raises(ValueError, match=r"identity_key .* holds a NUL character"):
        partner.with_delay(identity_key=lambda d: "key\x00").record()
    with pytest.raises(ValueError, match="identity_key must be at most 500 characters"):
        partner.with_delay(identity_key=lambda d: "k" * 600).record()
    assert _nothing_left(qenv)


@pytest.mark.parametrize(
    ("values", "error", "words"),
    [
        ({"channel": "bad channel!"}, ValueError, r"set channel: channel must be"),
        ({"channel": "c" * 65}, ValueError, r"set channel: channel must be 1 to 64"),
        ({"max_retries": -7}, ValueError, r"set max_retries: max_retries must be an int from 0"),
        ({"priority": 2**40}, ValueError, r"set priority: priority must be an int from"),
        ({"priority": "high"}, TypeError, r"set priority: priority must be an int"),
        ({"timeout": float("nan")}, ValueError, r"set timeout: timeout must be a finite number"),
        ({"name": "forged\x00"}, ValueError, r"set name: description .* holds a NUL character"),
        (
            {"identity_key": "k" * 501},
            ValueError,
            r"set identity_key: identity_key must be at most",
        ),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_options_set_by_the_store_hook_are_checked_like_options(qenv, values, error, words):
    lead = qenv["crm.lead"].create({"name": "L"})
    with pytest.raises(error, match=r"crm\.lead\._job_store_values\(\) " + words):
        lead.with_context(store_values=values).with_delay().qualify()
    assert _nothing_left(qenv)


def test_good_options_set_by_the_store_hook_are_stored(qenv):
    lead = qenv["crm.lead"].create({"name": "L"})
    values = {"channel": "leads.vip", "max_retries": 0, "priority": -3, "name": "Qualify"}
    job = lead.with_context(store_values=values).with_delay().qualify()
    assert (job.channel, job.max_retries, job.priority, job.name) == ("leads.vip", 0, -3, "Qualify")


HOSTILE_ENQUEUES = [
    pytest.param(lambda p: p.with_delay().echo("a\x00b"), id="NUL argument"),
    pytest.param(lambda p: p.with_delay().echo(["\ud800"]), id="lone surrogate argument"),
    pytest.param(lambda p: p.with_delay().echo({"k\x00": 1}), id="NUL in a dict key"),
    pytest.param(lambda p: p.with_delay(priority=2**40).record(), id="priority past int32"),
    pytest.param(lambda p: p.with_delay(max_retries=2**63).record(), id="max_retries past int64"),
    pytest.param(
        lambda p: p.with_delay(identity_key=os.urandom(2000).hex()).record(),
        id="identity key too long to index",
    ),
    pytest.param(
        lambda p: p.env["queue.job"].enqueue("res.partner", "record", [2**40]),
        id="record id past int32",
    ),
    pytest.param(
        lambda p: (
            p.env["crm.lead"]
            .create({"name": "L"})
            .with_context(store_values={"priority": 2**40})
            .with_delay()
            .qualify()
        ),
        id="store hook priority past int32",
    ),
]


@pytest.mark.parametrize("call", HOSTILE_ENQUEUES)
def test_a_refused_enqueue_keeps_the_callers_records_and_transaction(qregistry, call):
    """On PostgreSQL a value refused by the server aborts the whole transaction:
    the records made before the enqueue would be lost. Refused up front, they stay."""
    from job_worker import SUPERUSER_ID, api

    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        before = env["res.partner"].create({"name": "Made before the enqueue"})
        with pytest.raises((TypeError, ValueError)):
            call(before)
        after = env["res.partner"].create({"name": "Made after the enqueue"})
        cr.commit()
    with qregistry.cursor() as cr:
        cr.execute(
            "SELECT name FROM res_partner WHERE id IN (%s, %s) ORDER BY id", [before.id, after.id]
        )
        assert [row[0] for row in cr.fetchall()] == [
            "Made before the enqueue",
            "Made after the enqueue",
        ]
        cr.execute("SELECT COUNT(*) FROM queue_job")
        assert cr.fetchone()[0] == 0


@pytest.mark.parametrize(
    "vals",
    [
        {"name": "c", "rate_limit": float("nan")},
        {"name": "c", "rate_limit": float("inf")},
        {"name": "c", "limit": 2**31},
        {"name": "c" * 65, "limit": 1},
        {"name": "c\n", "limit": 1},
    ],
    ids=["rate-nan", "rate-inf", "limit-past-int32", "long-name", "newline-name"],
)
def test_queue_limit_refuses_values_past_what_it_can_hold(qenv, vals):
    with pytest.raises(ValueError, match=r"queue.limit"):
        qenv["queue.limit"].create(vals)
    assert qenv["queue.limit"].search_count([]) == 0
