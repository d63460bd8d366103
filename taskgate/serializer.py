"""Serializers for arguments, results and errors.

``pickle`` (the default) round-trips any picklable value, so a ``NamedTuple`` comes back as the
same ``NamedTuple``. ``json`` stores plain JSON (tuples come back as lists) and is the choice when
other languages read the store. Exceptions are carried as data: their type's import path, message
and traceback text, plus the pickled exception when the serializer is pickle, so the caller
re-raises the task's own exception type whenever it can be rebuilt, with the runner's traceback
as its ``__cause__``.
"""

from __future__ import annotations

import json
import pickle
import sys
import traceback
from abc import ABC, abstractmethod
from typing import Any

from taskgate.errors import ConfigError, RemoteTraceback, SerializationError, TaskFailedError


class Serializer(ABC):
    """Turns values and exceptions into bytes and back.

    ``dumps``/``loads`` raise :class:`SerializationError` (chained to the cause) on failure.
    """

    name: str

    @abstractmethod
    def _dumps(self, value: Any) -> bytes: ...

    @abstractmethod
    def _loads(self, data: bytes) -> Any: ...

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value``; raise :class:`SerializationError` when it cannot be."""
        try:
            return self._dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"the {self.name} serializer cannot serialize {type(value).__name__} value "
                f"{_short_repr(value)}: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        """Deserialize ``data``; raise :class:`SerializationError` when it cannot be."""
        try:
            return self._loads(data)
        except Exception as exc:
            raise SerializationError(
                f"the {self.name} serializer cannot read stored data ({exc}); was it written by "
                "an app with another serializer or another version of the task's types?"
            ) from exc

    def dumps_error(self, exc: BaseException) -> bytes:
        """Serialize an exception raised by a task (never fails: falls back to type and text)."""
        info: dict[str, Any] = {
            "module": type(exc).__module__,
            "qualname": type(exc).__qualname__,
            "message": safe_str(exc),
            "args": _jsonable_args(exc),
            "traceback": _format_traceback(exc),
        }
        if self.name == "pickle":
            try:
                info["pickled"] = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
                pickle.loads(info["pickled"])  # some exceptions pickle but cannot be rebuilt
            except Exception:
                info.pop("pickled", None)
        return self.dumps(info)

    def loads_error(self, data: bytes) -> BaseException:
        """Rebuild an exception stored by :meth:`dumps_error`, as its own type when possible.

        The exception comes back with the runner's traceback attached as its ``__cause__`` (a
        :class:`RemoteTraceback`). When its type cannot be rebuilt, a :class:`TaskFailedError`
        stands in for it. Without a pickled copy (the JSON serializer), a type is rebuilt only
        when its module is already imported in this process: the record names the module, and
        importing it would run that module's code on the word of whoever wrote the store.
        """
        info = self.loads(data)
        if not isinstance(info, dict) or not {"module", "qualname", "message"} <= info.keys():
            raise SerializationError(f"stored error data is not an error record: {info!r:.80}")
        remote = info.get("traceback")
        remote = remote if isinstance(remote, str) else ""
        exc = self._rebuild(info)
        if exc is None:
            type_name = f"{info['module']}.{info['qualname']}"
            exc = TaskFailedError(type_name, str(info["message"]), remote)
        if "Traceback" in remote:  # not for errors never raised (a runner lost by recovery)
            _attach_cause(exc, RemoteTraceback(remote))
        return exc

    def _rebuild(self, info: dict[str, Any]) -> BaseException | None:
        if self.name == "pickle" and "pickled" in info:
            try:
                exc = pickle.loads(info["pickled"])
                if isinstance(exc, BaseException):
                    return exc
            except Exception:
                pass
        return _rebuild_exception(info["module"], info["qualname"], info.get("args"))


class PickleSerializer(Serializer):
    """The default: any picklable value, at the highest pickle protocol."""

    name = "pickle"

    def _dumps(self, value: Any) -> bytes:
        return unframed(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def _loads(self, data: bytes) -> Any:
        return pickle.loads(data)


# Protocol 4 and up wrap a pickle in frames: after PROTO (2 bytes), FRAME and an 8-byte length.
_FRAME = 0x95
_FRAMED_FROM = 11


def unframed(data: bytes) -> bytes:
    """``data`` without its frame header when the whole pickle is one frame (any pickle under
    64 KB): frames only help a reader that streams from a file, and the 9 bytes are most of
    the overhead of the small pickles tasks are called with, stored with every invocation
    (arguments) and result. Frames are optional: ``pickle.loads`` reads both forms."""
    if (
        len(data) > _FRAMED_FROM
        and data[2] == _FRAME
        and int.from_bytes(data[3:_FRAMED_FROM], "little") == len(data) - _FRAMED_FROM
    ):
        return data[:2] + data[_FRAMED_FROM:]
    return data


class JsonSerializer(Serializer):
    """Plain JSON (UTF-8): tuples come back as lists and dict keys as strings; other types
    (sets, custom objects) are refused with :class:`SerializationError`."""

    name = "json"

    def _dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def _loads(self, data: bytes) -> Any:
        return json.loads(data)


SERIALIZERS: dict[str, type[Serializer]] = {"pickle": PickleSerializer, "json": JsonSerializer}


def get_serializer(name: str) -> Serializer:
    """The serializer named ``name``; :class:`ConfigError` for an unknown name."""
    try:
        return SERIALIZERS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown serializer {name!r}; use one of {', '.join(SERIALIZERS)}"
        ) from None


def _short_repr(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in naming its type when its ``__str__`` raises.

    A task's exception is any object: one that cannot be printed must still fail its run,
    not the worker that reports it.
    """
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() raised>"


def safe_repr(exc: BaseException) -> str:
    """``repr(exc)``, or a stand-in naming its type when its ``__repr__`` raises."""
    try:
        return repr(exc)
    except Exception:
        return f"<{type(exc).__name__} whose repr() raised>"


def _format_traceback(exc: BaseException) -> str:
    try:  # the traceback module copes with a raising __str__; this is for what it cannot
        return "".join(traceback.format_exception(exc))
    except Exception:
        return f"<the traceback of {type(exc).__name__} cannot be formatted>"


def _jsonable_args(exc: BaseException) -> list[Any] | None:
    try:
        json.dumps(exc.args)
    except Exception:  # TypeError, ValueError; anything an odd argument's hooks raise
        return None
    return list(exc.args)


def _rebuild_exception(module_name: Any, qualname: Any, args: Any) -> BaseException | None:
    """Construct the exception type named by the record from its args, if that works.

    The type is looked up in modules this process has already imported, never imported.
    """
    if not (isinstance(module_name, str) and isinstance(qualname, str) and isinstance(args, list)):
        return None
    target: Any = sys.modules.get(module_name)
    if target is None:
        return None
    try:
        for part in qualname.split("."):
            target = getattr(target, part)
        if isinstance(target, type) and issubclass(target, BaseException):
            return target(*args)
    except Exception:
        return None
    return None


def _attach_cause(exc: BaseException, remote: RemoteTraceback) -> None:
    """Make ``remote`` the cause of ``exc``, or of the last exception on its cause chain.

    Pickle drops ``__cause__``, so a rebuilt exception has one only when its type restores it
    itself; that chain is kept. The remote text already shows the whole chain as it was raised.
    """
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    if exc.__cause__ is None:
        exc.__cause__ = remote
