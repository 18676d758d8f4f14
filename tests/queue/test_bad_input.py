"""Every rejected option, call and argument fails at enqueue time, naming the
problem, and leaves nothing in the database."""

from datetime import datetime, timedelta

import pytest


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
