"""Stand-ins for waiting runner threads (runner.standins): bounds, and no wait left unserved."""

from __future__ import annotations

import threading

from taskgate.runner.standins import StandIns

WAIT = 15.0


def test_a_wait_that_found_the_last_stand_in_leaving_gets_one_when_it_has_gone() -> None:
    release = threading.Event()
    served: list[threading.Event] = []
    serving = threading.Semaphore(0)

    def loop(stop: threading.Event) -> None:
        served.append(stop)
        serving.release()
        stop.wait(WAIT)
        if len(served) == 1:
            release.wait(WAIT)  # the first stand-in lingers after its wait ended

    standins = StandIns(1, loop, lambda: None)
    with standins.waiting():  # thread A waits: stand-in 1
        assert serving.acquire(timeout=WAIT)
    assert served[0].is_set()  # told to leave, but still finishing
    b_done = threading.Event()

    def thread_b() -> None:
        with standins.waiting():  # bound reached (stand-in 1 still counts): queued
            assert serving.acquire(timeout=WAIT)  # served once stand-in 1 is gone
        b_done.set()

    b = threading.Thread(target=thread_b)
    b.start()
    release.set()
    assert b_done.wait(WAIT)
    b.join(WAIT)
    assert len(served) == 2 and standins.started == 2
    assert standins.peak_active == 1


def test_a_waiting_stand_in_gets_a_stand_in_of_its_own() -> None:
    depth_reached = threading.Event()

    def loop(stop: threading.Event) -> None:
        if standins.started < 3:
            with standins.waiting():  # this stand-in's body waits in turn
                stop.wait(WAIT)
        else:
            depth_reached.set()
            stop.wait(WAIT)

    standins = StandIns(1, loop, lambda: None)
    with standins.waiting():
        assert depth_reached.wait(WAIT)
    assert standins.peak_active == 1 and standins.started == 3
