"""The JSON log format of taskgate's programs (``--log-format json``): one object per line."""

from __future__ import annotations

import json
import logging
import sys

from taskgate.logfields import LIFECYCLE_KEYS, log_fields
from taskgate.logformat import JsonFormatter, make_log_handler


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("taskgate.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_line_has_time_level_logger_message_and_the_lifecycle_keys() -> None:
    record = _record("invocation %s failed", "abc", **log_fields("abc", "mod.task", 2, "r1"))
    record.created = 0.25
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "1970-01-01T00:00:00.250+00:00",
        "level": "WARNING",
        "logger": "taskgate.test",
        "message": "invocation abc failed",
        "invocation_id": "abc",
        "task": "mod.task",
        "attempt": 2,
        "runner_id": "r1",
    }


def test_unknown_fields_are_null_and_lines_without_them_have_no_such_keys() -> None:
    assert json.loads(JsonFormatter().format(_record("x", **log_fields("abc"))))["attempt"] is None
    plain = json.loads(JsonFormatter().format(_record("runner %s stopped", "r1")))
    assert not set(LIFECYCLE_KEYS) & set(plain)
    assert plain["message"] == "runner r1 stopped"


def test_an_exception_is_one_string_on_the_same_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    written = json.loads(line)["exc_info"]
    assert written.startswith("Traceback (most recent call last):")
    assert "ValueError: bad\nvalue" in written


def test_values_json_cannot_hold_are_written_as_text() -> None:
    line = json.loads(JsonFormatter().format(_record("x", **log_fields("a", task=object()))))  # type: ignore[arg-type]
    assert line["task"].startswith("<object object")


def test_the_json_handler_writes_json_even_on_a_terminal() -> None:
    assert isinstance(make_log_handler("json").formatter, JsonFormatter)
    assert not isinstance(make_log_handler("plain").formatter, JsonFormatter)
