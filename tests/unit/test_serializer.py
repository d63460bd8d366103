"""The pickle and json serializers: values, failures, and task exceptions."""

from __future__ import annotations

import pickle
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from taskgate.errors import ConfigError, RemoteTraceback, SerializationError, TaskFailedError
from taskgate.serializer import JsonSerializer, PickleSerializer, Serializer, get_serializer

SERIALIZER_NAMES = ["pickle", "json"]


class SleepResult(NamedTuple):
    start: float
    end: float


class TaskBrokeError(Exception):
    """A task's own exception type, importable from this module."""


class CodedError(Exception):
    """A module-level exception with two constructor arguments that round-trip through args."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class NeedsTwoArgumentsError(Exception):
    """Importable, but its args cannot rebuild it (the constructor needs two, args has one)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"code {code}: {reason}")


class WithUnserializableArgsError(Exception):
    """Carries an argument neither JSON nor (being a lambda) pickle can store."""


@pytest.fixture(params=SERIALIZER_NAMES)
def serializer(request: pytest.FixtureRequest) -> Serializer:
    return get_serializer(request.param)


# --- get_serializer ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls"), [("pickle", PickleSerializer), ("json", JsonSerializer)])
def test_get_serializer_by_name(name: str, cls: type[Serializer]) -> None:
    chosen = get_serializer(name)
    assert isinstance(chosen, cls)
    assert chosen.name == name


@pytest.mark.parametrize("name", ["nope", "", "PICKLE", "xml"])
def test_get_serializer_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ConfigError, match="serializer") as info:
        get_serializer(name)
    assert repr(name) in str(info.value)


# --- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -3,
        2.5,
        "text",
        "ünïcødé ✓",
        [],
        [1, "a", None, [2.5]],
        {},
        {"a": 1, "nested": {"b": [True, False]}},
    ],
)
def test_json_like_values_round_trip_with_both_serializers(
    serializer: Serializer, value: Any
) -> None:
    data = serializer.dumps(value)
    assert isinstance(data, bytes)
    assert serializer.loads(data) == value


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        frozenset({"a"}),
        b"\x00\xff",
        {(1, 2): "tuple key", 3: "int key"},
        complex(1, 2),
        SleepResult(1.0, 2.0),
        TaskBrokeError("as a value"),
    ],
)
def test_pickle_round_trips_python_values_with_their_types(value: Any) -> None:
    serializer = get_serializer("pickle")
    loaded = serializer.loads(serializer.dumps(value))
    assert type(loaded) is type(value)
    if isinstance(value, BaseException):
        assert loaded.args == value.args
    else:
        assert loaded == value


@pytest.mark.parametrize(
    "value",
    [{}, {"x": 1}, b"", "text" * 100, list(range(1000)), b"\x00" * 70_000, [b"a" * 70_000, 1]],
)
def test_pickle_leaves_out_the_frame_header_of_a_one_frame_pickle(value: Any) -> None:
    # Any pickle under 64 KB is one frame (but the tiniest, with none): its header (9 bytes)
    # is left out, and what is stored is still a pickle that pickle.loads reads. Bigger ones
    # keep their frames.
    data = get_serializer("pickle").dumps(value)
    framed = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(data) == value
    if framed[2] != 0x95:
        assert data == framed
    elif len(framed) < 65536:
        assert data == framed[:2] + framed[11:]
        assert data[2] != 0x95  # no FRAME opcode
    else:
        assert data == framed


def test_pickle_reads_framed_pickles_stored_by_earlier_builds() -> None:
    framed = pickle.dumps({"x": 1}, protocol=pickle.HIGHEST_PROTOCOL)
    assert framed[2] == 0x95
    assert get_serializer("pickle").loads(framed) == {"x": 1}


def test_pickle_returns_the_same_named_tuple() -> None:
    serializer = get_serializer("pickle")
    loaded = serializer.loads(serializer.dumps(SleepResult(start=1.5, end=2.5)))
    assert type(loaded) is SleepResult
    assert loaded.start == 1.5
    assert loaded.end == 2.5


def test_json_returns_tuples_as_lists() -> None:
    serializer = get_serializer("json")
    assert serializer.loads(serializer.dumps({"pair": (1, 2)})) == {"pair": [1, 2]}


@pytest.mark.parametrize(
    ("name", "value", "type_name"),
    [
        ("pickle", lambda: 1, "function"),
        ("json", {1, 2}, "set"),
        ("json", b"bytes", "bytes"),
        ("json", object(), "object"),
        ("json", {"nested": {3}}, "dict"),
    ],
)
def test_unserializable_values_raise_serialization_error_naming_the_type(
    name: str, value: Any, type_name: str
) -> None:
    serializer = get_serializer(name)
    with pytest.raises(SerializationError) as info:
        serializer.dumps(value)
    message = str(info.value)
    assert name in message
    assert type_name in message
    assert info.value.__cause__ is not None


def test_serialization_error_message_shortens_huge_values() -> None:
    serializer = get_serializer("json")
    with pytest.raises(SerializationError) as info:
        serializer.dumps({"x" * 1000: {1}})
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("pickle", b"not a pickle"),
        ("pickle", b""),
        ("pickle", pickle.dumps([1, 2, 3])[:-3]),
        ("json", b"{not json"),
        ("json", b""),
        ("json", b"\xff\xfe\x00"),
    ],
)
def test_corrupted_bytes_raise_serialization_error(name: str, data: bytes) -> None:
    serializer = get_serializer(name)
    with pytest.raises(SerializationError, match=name) as info:
        serializer.loads(data)
    assert info.value.__cause__ is not None


def test_pickle_data_read_by_json_raises_serialization_error() -> None:
    data = get_serializer("pickle").dumps({"a": 1})
    with pytest.raises(SerializationError, match="serializer"):
        get_serializer("json").loads(data)


# --- task exceptions -----------------------------------------------------------------------------


def _raised(exc: BaseException) -> BaseException:
    """The exception after it was raised, so it carries a traceback like a task's would."""
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        KeyError("missing"),
        TaskBrokeError("the task broke"),
        CodedError(42, "answer"),
        RuntimeError(),
    ],
    ids=["ValueError", "KeyError", "module-level", "two-args", "no-args"],
)
def test_task_exception_comes_back_as_its_own_type(
    serializer: Serializer, exc: BaseException
) -> None:
    loaded = serializer.loads_error(serializer.dumps_error(_raised(exc)))
    assert type(loaded) is type(exc)
    assert loaded.args == exc.args
    assert str(loaded) == str(exc)


def test_rebuilt_exception_keeps_its_attributes(serializer: Serializer) -> None:
    loaded = serializer.loads_error(serializer.dumps_error(_raised(CodedError(7, "seven"))))
    assert isinstance(loaded, CodedError)
    assert loaded.code == 7
    assert loaded.reason == "seven"


def test_exception_of_a_local_type_becomes_task_failed_error(serializer: Serializer) -> None:
    class LocalError(Exception):
        def __init__(self, code: int, reason: str) -> None:
            super().__init__(f"code {code}: {reason}")

    loaded = serializer.loads_error(serializer.dumps_error(_raised(LocalError(3, "local"))))
    assert isinstance(loaded, TaskFailedError)
    assert "LocalError" in str(loaded)
    assert "code 3: local" in str(loaded)
    assert "LocalError" in loaded.type_name


def test_exception_that_cannot_be_rebuilt_from_its_args_becomes_task_failed_error(
    serializer: Serializer,
) -> None:
    exc = _raised(NeedsTwoArgumentsError(5, "five"))
    loaded = serializer.loads_error(serializer.dumps_error(exc))
    assert isinstance(loaded, TaskFailedError)
    assert "NeedsTwoArgumentsError" in str(loaded)
    assert "code 5: five" in str(loaded)


def test_exception_with_unserializable_args_becomes_task_failed_error(
    serializer: Serializer,
) -> None:
    exc = _raised(WithUnserializableArgsError("text", lambda: None))
    loaded = serializer.loads_error(serializer.dumps_error(exc))
    assert isinstance(loaded, TaskFailedError)
    assert "WithUnserializableArgsError" in str(loaded)


def test_task_failed_error_carries_the_remote_traceback(serializer: Serializer) -> None:
    class LocalError(Exception):
        pass

    def failing_task_body() -> None:
        raise LocalError("deep down")

    try:
        failing_task_body()
    except LocalError as caught:
        exc = caught
    loaded = serializer.loads_error(serializer.dumps_error(exc))
    assert isinstance(loaded, TaskFailedError)
    assert "failing_task_body" in loaded.remote_traceback
    assert "deep down" in loaded.remote_traceback


def test_dumps_error_works_for_an_exception_that_was_never_raised(
    serializer: Serializer,
) -> None:
    loaded = serializer.loads_error(serializer.dumps_error(ValueError("never raised")))
    assert type(loaded) is ValueError
    assert str(loaded) == "never raised"


def test_json_error_payload_is_plain_json() -> None:
    serializer = get_serializer("json")
    info = serializer.loads(serializer.dumps_error(_raised(TaskBrokeError("plain"))))
    assert isinstance(info, dict)
    assert info["message"] == "plain"
    assert "TaskBrokeError" in info["qualname"]


# --- the runner's traceback on the caller's side -------------------------------------------------


def _chained_failure() -> BaseException:
    def lookup_in_the_task() -> None:
        raise KeyError("inner")

    def failing_task_body() -> None:
        try:
            lookup_in_the_task()
        except KeyError as exc:
            raise TaskBrokeError("outer") from exc

    try:
        failing_task_body()
    except TaskBrokeError as caught:
        return caught
    raise AssertionError("unreachable")


def test_rebuilt_exception_has_the_remote_traceback_as_its_cause(serializer: Serializer) -> None:
    loaded = serializer.loads_error(serializer.dumps_error(_chained_failure()))
    assert type(loaded) is TaskBrokeError
    assert isinstance(loaded.__cause__, RemoteTraceback)
    assert loaded.__suppress_context__
    text = "".join(traceback.format_exception(loaded))
    # The task's own frames and its whole chain, as the runner saw them.
    assert "in failing_task_body" in text
    assert "in lookup_in_the_task" in text
    assert "KeyError: 'inner'" in text
    assert "the traceback of the task, from the runner:" in text


def test_remote_traceback_text_is_the_runner_side_traceback(serializer: Serializer) -> None:
    exc = _chained_failure()
    loaded = serializer.loads_error(serializer.dumps_error(exc))
    remote = RemoteTraceback.find(loaded)
    assert remote is not None
    assert remote.traceback == "".join(traceback.format_exception(exc))
    first_line, rest = str(remote).split("\n", 1)
    assert "from the runner" in first_line
    assert rest == remote.traceback.rstrip()


def test_task_failed_error_has_the_remote_traceback_as_its_cause(serializer: Serializer) -> None:
    class LocalError(Exception):
        pass

    loaded = serializer.loads_error(serializer.dumps_error(_raised(LocalError("local"))))
    assert isinstance(loaded, TaskFailedError)
    assert isinstance(loaded.__cause__, RemoteTraceback)
    assert loaded.__cause__.traceback == loaded.remote_traceback


def _with_cause(args: tuple[Any, ...]) -> CauseKeepingError:
    exc = CauseKeepingError(*args)
    exc.__cause__ = KeyError("restored by the type itself")
    return exc


class CauseKeepingError(Exception):
    """An exception type whose pickle restores a cause."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_with_cause, (self.args,))


def test_a_cause_restored_by_the_exception_type_is_kept() -> None:
    serializer = get_serializer("pickle")
    loaded = serializer.loads_error(serializer.dumps_error(_raised(CauseKeepingError("x"))))
    assert isinstance(loaded.__cause__, KeyError)
    assert isinstance(loaded.__cause__.__cause__, RemoteTraceback)


# --- JSON error records never import modules ----------------------------------------------------


def test_json_error_naming_a_module_not_imported_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported.txt"
    module_name = f"planted_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module_name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "class PlantedError(Exception):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    serializer = get_serializer("json")
    record = {
        "module": module_name,
        "qualname": "PlantedError",
        "message": "planted",
        "args": ["planted"],
        "traceback": "Traceback (most recent call last):\n  ...\nPlantedError: planted\n",
    }
    loaded = serializer.loads_error(serializer.dumps(record))
    assert isinstance(loaded, TaskFailedError)
    assert loaded.type_name == f"{module_name}.PlantedError"
    assert "planted" in str(loaded)
    assert isinstance(loaded.__cause__, RemoteTraceback)
    assert not marker.exists()
    assert module_name not in sys.modules


def test_json_error_of_an_imported_module_is_rebuilt_as_its_type() -> None:
    serializer = get_serializer("json")
    record = {"module": "builtins", "qualname": "ValueError", "message": "m", "args": ["m"]}
    loaded = serializer.loads_error(serializer.dumps(record))
    assert type(loaded) is ValueError
    assert loaded.__cause__ is None  # no traceback recorded, nothing to attach


def test_json_error_with_a_pickled_field_is_not_unpickled() -> None:
    serializer = get_serializer("json")
    record = {"module": "builtins", "qualname": "ValueError", "message": "m", "pickled": "x"}
    loaded = serializer.loads_error(serializer.dumps(record))
    assert isinstance(loaded, TaskFailedError)  # no args: nothing to rebuild from


def test_an_error_that_was_never_raised_gets_no_remote_traceback(serializer: Serializer) -> None:
    loaded = serializer.loads_error(serializer.dumps_error(TaskBrokeError("recorded, not raised")))
    assert loaded.__cause__ is None


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no str for me")

    def __repr__(self) -> str:
        raise ValueError("no repr for me")


@pytest.mark.parametrize("name", ["json", "pickle"])
def test_an_exception_that_cannot_be_printed_is_stored_all_the_same(name: str) -> None:
    """A task's exception whose __str__ raises must fail its run, not the worker storing it."""
    serializer = get_serializer(name)
    try:
        raise _Unprintable("why")
    except _Unprintable as exc:
        stored = serializer.dumps_error(exc)
    rebuilt = serializer.loads_error(stored)
    assert type(rebuilt).__name__ in ("_Unprintable", "TaskFailedError")
    if isinstance(rebuilt, TaskFailedError):
        assert "_Unprintable whose str() raised" in rebuilt.message
    assert "_Unprintable" in "".join(traceback.format_exception(rebuilt))
