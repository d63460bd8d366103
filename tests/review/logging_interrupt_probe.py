"""Probe (not a test): an asynchronous exception raised in a thread that logs leaks the logging
handler's lock (Handler.acquire() returns with the lock held, the exception fires before
Handler.handle's ``try``), and an ``Exception`` subclass fired inside ``emit`` is swallowed by
``handleError`` ("--- Logging error ---").
Run: .venv/bin/python tests/review/logging_interrupt_probe.py
"""

from __future__ import annotations

import ctypes
import io
import logging
import threading
import time

handler = logging.StreamHandler(io.StringIO())
log = logging.getLogger("probe")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False


class Boom(BaseException):
    """BaseException: not swallowed by logging, so the loop below ends."""


def body(ready: threading.Event) -> None:
    ready.set()
    try:
        while True:
            log.info("working %s", 1)
    except Boom:
        pass


def main() -> None:
    for trial in range(1000):
        ready = threading.Event()
        thread = threading.Thread(target=body, args=(ready,))
        thread.start()
        ready.wait()
        time.sleep(0.002)
        assert thread.ident is not None
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(Boom)
        )
        thread.join(2)
        if handler.lock is not None and not handler.lock.acquire(timeout=0.01):
            print("handler lock leaked at trial", trial)
            return
        if handler.lock is not None:
            handler.lock.release()
    print("no leak in 1000 trials")


if __name__ == "__main__":
    main()
