"""taskgate: distributed tasks with concurrency control you can trust.

Decorate a function with ``@app.task``, call it to get an invocation, run a runner, read
``invocation.result``. See docs/concepts/concurrency-model.md for the concurrency model.
"""

from taskgate import errors
from taskgate.app import App
from taskgate.concurrency import ConcurrencyControlType
from taskgate.invocation import (
    DistributedInvocation,
    Invocation,
    InvocationGroup,
    ReusedInvocation,
)
from taskgate.limit_admin import LimitInfo
from taskgate.limits import Limit
from taskgate.record import Rate
from taskgate.status import InvocationStatus
from taskgate.task import Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "ConcurrencyControlType",
    "DistributedInvocation",
    "Invocation",
    "InvocationGroup",
    "InvocationStatus",
    "Limit",
    "LimitInfo",
    "Rate",
    "ReusedInvocation",
    "Task",
    "__version__",
    "errors",
]
