"""Dramatiq at its default shape, 8 threads per process: 2 x 8 = 16 tasks at a time.

A variant, not a separate system: same venv, actors and calls as :mod:`systems.dramatiq`, whose
main entry runs ``--threads 1`` so that every system runs 2 tasks at a time.
"""

from __future__ import annotations

from systems import dramatiq as base
from systems.common import with_threads

VENV = "dramatiq"
VARIANT_OF = "dramatiq"
CONCURRENCY = 16
DISTRIBUTIONS = base.DISTRIBUTIONS
KEYED_MECHANISM = base.KEYED_MECHANISM
NOTES = [
    "a variant: --processes 2 --threads 8 (Dramatiq's default thread count; 16 tasks at a time)",
    *base.NOTES[1:],
]

submit = base.submit
submit_fire = base.submit_fire
submit_keyed = base.submit_keyed
wait = base.wait


def worker_commands(python: str) -> list[list[str]]:
    """Dramatiq's command with ``--threads 8``."""
    return with_threads(base.worker_commands(python), 8)
