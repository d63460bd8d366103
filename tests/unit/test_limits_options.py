"""Declaring limits, the ``limits=`` task option and the budgets computed per call."""

from __future__ import annotations

import re
from typing import Any

import pytest

from taskgate import App, ConcurrencyControlType, Limit
from taskgate.concurrency import plan_for_call
from taskgate.errors import InvalidTaskOptionsError, SerializationError
from taskgate.limits import parse_rate
from taskgate.record import Budget, Rate

CC = ConcurrencyControlType


@pytest.fixture
def app() -> App:
    return App("limits-options", backend="memory://")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("120/m", Rate(120, 60.0)),
        ("5/2.5s", Rate(5, 2.5)),
        ("10/30", Rate(10, 30.0)),
        ("1/s", Rate(1, 1.0)),
        ("3/h", Rate(3, 3600.0)),
        ("7/d", Rate(7, 86400.0)),
        ("2/1.5m", Rate(2, 90.0)),
        (" 4 / 0.5 ", Rate(4, 0.5)),
        (Rate(3, 2), Rate(3, 2.0)),
    ],
)
def test_parse_rate_accepts_the_documented_forms(text: Any, expected: Rate) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "0/s",
        "-1/s",
        "1.5/s",
        "5/0",
        "5/0s",
        "5/x",
        "5/",
        "m/5",
        "5/1e999",
        5,
        Rate(0, 1.0),
        Rate(1, 0.0),
        Rate(1, float("inf")),
        Rate(True, 1.0),
    ],
)
def test_parse_rate_refuses_anything_else_naming_the_forms(text: Any) -> None:
    with pytest.raises(InvalidTaskOptionsError, match=re.escape('"120/m"')):
        parse_rate(text)


def test_limit_holds_parsed_values_and_reads_well(app: App) -> None:
    limit = app.limit("llm-api", concurrency=4, rate="120/m", fair_by="tenant_id")
    assert limit == Limit("llm-api", 4, Rate(120, 60.0), (), ("tenant_id",))
    assert repr(limit) == "Limit('llm-api', concurrency=4, rate='120/60s', fair_by=('tenant_id',))"
    keyed = app.limit("tenant", rate="10/s", key=("a", "b"))
    assert keyed.key == ("a", "b") and keyed.concurrency is None


def test_declaring_again_with_equal_values_returns_the_same_limit(app: App) -> None:
    first = app.limit("x", concurrency=2, rate="60/m", key="k")
    assert app.limit("x", concurrency=2, rate=Rate(60, 60.0), key=("k",)) is first
    with pytest.raises(InvalidTaskOptionsError, match="already declared"):
        app.limit("x", concurrency=3, rate="60/m", key="k")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "pass concurrency=N, rate='M/P' or both"),
        ({"concurrency": 0}, "at least 1"),
        ({"concurrency": True}, "at least 1"),
        ({"concurrency": 1.5}, "at least 1"),
        ({"rate": "fast"}, "invalid rate"),
        ({"concurrency": 1, "key": "not an identifier"}, "argument name"),
        ({"concurrency": 1, "key": ("a", "a")}, "distinct"),
        ({"concurrency": 1, "fair_by": 3}, "argument name"),
    ],
)
def test_invalid_limits_are_refused_at_declaration(
    app: App, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidTaskOptionsError, match=re.escape(message)):
        app.limit("x", **kwargs)


@pytest.mark.parametrize("name", ["", "  ", "a\nb", "tab\there", "a#b", 3, None])
def test_invalid_limit_names_are_refused(app: App, name: Any) -> None:
    with pytest.raises(InvalidTaskOptionsError, match="limit name"):
        app.limit(name, concurrency=1)


def test_limits_resolve_objects_and_names(app: App) -> None:
    api = app.limit("api", concurrency=2)
    tenant = app.limit("tenant", concurrency=1, key="tenant_id")

    @app.task(limits=[api, "tenant"])
    def job(tenant_id: str) -> None: ...

    assert job.options.limits == (api, tenant)

    @app.task(limits="api")
    def single() -> None: ...

    assert single.options.limits == (api,)


def test_an_undeclared_limit_name_says_to_declare_it_first(app: App) -> None:
    with pytest.raises(InvalidTaskOptionsError, match=re.escape("app.limit('later', ...)")):

        @app.task(limits=["later"])
        def job() -> None: ...


def test_a_limit_of_another_app_is_refused(app: App) -> None:
    other = App("other-app", backend="memory://")
    foreign = other.limit("api", concurrency=2)
    app.limit("api", concurrency=2)  # equal values, but another object: still refused
    with pytest.raises(InvalidTaskOptionsError, match="not declared on this app"):

        @app.task(limits=[foreign])
        def job() -> None: ...


def test_a_limit_listed_twice_is_refused(app: App) -> None:
    api = app.limit("api", concurrency=2)
    with pytest.raises(InvalidTaskOptionsError, match="twice"):

        @app.task(limits=[api, "api"])
        def job() -> None: ...


@pytest.mark.parametrize("option", ["key", "fair_by"])
def test_key_and_fair_by_arguments_must_be_parameters(app: App, option: str) -> None:
    limit = app.limit("tenant", concurrency=1, **{option: "tenant_id"})
    with pytest.raises(InvalidTaskOptionsError, match="no parameter 'tenant_id'"):

        @app.task(limits=[limit])
        def job(customer_id: str) -> None: ...


def test_limits_items_must_be_limits_or_names(app: App) -> None:
    with pytest.raises(InvalidTaskOptionsError, match="Limit objects"):

        @app.task(limits=[3])
        def job() -> None: ...


def test_declaring_stores_nothing(app: App) -> None:
    app.limit("api", concurrency=1)
    assert app.backend.limit_overrides() == {}
    assert app.backend.budget_usage() == []


def test_set_limit_validates_its_values(app: App) -> None:
    app.limit("api", concurrency=1)
    with pytest.raises(InvalidTaskOptionsError, match="changes nothing"):
        app.set_limit("api")
    with pytest.raises(InvalidTaskOptionsError, match="at least 1"):
        app.set_limit("api", concurrency=0)
    with pytest.raises(InvalidTaskOptionsError, match="invalid rate"):
        app.set_limit("api", rate="never")
    with pytest.raises(InvalidTaskOptionsError, match="limit name"):
        app.reset_limit("")
    assert app.backend.limit_overrides() == {}


# --- budgets per call ---------------------------------------------------------------------------


def test_budgets_are_the_limits_plus_the_tasks_own_scope_sorted_by_key(app: App) -> None:
    llm = app.limit("llm-api", concurrency=4, rate="120/m", fair_by="tenant_id")
    tenant = app.limit("tenant", concurrency=2, rate="10/s", key="tenant_id")

    @app.task(
        limits=[tenant, llm],
        running_concurrency=CC.KEYS,
        key_arguments=("doc_id",),
        running_limit=3,
    )
    def summarize(tenant_id: str, doc_id: int) -> None: ...

    plan = plan_for_call(summarize.options, summarize.task_id, {"tenant_id": "42", "doc_id": 7})
    assert plan.running_key is None
    assert plan.budgets == (
        Budget("limit llm-api", "llm-api", 4, Rate(120, 60.0), "tenant_id='42'"),
        Budget("limit tenant#tenant_id='42'", "tenant", 2, Rate(10, 1.0), None),
        Budget(f"{summarize.task_id}#doc_id=7", None, 3, None, None),
    )


def test_a_task_without_running_control_has_only_its_limits(app: App) -> None:
    app.limit("api", concurrency=1)

    @app.task(limits=["api"], reroute_on_concurrency_control=False)
    def job(x: int) -> None: ...

    plan = plan_for_call(job.options, job.task_id, {"x": 1})
    assert plan.budgets == (Budget("limit api", "api", 1),)
    assert plan.drop_when_blocked and plan.running_key is None and plan.registration_key is None


def test_tasks_without_limits_keep_their_plan(app: App) -> None:
    @app.task
    def plain(x: int) -> None: ...

    first = plan_for_call(plain.options, plain.task_id, {"x": 1})
    assert first is plan_for_call(plain.options, plain.task_id, {"x": 2})  # one shared plan
    assert first.budgets == ()


def test_an_unkeyable_limit_key_value_raises_at_the_call(app: App) -> None:
    app.limit("tenant", concurrency=1, key="tenant")

    @app.task(limits=["tenant"])
    def job(tenant: Any) -> None: ...

    with pytest.raises(SerializationError, match="limit 'tenant'"):
        job(object())
