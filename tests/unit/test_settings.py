"""Settings: defaults, TASKGATE_<NAME> environment, explicit arguments, validation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from taskgate import App
from taskgate.errors import ConfigError
from taskgate.settings import Settings

NO_ENV: dict[str, str] = {}


# --- defaults and sources ------------------------------------------------------------------------


def test_defaults() -> None:
    conf = Settings.load({}, NO_ENV)
    assert conf.backend == f"sqlite:///{Path.cwd() / '.taskgate' / 'taskgate.db'}"
    assert conf.serializer == "pickle"
    assert conf.runner_cls == "ThreadRunner"
    assert conf.threads is None  # the runner decides: 8 threads, or 1 per worker process
    assert conf.processes == (os.cpu_count() or 1)
    assert conf.lease_seconds == 30
    assert conf.result_ttl_seconds == 86400
    assert conf.shutdown_grace_seconds >= 0
    assert conf.max_recoveries >= 0


def test_explicit_none_means_not_given() -> None:
    conf = Settings.load({"backend": None, "serializer": None, "threads": None}, NO_ENV)
    assert conf == Settings.load({}, NO_ENV)


def test_environment_threads_is_applied_and_coerced_to_int() -> None:
    conf = Settings.load({}, {"TASKGATE_THREADS": "3"})
    assert conf.threads == 3
    assert type(conf.threads) is int


@pytest.mark.parametrize(
    ("variable", "raw", "name", "expected"),
    [
        ("TASKGATE_BACKEND", "memory://", "backend", "memory://"),
        ("TASKGATE_SERIALIZER", "json", "serializer", "json"),
        ("TASKGATE_RUNNER_CLS", "ProcessRunner", "runner_cls", "ProcessRunner"),
        ("TASKGATE_PROCESSES", "2", "processes", 2),
        ("TASKGATE_LEASE_SECONDS", "0.5", "lease_seconds", 0.5),
        ("TASKGATE_RESULT_TTL_SECONDS", "60", "result_ttl_seconds", 60.0),
        ("TASKGATE_SHUTDOWN_GRACE_SECONDS", "0", "shutdown_grace_seconds", 0.0),
        ("TASKGATE_MAX_RECOVERIES", "5", "max_recoveries", 5),
        ("TASKGATE_EAGER", "1", "eager", True),
        ("TASKGATE_QUEUES", "a, b", "queues", ("a", "b")),
        ("TASKGATE_ASYNC_IN_FLIGHT", "7", "async_in_flight", 7),
    ],
)
def test_every_setting_can_come_from_the_environment(
    variable: str, raw: str, name: str, expected: Any
) -> None:
    conf = Settings.load({}, {variable: raw})
    assert getattr(conf, name) == expected
    assert type(getattr(conf, name)) is type(expected)


def test_empty_environment_value_means_unset() -> None:
    assert Settings.load({}, {"TASKGATE_THREADS": ""}).threads is None


@pytest.mark.parametrize(
    ("name", "explicit", "variable", "raw"),
    [
        ("threads", 2, "TASKGATE_THREADS", "5"),
        ("serializer", "pickle", "TASKGATE_SERIALIZER", "json"),
        ("backend", "memory://", "TASKGATE_BACKEND", "redis://localhost:6379/0"),
        ("lease_seconds", 1.5, "TASKGATE_LEASE_SECONDS", "10"),
    ],
)
def test_explicit_arguments_win_over_the_environment(
    name: str, explicit: Any, variable: str, raw: str
) -> None:
    conf = Settings.load({name: explicit}, {variable: raw})
    assert getattr(conf, name) == explicit


def test_invalid_environment_value_is_ignored_when_an_explicit_value_wins() -> None:
    assert Settings.load({"threads": 2}, {"TASKGATE_THREADS": "abc"}).threads == 2


def test_explicit_string_numbers_are_coerced() -> None:
    conf = Settings.load({"threads": "4", "lease_seconds": "2.5"}, NO_ENV)
    assert conf.threads == 4
    assert conf.lease_seconds == 2.5


@pytest.mark.parametrize("lease_seconds", [0.1, 0.25, "0.5"])
def test_fractional_lease_seconds_are_allowed(lease_seconds: Any) -> None:
    conf = Settings.load({"lease_seconds": lease_seconds}, NO_ENV)
    assert conf.lease_seconds == float(lease_seconds)


def test_load_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKGATE_THREADS", "6")
    assert Settings.load({}).threads == 6


def test_app_reads_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKGATE_THREADS", "3")
    monkeypatch.setenv("TASKGATE_SERIALIZER", "json")
    app = App(backend="memory://")
    assert app.conf.threads == 3
    assert app.conf.serializer == "json"


def test_app_explicit_arguments_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKGATE_SERIALIZER", "json")
    monkeypatch.setenv("TASKGATE_THREADS", "3")
    app = App(backend="memory://", serializer="pickle", threads=2)
    assert app.conf.serializer == "pickle"
    assert app.conf.threads == 2


def test_app_backend_comes_from_the_environment_when_omitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKGATE_BACKEND", "memory://")
    assert App().conf.backend_url == "memory://"


# --- invalid settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("names", [["unknown_setting"], ["thread", "workers"]])
def test_unknown_settings_raise_config_error_naming_them(names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(dict.fromkeys(names, 1), NO_ENV)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("explicit", "named"),
    [
        ({"threads": 0}, "threads"),
        ({"threads": -2}, "threads"),
        ({"threads": "abc"}, "threads"),
        ({"threads": True}, "threads"),
        ({"processes": 0}, "processes"),
        ({"lease_seconds": -1}, "lease_seconds"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"lease_seconds": "soon"}, "lease_seconds"),
        ({"result_ttl_seconds": 0}, "result_ttl_seconds"),
        ({"shutdown_grace_seconds": -1}, "shutdown_grace_seconds"),
        ({"max_recoveries": -1}, "max_recoveries"),
        ({"serializer": "xml"}, "serializer"),
        ({"runner_cls": "Nope"}, "runner_cls"),
    ],
)
def test_bad_explicit_values_raise_config_error_naming_the_setting(
    explicit: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.load(explicit, NO_ENV)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("TASKGATE_THREADS", "abc"),
        ("TASKGATE_THREADS", "0"),
        ("TASKGATE_THREADS", "1.5"),
        ("TASKGATE_LEASE_SECONDS", "-1"),
        ("TASKGATE_SERIALIZER", "xml"),
        ("TASKGATE_RUNNER_CLS", "Nope"),
    ],
)
def test_bad_environment_values_raise_config_error(variable: str, raw: str) -> None:
    setting = variable.removeprefix("TASKGATE_").lower()
    with pytest.raises(ConfigError, match=setting.upper() + "|" + setting):
        Settings.load({}, {variable: raw})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(word, True) for word in ("1", "true", "yes", "on", "TRUE", "Yes", " on ")],
        *[(word, False) for word in ("0", "false", "no", "off", "FALSE", "No", " off ")],
    ],
)
def test_boolean_settings_read_the_usual_words_from_the_environment(
    raw: str, expected: bool
) -> None:
    conf = Settings.load({}, {"TASKGATE_EAGER": raw})
    assert conf.eager is expected


@pytest.mark.parametrize("raw", ["2", "y", "enabled", "truthy", "-1", "nope"])
def test_other_boolean_words_raise_config_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"TASKGATE_EAGER must be true or false.*1/true/yes/on"):
        Settings.load({}, {"TASKGATE_EAGER": raw})


@pytest.mark.parametrize("value", [1, 0, "maybe", 1.0, [True]])
def test_boolean_settings_refuse_non_booleans_given_explicitly(value: Any) -> None:
    with pytest.raises(ConfigError, match="eager must be true or false"):
        Settings.load({"eager": value}, NO_ENV)


def test_boolean_settings_take_bools_and_words_explicitly_and_on_assignment() -> None:
    assert Settings.load({"eager": True}, NO_ENV).eager is True
    assert Settings.load({"eager": "off"}, {"TASKGATE_EAGER": "1"}).eager is False
    assert Settings.load({}, NO_ENV).eager is False
    conf = Settings.load({}, NO_ENV)
    conf.eager = "yes"  # what a value read from a config file gives
    assert conf.eager is True
    with pytest.raises(ConfigError, match="eager"):
        conf.eager = "perhaps"
    assert conf.eager is True


def test_bad_environment_value_error_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TASKGATE_THREADS"):
        Settings.load({}, {"TASKGATE_THREADS": "abc"})


def test_app_with_unknown_setting_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown_setting"):
        App(backend="memory://", unknown_setting=1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"serializer": "xml"}, "serializer"),
        ({"runner_cls": "Nope"}, "runner_cls"),
        ({"threads": 0}, "threads"),
    ],
)
def test_app_with_bad_setting_raises_config_error(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        App(backend="memory://", **options)


@pytest.mark.parametrize(
    "url", ["bogus://x", "memory://somewhere", "not a url", "mem://", "redis://host/abc"]
)
def test_invalid_backend_url_raises_config_error_naming_it_at_construction(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        App(backend=url)
    assert repr(url) in str(info.value)


def test_invalid_backend_url_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKGATE_BACKEND", "nosuchscheme://x")
    with pytest.raises(ConfigError, match=r"TASKGATE_BACKEND.*nosuchscheme://x"):
        App()


def test_a_valid_backend_url_connects_lazily() -> None:
    # Nothing listens on port 1, and the directory does not exist: nothing is touched yet.
    App(backend="redis://127.0.0.1:1/0")
    App(backend="sqlite:////nonexistent-taskgate-dir/x.db")


@pytest.mark.parametrize(
    ("name", "below", "low", "high", "above"),
    [
        ("threads", 0, 1, 1024, 1025),
        ("processes", 0, 1, 1024, 1025),
        ("lease_seconds", 0.09, 0.1, 86400.0, 86400.1),
        ("result_ttl_seconds", 0.0009, 0.001, 3650 * 86400.0, 3650 * 86400.0 + 1),
        ("shutdown_grace_seconds", -0.001, 0.0, 86400.0, 86400.1),
        ("max_recoveries", -1, 0, 1000, 1001),
    ],
)
def test_numeric_settings_accept_their_documented_bounds_and_nothing_beyond(
    name: str, below: float, low: float, high: float, above: float
) -> None:
    assert getattr(Settings.load({name: low}, NO_ENV), name) == low
    assert getattr(Settings.load({name: high}, NO_ENV), name) == high
    for value in (below, above):
        with pytest.raises(ConfigError, match=name):
            Settings.load({name: value}, NO_ENV)


@pytest.mark.parametrize("name", ["lease_seconds", "result_ttl_seconds", "shutdown_grace_seconds"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e308, "nan", "inf"])
def test_nan_infinite_and_huge_durations_are_refused(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.load({name: value}, NO_ENV)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("TASKGATE_SHUTDOWN_GRACE_SECONDS", "nan"),
        ("TASKGATE_LEASE_SECONDS", "inf"),
        ("TASKGATE_LEASE_SECONDS", "1e-9"),
        ("TASKGATE_RESULT_TTL_SECONDS", "1e308"),
        ("TASKGATE_MAX_RECOVERIES", "99999999999999999999999"),
    ],
)
def test_out_of_range_environment_values_are_refused(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=variable.removeprefix("TASKGATE_").lower()):
        Settings.load({}, {variable: raw})


def test_a_number_too_large_for_a_float_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lease_seconds"):
        Settings.load({"lease_seconds": 10**400}, NO_ENV)


def test_unknown_setting_error_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean runner_cls"):
        Settings.load({"runer_cls": "ThreadRunner"}, NO_ENV)


def test_repr_masks_the_backend_password() -> None:
    conf = Settings.load({"backend": "redis://user:hunter2@127.0.0.1:1/0"}, NO_ENV)
    assert "hunter2" not in repr(conf)
    assert "backend='redis://user:***@127.0.0.1:1/0'" in repr(conf)
    assert "lease_seconds=30.0" in repr(conf)


# --- assignment after construction ---------------------------------------------------------------


def test_assigning_a_valid_value_changes_the_setting(app: App) -> None:
    app.conf.runner_cls = "ProcessRunner"
    app.conf.threads = 2
    assert app.conf.runner_cls == "ProcessRunner"
    assert app.conf.threads == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("runner_cls", "Nope"),
        ("serializer", "xml"),
        ("threads", 0),
        ("lease_seconds", -1),
        ("max_recoveries", -1),
        ("threads", "abc"),
        ("threads", 2.5),
        ("lease_seconds", "soon"),
        ("lease_seconds", float("nan")),
        ("lease_seconds", float("inf")),
        ("lease_seconds", 1e-9),
        ("lease_seconds", 1e308),
        ("result_ttl_seconds", float("inf")),
        ("result_ttl_seconds", 1e308),
        ("result_ttl_seconds", float("nan")),
        ("shutdown_grace_seconds", float("nan")),
        ("shutdown_grace_seconds", float("inf")),
        ("shutdown_grace_seconds", -0.5),
        ("max_recoveries", 10**30),
        ("processes", 0),
        ("processes", 10**6),
        ("threads", 10**6),
        ("backend", "nosuchscheme://x"),
        ("backend", "redis://host/abc"),
    ],
)
def test_assigning_an_invalid_value_raises_and_keeps_the_old_value(
    app: App, name: str, value: Any
) -> None:
    before = getattr(app.conf, name)
    with pytest.raises(ConfigError, match=name):
        setattr(app.conf, name, value)
    assert getattr(app.conf, name) == before


def test_settings_are_independent_between_apps() -> None:
    first = App(backend="memory://")
    second = App(backend="memory://")
    first.conf.threads = 1
    assert second.conf.threads is None


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("runer_cls", "runner_cls"), ("lease_second", "lease_seconds"), ("thread", "threads")],
)
def test_assigning_an_unknown_setting_raises_and_suggests_the_closest_name(
    app: App, name: str, suggestion: str
) -> None:
    with pytest.raises(ConfigError, match=f"unknown setting {name!r}.*did you mean {suggestion}"):
        setattr(app.conf, name, "ThreadRunner")
    assert name not in vars(app.conf)


def test_assigning_an_unrelated_unknown_name_raises_without_a_suggestion(app: App) -> None:
    name = "colour"  # what `app.conf.colour = "blue"` assigns
    with pytest.raises(ConfigError, match="unknown setting 'colour'") as info:
        setattr(app.conf, name, "blue")
    assert "did you mean" not in str(info.value)


def test_assigning_a_valid_backend_url_takes_effect(app: App) -> None:
    app.conf.backend = "redis://127.0.0.1:1/2"
    assert app.conf.backend_url == "redis://127.0.0.1:1/2"


# --- SQLite paths are absolute ------------------------------------------------------------------


def test_the_default_store_is_resolved_against_the_directory_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = App()
    monkeypatch.chdir(tmp_path.parent)  # a caller that changes directory keeps its store
    expected = f"sqlite:///{tmp_path}/.taskgate/taskgate.db"
    assert expected.startswith("sqlite:////")
    assert app.conf.backend == app.conf.backend_url == app.conf.backend_display == expected
    assert expected in repr(app)


@pytest.mark.parametrize(
    ("given", "relative"),
    [
        ("sqlite:///jobs.db", "jobs.db"),
        ("sqlite:///data/jobs.db", "data/jobs.db"),
        ("sqlite:///./jobs.db", "jobs.db"),
    ],
)
def test_a_relative_sqlite_url_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, relative: str
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{tmp_path / relative}"
    assert App(backend=given).conf.backend_url == expected
    assert Settings.load({}, {"TASKGATE_BACKEND": given}).backend_url == expected
    conf = Settings.load({"backend": "memory://"}, NO_ENV)
    conf.backend = given  # an assignment too
    assert conf.backend_url == expected
    conf.backend = None  # back to the default, resolved now
    assert conf.backend_url == f"sqlite:///{tmp_path / '.taskgate/taskgate.db'}"


@pytest.mark.parametrize(
    "url",
    ["sqlite:////abs/jobs.db", "memory://", "redis://localhost:1/0"],
)
def test_other_urls_are_kept_as_given(url: str) -> None:
    assert Settings.load({"backend": url}, NO_ENV).backend == url


# --- queues and async_in_flight ------------------------------------------------------------------


def test_queues_default_to_every_queue_and_async_in_flight_to_100() -> None:
    conf = Settings.load({}, NO_ENV)
    assert conf.queues is None
    assert conf.served_queues is None
    assert conf.async_in_flight == 100


@pytest.mark.parametrize("value", ["a,b", ["a", "b"], ("b", "a")])
def test_queues_take_a_comma_separated_text_or_names(value: Any) -> None:
    conf = Settings.load({"queues": value}, NO_ENV)
    assert conf.served_queues == frozenset({"a", "b"})
    conf.queues = "c"
    assert conf.queues == ("c",)
    conf.queues = None
    assert conf.served_queues is None


@pytest.mark.parametrize("value", ["", "a,,b", "a b", ["a", 3], "x" * 101, 5, []])
def test_invalid_queues_raise_config_error(value: Any) -> None:
    conf = Settings.load({}, NO_ENV)
    with pytest.raises(ConfigError, match="queue"):
        conf.queues = value


@pytest.mark.parametrize("value", [0, -1, 100_001, "many", 1.5])
def test_async_in_flight_is_bounded(value: Any) -> None:
    with pytest.raises(ConfigError, match="async_in_flight"):
        Settings.load({"async_in_flight": value}, NO_ENV)
