"""The Lua the Redis backend runs, in the two forms a server can take it.

Each contract operation is one script (``scripts/<name>.lua``) that runs on the steps of
``lib_core.lua`` and, where needed, ``lib.lua``, ``lib_claims.lua`` and ``lib_budgets.lua``.

- On Redis 7 and later: one function library (``FUNCTION LOAD``) holds the steps once and every
  script as a function, called by ``FCALL``. The steps' closures are made once, when the
  library loads (the budget steps of ``lib_budgets.lua`` when a call first meets a budget,
  then kept); a script sent by ``EVALSHA`` runs its whole text on every call, and each
  ``local function`` of the steps is a closure allocated (and collected) per call: about 10 us
  of server CPU per call with every step included. A library's per-call state is reset by
  ``begin_call`` (see ``_LIBRARY_BEGIN``).
- On older servers (6.2): each script as its own text (the steps it needs, then
  ``P = KEYS[1]``, then the script), loaded once and called by ``EVALSHA``.

The library's name and its functions' carry a digest of its text, so that processes running
different taskgate versions against one Redis each call their own; a library of an older
version stays loaded (a few hundred KB) until ``FUNCTION DELETE`` or ``FUNCTION FLUSH``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

SCRIPTS = (
    "register",
    "claim",
    "finish_and_claim",
    "release",
    "renew",
    "recover",
    "recover_runner",
    "expire",
    "blocked_by",
    "purge",
    "unidle",
    "watch",
    "set_limit_override",
    "reset_limit_override",
    "budget_usage",
    "budget_waiting",
    "cancel",
    "register_tick",
    "announce",
    "runner_infos",
    "page_chunk",
    "store_format",
)

# Scripts that only store or read records need the core steps alone: less Lua to run per call.
CORE_ONLY = frozenset(
    {
        "register",
        "register_tick",
        "blocked_by",
        "purge",
        "watch",
        "expire",
        "budget_waiting",
        "announce",
        "runner_infos",
        "page_chunk",
        "store_format",
    }
)
# Scripts that run another's text after their own (register_tick checks, then registers).
FOLLOWED_BY = {"register_tick": "register"}
# Scripts that only read: as functions they are flagged 'no-writes', so that they run when the
# server is out of memory, as a script that calls no write command does.
READ_ONLY = frozenset(
    {"blocked_by", "runner_infos", "page_chunk", "budget_usage", "budget_waiting"}
)
# Scripts that only delete (expired or purged invocations): as functions they are flagged
# 'allow-oom', so that a full server (noeviction) still runs them; they free the memory it
# lacks. Redis 7 refuses any other function that may write when full, before it runs.
FREES_MEMORY = frozenset({"expire", "purge"})
# The layout check runs before each process's first script, expiry included, so it may not be
# refused when those are not: 'allow-oom' too (it writes one small key, once per store).
ALLOW_OOM = FREES_MEMORY | {"store_format"}

# The library's reset of the steps' per-call state (a script's text starts afresh each call):
# the app's prefix, register_tick's argument offset, the call's time, whether lanes exist, the
# earliest timed entry, the deferred wake-ups, whether a claim stopped early (Q.more), the
# counts' changes not written yet (Q.tally: a script that failed half way may have left some),
# and the budget steps' per-call state (the overrides read; the steps themselves are built
# once, on first use, and kept).
_LIBRARY_BEGIN = """
local function begin_call(prefix)
  P, ARG_BASE, now_number, now_text, earliest_due = prefix, 0, nil, nil, nil
  Q.marked, Q.deferred, Q.more, Q.tally = nil, nil, nil, nil
  if built_steps then built_steps.new_call() end
end
"""


# The steps after lib_core.lua, in the order they need each other's names.
_STEPS = ("lib", "lib_claims", "lib_budgets")


# The texts never change while a process runs: read and built once per process, not once per
# backend (every App, every worker process, opens one; building them all takes ~3 ms).
@functools.cache
def _read(part: str) -> str:
    folder = resources.files("taskgate.backends.redis").joinpath("scripts")
    return folder.joinpath(f"{part}.lua").read_text()


def _body(name: str) -> str:
    """The script's own text (and the text of the script it runs after its own)."""
    parts = [name]
    if name in FOLLOWED_BY:
        parts.append(FOLLOWED_BY[name])
    return "\n".join(_read(part) for part in parts)


@functools.cache
def script_source(name: str) -> str:
    """The script's source for EVALSHA: lib_core.lua, then the other steps (lib.lua,
    lib_claims.lua, lib_budgets.lua) unless it only stores or reads records, then the prefix,
    then the script."""
    parts = ["lib_core"] if name in CORE_ONLY else ["lib_core", *_STEPS]
    return "\n".join([*(_read(part) for part in parts), "P = KEYS[1]", _body(name)])


@functools.cache
def script_sha(name: str) -> str:
    """The SHA1 of :func:`script_source` (what EVALSHA names the script by)."""
    return hashlib.sha1(script_source(name).encode()).hexdigest()


@functools.cache
def library_source() -> tuple[Mapping[str, str], str]:
    """The function library: (function name per script, the library's source for FUNCTION LOAD).

    Every script becomes ``function(KEYS, ARGV) begin_call(KEYS[1]) <its text> end``: its text
    reads KEYS and ARGV as it does as a script, and its locals stay its own. The name's digest
    covers the whole text (steps, reset, flags, scripts), the names aside.
    """
    steps = "\n".join(_read(part) for part in ("lib_core", *_STEPS))
    parts = [steps, _LIBRARY_BEGIN]
    for name in SCRIPTS:
        flags = (
            "{'no-writes'}" if name in READ_ONLY else "{'allow-oom'}" if name in ALLOW_OOM else "{}"
        )
        parts.append(
            f"redis.register_function{{function_name='{_NAME}_{name}', flags={flags}, "
            f"callback=function(KEYS, ARGV)\nbegin_call(KEYS[1])\n{_body(name)}\nend}}"
        )
    text = "\n".join(parts)
    library = f"taskgate_{hashlib.sha1(text.encode()).hexdigest()[:12]}"
    names = MappingProxyType({name: f"{library}_{name}" for name in SCRIPTS})
    return names, f"#!lua name={library}\n" + text.replace(f"'{_NAME}_", f"'{library}_")


# Stands for the library's name in the text its digest is taken of (no script contains it).
_NAME = "@library@"
