"""Finding an App by its import path (``module:attr``) and the import path of an App."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from taskgate.errors import ConfigError

if TYPE_CHECKING:
    from taskgate.app import App

# What multiprocessing's spawn calls the parent's __main__ module inside a child process.
SPAWNED_MAIN = "__mp_main__"


def load_app(spec: str) -> App:
    """Import ``module:attr`` and return the App it names.

    Raises:
        ConfigError: the spec is malformed, the module cannot be imported, the attribute is
            missing, or it is not an App.
    """
    from taskgate.app import App

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"invalid app {spec!r}: use 'module:attribute', e.g. 'myproj.tasks:app'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} of app {spec!r}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise ConfigError(
            f"{spec} is not a taskgate App but an object of type {type(app).__name__}; point "
            "--app at the object created with App(...)"
        )
    app.import_path = spec
    return app


def locate_app(app: App) -> str:
    """The ``module:attr`` under which a fresh process can import ``app``.

    The path the app was loaded from when :func:`load_app` loaded it; otherwise looks through
    imported modules for a module-level name bound to ``app``; an app defined in
    the main script is found under the name spawned processes give that script.

    Raises:
        ConfigError: no module-level name refers to the app.
    """
    if app.import_path is not None:
        return app.import_path
    in_main = None
    for module_name, module in list(sys.modules.items()):
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if value is app:
                # multiprocessing registers __main__ under SPAWNED_MAIN too: both are the script.
                if module_name not in ("__main__", SPAWNED_MAIN):
                    return f"{module_name}:{attr}"
                in_main = attr
    if in_main is not None:
        # Workers define the script's classes under SPAWNED_MAIN; results pickled there must
        # unpickle here, so that name must lead to this process's __main__ (as multiprocessing
        # arranges for its own children).
        sys.modules.setdefault(SPAWNED_MAIN, sys.modules["__main__"])
        return f"{SPAWNED_MAIN}:{in_main}"
    raise ConfigError(
        f"cannot find app {app.app_id!r} at module level in any imported module; ProcessRunner "
        "workers import the app by its module path, so define it as a module-level name"
    )
