"""Loading the app named by ``--app``, applying ``--backend``, and refusing to create stores.

An app module that fails on import is reported by what went wrong, each with exit code 2:

- the module itself is not found: where it was looked for (no traceback: nothing ran);
- importing it raised a :class:`~taskgate.errors.ConfigError` (``App(...)`` runs at import, so
  an invalid setting such as ``TASKGATE_THREADS=abc`` surfaces here): that settings error;
- anything else (a missing dependency of the module, an exception in its code): the error,
  preceded by its traceback, always (it is the user's code that failed).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from taskgate import locate
from taskgate.app import App
from taskgate.cli.common import AppImportError, AppLoadError, CliConfigError
from taskgate.errors import ConfigError
from taskgate.settings import sqlite_path

# Frames of the import machinery and of taskgate's own lookup, left out of an import traceback.
_HIDDEN_FILES = (locate.__file__, importlib.__file__, "<frozen importlib._bootstrap")


def load_app(spec: str) -> App:
    """Import the :class:`~taskgate.App` named by ``spec`` (``"module:attr"``).

    The current directory is inserted first on ``sys.path`` (as Celery does), so a module next to
    the caller is found. The lookup itself is :func:`taskgate.locate.load_app`, the one
    ProcessRunner workers use, so whatever the command line accepts, workers accept too.

    Args:
        spec: ``"package.module:attribute"``.

    Returns:
        The app object.

    Raises:
        AppLoadError: ``spec`` is malformed, the module cannot be imported, the attribute is
            missing, or it is not a :class:`~taskgate.App`.
        CliConfigError: importing the module raised a :class:`ConfigError` (invalid settings).
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return locate.load_app(spec)
    except ConfigError as exc:
        raise _load_error(spec, exc, cwd) from exc


def _load_error(spec: str, exc: ConfigError, cwd: str) -> CliConfigError:
    """The error to report for a failed :func:`locate.load_app`, by what caused it."""
    cause = exc.__cause__
    module_name = spec.partition(":")[0]
    if cause is None:
        return AppLoadError(f"--app: {exc}")
    if isinstance(cause, ConfigError):
        return CliConfigError(f"--app {spec}: invalid settings (module {module_name!r}): {cause}")
    if isinstance(cause, ModuleNotFoundError) and _is_module_or_parent(cause.name, module_name):
        return AppLoadError(
            f"--app: {exc} ({type(cause).__name__}); searched the current directory ({cwd}) and "
            "PYTHONPATH"
        )
    if isinstance(cause, ModuleNotFoundError):
        why = f"module {module_name!r} was found, but a module it imports is missing"
    else:
        why = f"raised while importing module {module_name!r}"
    return AppImportError(f"--app: {exc} ({why}; traceback above)", format_import_traceback(cause))


def _is_module_or_parent(missing: str | None, module_name: str) -> bool:
    """Whether the module that was not found is ``module_name`` or one of its packages."""
    if missing is None:
        return True  # an import hook that did not say: assume the worst, the app's own module
    return module_name == missing or module_name.startswith(missing + ".")


def format_import_traceback(error: BaseException) -> str:
    """``error``'s traceback (and its chain) without importlib's and taskgate's frames."""
    formatted = traceback.TracebackException.from_exception(error)
    kept = [
        frame
        for frame in formatted.stack
        if not any(frame.filename.startswith(hidden) for hidden in _HIDDEN_FILES)
    ]
    formatted.stack = traceback.StackSummary.from_list(kept)
    return "".join(formatted.format())


def open_app(spec: str, backend_url: str | None, *, existing_store: bool) -> App:
    """Load the app, apply ``--backend``, and check the store exists when it must.

    Args:
        spec: ``--app``.
        backend_url: ``--backend``; when given it replaces the app's backend setting before
            anything is built.
        existing_store: the command only looks at (or clears) a store, so it must not create
            one.

    Raises:
        AppLoadError: the app cannot be loaded.
        ConfigError: ``existing_store`` and the store is an SQLite file that does not exist.
    """
    app = load_app(spec)
    if backend_url is not None:
        app.conf.backend = backend_url
    if existing_store:
        require_existing_store(app)
    return app


def require_existing_store(app: App) -> None:
    """Refuse to go on when the app's store would have to be created to be read.

    Only an SQLite file can be missing: opening one creates it (and its directory). A Redis
    database or the memory store exist as soon as they are reached.

    Raises:
        ConfigError: the app's SQLite file does not exist; names its absolute path.
    """
    path = sqlite_path(app.conf.backend_url)
    if path is None or path.exists():
        return
    raise ConfigError(
        f"no taskgate store at {path.absolute()}: this command never creates one; check "
        "--backend, TASKGATE_BACKEND and the current directory (a relative SQLite path is "
        "relative to it), or start a runner on this backend first"
    )
