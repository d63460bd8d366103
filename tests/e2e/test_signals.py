"""A runner on the main thread stops cleanly on SIGTERM and SIGINT, per backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from taskgate import App

    app = App("signals", backend=sys.argv[1], shutdown_grace_seconds=10)

    @app.task
    def announce() -> None:
        print("running", flush=True)

    announce()
    app.runner.run()
    print("stopped cleanly", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_runner_stops_on_signal(backend_url: str, sig: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, backend_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "running"  # the runner is executing work
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped cleanly" in out


# The runner's main thread asleep in select() when the signal lands on another of its threads
# (the kernel's choice under load): pthread_kill aims it at a thread of the script's own. The
# switch interval is so long that the main thread keeps the GIL until it blocks in select():
# once the signalling thread runs, the main thread is asleep there, the moment that was missed.
ELSEWHERE = textwrap.dedent(
    """
    import signal, sys, threading
    from taskgate import App
    from taskgate.runner import ThreadRunner

    app = App("signals-elsewhere", backend=sys.argv[1], shutdown_grace_seconds=10)


    class Runner(ThreadRunner):
        asleep = threading.Event()

        def _sleep_until_poked(self, timeout=None):
            self.asleep.set()
            super()._sleep_until_poked(timeout)


    runner = Runner(app, threads=2)


    def signal_this_thread():
        runner.asleep.wait()
        signal.pthread_kill(threading.get_ident(), signal.Signals[sys.argv[2]])
        print("sent", flush=True)


    sys.setswitchinterval(100.0)
    threading.Thread(target=signal_this_thread, daemon=True).start()
    runner.run()
    print("stopped cleanly", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_taken_by_another_thread_still_stops_the_runner(
    backend_url: str, sig: signal.Signals
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", ELSEWHERE, backend_url, sig.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"the runner slept through a {sig.name} taken by another thread:\n{err}")
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.split() == ["sent", "stopped", "cleanly"], err
