"""taskgate with 8 threads per runner process: 2 x 8 = 16 tasks at a time.

A variant, not a separate system: the shape of Dramatiq's default (8 threads per process), to set
beside ``dramatiq_8t``. Same venv, tasks and calls as :mod:`systems.taskgate`.
"""

from __future__ import annotations

from systems import taskgate as base
from systems.common import with_threads

VENV = "taskgate"
VARIANT_OF = "taskgate"
CONCURRENCY = 16
DISTRIBUTIONS = base.DISTRIBUTIONS
KEYED_MECHANISM = base.KEYED_MECHANISM
NOTES = ["a variant: ProcessRunner --processes 2 --threads 8 (16 tasks at a time)", *base.NOTES]

submit = base.submit
submit_fire = base.submit_fire
submit_keyed = base.submit_keyed
wait = base.wait


def worker_commands(python: str) -> list[list[str]]:
    """taskgate's command with ``--threads 8``."""
    return with_threads(base.worker_commands(python), 8)
