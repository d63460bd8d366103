"""Tasks defined in a script run as ``__main__`` (task ids ``__main__.f``), with real processes.

Only runners inside that script can run them: its own ThreadRunner, or a ProcessRunner it starts
(workers load the script under ``__mp_main__``). The script is warned at decoration, and any
other runner fails the invocation with a TaskNotFoundError that says what to do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

WAIT = 60.0

SCRIPT = textwrap.dedent(
    """\
    import sys
    import threading

    from taskgate import App

    app = App(sys.argv[2], backend=sys.argv[1])

    @app.task
    def greet(name: str) -> str:
        return f"hi {name}"

    if __name__ == "__main__":
        if sys.argv[3] == "process-runner":
            app.conf.runner_cls = "ProcessRunner"
            app.conf.processes = 1
            runner = threading.Thread(target=app.runner.run, daemon=True)
            runner.start()
            print(greet("script").get_result(60), flush=True)
            app.runner.stop_runner_loop()
            runner.join(60)
        else:
            try:
                greet("elsewhere").get_result(60)
            except Exception as exc:
                print(f"{type(exc).__name__}: {exc}", flush=True)
    """
)

# The app of a runner started elsewhere: same app id and store, none of the script's tasks.
RUNNER_APP = textwrap.dedent(
    """\
    import os

    from taskgate import App

    app = App(os.environ["MAIN_TEST_APP_ID"], backend=os.environ["MAIN_TEST_BACKEND"])
    """
)


def _env(tmp_path: Path, backend_url: str, app_id: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "MAIN_TEST_APP_ID": app_id,
        "MAIN_TEST_BACKEND": backend_url,
    }


def test_a_process_runner_started_from_the_script_runs_its_tasks(
    shared_backend_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    app_id = f"main-{uuid.uuid4().hex[:12]}"
    done = subprocess.run(
        [sys.executable, str(script), shared_backend_url, app_id, "process-runner"],
        env=_env(tmp_path, shared_backend_url, app_id),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hi script"
    # Warned once, at the decoration line of the script (workers load it as __mp_main__).
    assert done.stderr.count("MainModuleTaskWarning") == 1, done.stderr
    assert f"{script}:8: MainModuleTaskWarning: task __main__.greet" in done.stderr


def test_a_runner_started_elsewhere_fails_the_invocation_saying_what_to_do(
    shared_backend_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    (tmp_path / "runner_app.py").write_text(RUNNER_APP)
    app_id = f"main-{uuid.uuid4().hex[:12]}"
    env = _env(tmp_path, shared_backend_url, app_id)
    runner = subprocess.Popen(
        [sys.executable, "-m", "taskgate", "runner", "start", "--app", "runner_app:app"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        caller = subprocess.run(
            [sys.executable, str(script), shared_backend_url, app_id, "call"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
    finally:
        runner.send_signal(signal.SIGTERM)
        _, runner_err = runner.communicate(timeout=WAIT)
    assert caller.returncode == 0, caller.stderr
    output = caller.stdout.strip()
    assert output.startswith("TaskNotFoundError: task __main__.greet was defined in a script"), (
        output
    )
    assert "Move the task into a module" in output
    assert "ProcessRunner" in output
    assert "MainModuleTaskWarning" in caller.stderr
    assert runner.returncode == 0, runner_err
    assert "cannot run" in runner_err and "Move the task into a module" in runner_err
